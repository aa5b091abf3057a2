// Package loopreg serves go-containerregistry's in-memory OCI registry on 127.0.0.1 and pushes
// real greeter plugin builds into it, for the benchmarks and the local demo. It never listens
// beyond loopback and keeps nothing on disk but the plugin builds it is given a directory for.
package loopreg

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/splice-dev/splice/artifact"
	"github.com/splice-dev/splice/examples/greeter/greeterbuild"
)

// Registry is a running loopback registry.
type Registry struct {
	// Host is "127.0.0.1:<port>".
	Host string
	srv  *http.Server
}

// Start serves an empty registry.
func Start() (*Registry, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("registry listener: %w", err)
	}
	r := &Registry{Host: ln.Addr().String(),
		srv: &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0))), ReadHeaderTimeout: 10 * time.Second}}
	go r.srv.Serve(ln)
	return r, nil
}

// Close stops the registry.
func (r *Registry) Close() { _ = r.srv.Close() }

// Options are the artifact options for this registry: plain HTTP, anonymous.
func Options() []artifact.Option {
	return []artifact.Option{artifact.WithInsecure(true), artifact.WithAuth(authn.Anonymous)}
}

// PushGreeter builds the named greeter plugins (examples/greeter/plugins/<name>) into dir and
// pushes each to <host>/<repo> with its declared API version. It returns the digest-pinned
// reference of each.
func (r *Registry) PushGreeter(ctx context.Context, dir, repo string, apiVersions map[string]string, nonce string) (map[string]string, error) {
	root, err := greeterbuild.FindModuleRoot()
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(apiVersions))
	for n := range apiVersions {
		names = append(names, n)
	}
	b := &greeterbuild.Builder{Root: root, Out: dir}
	plugins, err := b.Plugins(ctx, names, nonce)
	if err != nil {
		return nil, fmt.Errorf("build greeter plugins: %w", err)
	}
	refs := map[string]string{}
	for name, api := range apiVersions {
		ref, _, err := artifact.Push(ctx, r.Host+"/"+repo, plugins[name].Path, artifact.Config{APIVersion: api}, Options()...)
		if err != nil {
			return nil, fmt.Errorf("push %s: %w", name, err)
		}
		refs[name] = ref
	}
	return refs, nil
}
