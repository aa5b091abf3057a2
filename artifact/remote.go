package artifact

import (
	"context"
	"net/http"

	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// RemoteOptions returns what Push and Pull reach a registry with under opts, for the packages of
// this module that talk to registries through go-containerregistry themselves (the artifact
// signatures of internal/trust): the remote options (context, HTTP transport, credentials from
// WithAuth or WithKeychain, user agent) and the name options to parse references with
// (name.Insecure under WithInsecure).
//
// wrap, when not nil, wraps the HTTP transport those options use (WithTransport's, by default
// http.DefaultTransport), to bound or observe what the registry answers; it is called once.
func RemoteOptions(ctx context.Context, wrap func(http.RoundTripper) http.RoundTripper, opts ...Option) []remote.Option {
	o := makeOptions(opts)
	ropts := o.remoteOptions(ctx)
	if wrap != nil {
		// The last WithTransport wins: this replaces the one remoteOptions set.
		ropts = append(ropts, remote.WithTransport(wrap(o.transport)))
	}
	return ropts
}
