package artifact

import (
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/splice-dev/splice/host/control"
	"github.com/splice-dev/splice/host/preflight"
)

// Media types and annotations of format version 1 (see the package documentation).
const (
	// ArtifactType is the manifest's artifactType.
	ArtifactType = "application/vnd.splice.plugin.v1"
	// ConfigMediaType is the config blob's media type: Config as JSON.
	ConfigMediaType = "application/vnd.splice.plugin.config.v1+json"
	// LayerMediaType is the plugin layer's media type: the .so, uncompressed.
	LayerMediaType = "application/vnd.splice.plugin.layer.v1+so"
	// ManifestMediaType is the OCI image manifest media type the artifact uses.
	ManifestMediaType = "application/vnd.oci.image.manifest.v1+json"

	AnnotationCreated    = "org.opencontainers.image.created"
	AnnotationSource     = "org.opencontainers.image.source"
	AnnotationRevision   = "org.opencontainers.image.revision"
	AnnotationVersion    = "org.opencontainers.image.version"
	AnnotationTitle      = "org.opencontainers.image.title"
	AnnotationGoVersion  = "splice.dev/go-version"
	AnnotationAPIVersion = "splice.dev/api-version"
)

// Bounds on what a pull reads. A registry is untrusted input: without them a hostile or
// broken one could fill the pod's memory or its shared volume.
const (
	// DefaultMaxLayerBytes bounds the plugin layer unless WithMaxLayerBytes says otherwise.
	// Real plugins are a few to a few tens of MB.
	DefaultMaxLayerBytes int64 = 256 << 20
	// MaxConfigBytes bounds the config blob (the same bound preflight puts on a facts file).
	MaxConfigBytes int64 = 16 << 20
	// MaxManifestBytes bounds the manifest; ours is under 2 KB.
	MaxManifestBytes int64 = 1 << 20
)

// Config is the artifact's config blob: the plugin's build facts plus what the builder
// declares about it. preflight.Facts is embedded so its fields sit at the top level of the
// JSON and the blob doubles as a preflight facts file.
type Config struct {
	preflight.Facts
	// APIVersion is the plugin API semantic version the plugin declares (its APIVersion
	// variable); rollout policies compare it with the stable version's.
	APIVersion string `json:"apiVersion"`
	// BuiltAt is when the plugin was built.
	BuiltAt time.Time `json:"builtAt"`
	// Vulnerabilities are what the build's vulnerability scan found; nil when none ran.
	Vulnerabilities *Vulnerabilities `json:"vulnerabilities,omitempty"`
}

// Vulnerabilities are the known vulnerabilities a plugin calls, as a scan of the built plugin
// (govulncheck in binary mode) found them.
type Vulnerabilities struct {
	// Database is the vulnerability database scanned against.
	Database string `json:"database"`
	// Found is how many known vulnerabilities the plugin calls.
	Found int `json:"found"`
	// IDs are their identifiers (GO-YYYY-NNNN), sorted, at most 16.
	IDs []string `json:"ids,omitempty"`
}

// Info describes an artifact as its manifest and config state it.
type Info struct {
	// Ref is the artifact's reference pinned by digest: registry/repo@sha256:<hex>.
	Ref string
	// Digest is the manifest digest, "sha256:<hex>".
	Digest string
	// Config is the decoded config blob.
	Config Config
	// Annotations are the manifest's annotations.
	Annotations map[string]string
	// LayerDigest and LayerSize describe the plugin layer; LayerDigest is the sha256 of the
	// .so file itself (the layer is uncompressed).
	LayerDigest string
	LayerSize   int64
}

// Pulled is an artifact written into a directory by Pull.
type Pulled struct {
	Info
	// Path is the plugin file, <destDir>/<hex of Digest>.so.
	Path string
	// Facts are the build facts read from the file just written (not from the config).
	Facts *preflight.Facts
	// Reused is true when the file was already there with the right content and nothing was
	// downloaded.
	Reused bool
}

// Errors Pull, FetchConfig and Push wrap; test with errors.Is.
var (
	// ErrNotPinned: the reference names a tag, not a digest. Agents run exactly what the
	// rollout controller decided, and a tag can move under them.
	ErrNotPinned = errors.New("artifact reference is not pinned by digest")
	// ErrDigestMismatch: the registry sent content whose digest differs from the one asked
	// for (a corrupt or tampered registry, or a proxy rewriting content).
	ErrDigestMismatch = errors.New("content does not match its digest")
	// ErrTooLarge: a manifest, config or layer is over its bound.
	ErrTooLarge = errors.New("artifact part too large")
	// ErrInvalidArtifact: the manifest is not a Splice plugin artifact of a format this
	// package reads, or its config does not describe its layer.
	ErrInvalidArtifact = errors.New("not a valid Splice plugin artifact")
	// ErrFileConflict: the destination file exists with other content. It is never replaced:
	// a host may have it loaded.
	ErrFileConflict = errors.New("plugin file exists with different content")
)

// Option configures Push, Pull and FetchConfig.
type Option func(*options)

type options struct {
	keychain      authn.Keychain
	auth          authn.Authenticator
	insecure      bool
	insecureHosts map[string]bool
	transport     http.RoundTripper
	maxLayerBytes int64
	tags          []string
	annotations   map[string]string
}

func makeOptions(opts []Option) *options {
	o := &options{keychain: authn.DefaultKeychain, maxLayerBytes: DefaultMaxLayerBytes, annotations: map[string]string{}}
	for _, opt := range opts {
		opt(o)
	}
	if o.transport == nil {
		o.transport = http.DefaultTransport
	}
	o.transport = &tlsUnlessInsecure{next: o.transport, o: o}
	return o
}

// WithKeychain resolves registry credentials from k (default authn.DefaultKeychain: the
// Docker config in $DOCKER_CONFIG or ~/.docker, where a mounted dockerconfigjson Secret goes).
func WithKeychain(k authn.Keychain) Option { return func(o *options) { o.keychain = k } }

// WithAuth uses one authenticator for every registry, overriding the keychain.
func WithAuth(a authn.Authenticator) Option { return func(o *options) { o.auth = a } }

// WithInsecure lets every registry of the call be reached over plain HTTP (after HTTPS is
// tried). It is for commands where the person names the one registry on the command line
// (`splice push --insecure`); long-running components name their registries with
// WithInsecureRegistries instead. Off by default: see tlsUnlessInsecure.
func WithInsecure(insecure bool) Option { return func(o *options) { o.insecure = insecure } }

// WithInsecureRegistries lets the registries named (host or host:port, exactly as they appear in
// references) be reached over plain HTTP; every other registry gets TLS, whatever its address.
func WithInsecureRegistries(hosts ...string) Option {
	return func(o *options) {
		if o.insecureHosts == nil {
			o.insecureHosts = map[string]bool{}
		}
		for _, h := range hosts {
			o.insecureHosts[h] = true
		}
	}
}

// RegistryIn reports whether the registry of ref (a repository or reference) is one of hosts.
func RegistryIn(ref string, hosts []string) bool {
	r := registryOf(ref)
	return r != "" && slices.Contains(hosts, r)
}

// ValidateRegistryHost checks one entry of an insecure-registries list: a host or host:port as
// it appears in a reference, with no scheme, path or space.
func ValidateRegistryHost(h string) error {
	if h == "" || strings.ContainsAny(h, "/ @\t") || strings.Contains(h, "://") {
		return fmt.Errorf("insecure registry %q: give a host or host:port as it appears in references (registry.example.com:5000), no scheme or path", h)
	}
	if _, err := name.NewRegistry(h, name.StrictValidation); err != nil {
		return fmt.Errorf("insecure registry %q: %v", h, err)
	}
	return nil
}

// WithTransport sets the HTTP transport (proxies, custom CAs, test servers).
func WithTransport(rt http.RoundTripper) Option { return func(o *options) { o.transport = rt } }

// WithMaxLayerBytes bounds the plugin layer Pull accepts and Push sends (default
// DefaultMaxLayerBytes).
func WithMaxLayerBytes(n int64) Option { return func(o *options) { o.maxLayerBytes = n } }

// WithTag makes Push also tag the manifest (the returned reference stays pinned by digest).
func WithTag(tag string) Option { return func(o *options) { o.tags = append(o.tags, tag) } }

// WithSource, WithRevision and WithVersion set the standard OCI annotations Push writes.
func WithSource(url string) Option { return withAnnotation(AnnotationSource, url) }

// WithRevision sets org.opencontainers.image.revision (the source's commit).
func WithRevision(rev string) Option { return withAnnotation(AnnotationRevision, rev) }

// WithVersion sets org.opencontainers.image.version (a human-readable release name).
func WithVersion(v string) Option { return withAnnotation(AnnotationVersion, v) }

func withAnnotation(k, v string) Option {
	return func(o *options) {
		if v != "" {
			o.annotations[k] = v
		}
	}
}

// nameOptions are the options to parse ref (a repository or reference) with: name.Insecure
// only where plain HTTP is allowed for its registry.
func (o *options) nameOptions(ref string) []name.Option {
	if o.allowsHTTP(registryOf(ref)) {
		return []name.Option{name.Insecure}
	}
	return nil
}

// allowsHTTP reports whether the registry host may be reached over plain HTTP.
func (o *options) allowsHTTP(host string) bool { return o.insecure || o.insecureHosts[host] }

// registryOf is the registry part of a reference or repository as go-containerregistry reads
// it ("index.docker.io" for names without one); "" when ref does not parse.
func registryOf(ref string) string {
	if r, err := name.ParseReference(ref); err == nil {
		return r.Context().RegistryStr()
	}
	if r, err := name.NewRepository(ref); err == nil {
		return r.RegistryStr()
	}
	return ""
}

// tlsUnlessInsecure sends every request over HTTPS unless its registry may use plain HTTP.
// go-containerregistry talks plain HTTP by itself to localhost, loopback and RFC 1918 addresses
// (an in-cluster registry's ClusterIP among them), push credentials included; here a plain-HTTP
// request to any other registry, or a redirect to one, is upgraded to HTTPS, so such a
// registry without TLS fails to connect instead of receiving credentials in the clear.
type tlsUnlessInsecure struct {
	next http.RoundTripper
	o    *options
}

func (t *tlsUnlessInsecure) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "http" || t.o.allowsHTTP(req.URL.Host) {
		return t.next.RoundTrip(req)
	}
	up := req.Clone(req.Context())
	up.URL.Scheme = "https"
	resp, err := t.next.RoundTrip(up)
	if rh := (tls.RecordHeaderError{}); errors.As(err, &rh) && string(rh.RecordHeader[:]) == "HTTP/" {
		err = fmt.Errorf("%w: registry %s has no TLS; registry traffic goes over TLS unless the registry is named insecure (--insecure-registries for the manager and the agent, --insecure for the splice command)", err, req.URL.Host)
	}
	return resp, err
}

// ParseRef parses a reference that must be pinned by a sha256 digest. It accepts
// "registry/repo@sha256:<hex>" and, like the container runtimes, "registry/repo:tag@sha256:<hex>"
// (the tag is then ignored: the digest decides).
func ParseRef(ref string, opts ...Option) (name.Digest, error) {
	o := makeOptions(opts)
	d, err := name.NewDigest(ref, o.nameOptions(ref)...)
	if err != nil {
		if _, terr := name.NewTag(ref, o.nameOptions(ref)...); terr == nil {
			return name.Digest{}, fmt.Errorf("%w: %q names a tag; give registry/repo@sha256:<64 hex> (the digest Push printed)", ErrNotPinned, ref)
		}
		return name.Digest{}, fmt.Errorf("%w: parse %q: %v; give registry/repo@sha256:<64 hex>", ErrNotPinned, ref, err)
	}
	if !control.ValidDigest(d.DigestStr()) {
		return name.Digest{}, fmt.Errorf("%w: %q: the digest must be sha256:<64 lower-case hex>", ErrNotPinned, ref)
	}
	return d, nil
}

// validateConfig checks what a consumer relies on before using a config.
func validateConfig(c *Config) error {
	if c.Kind != preflight.KindPlugin {
		return fmt.Errorf("config kind is %q, want %q", c.Kind, preflight.KindPlugin)
	}
	if c.GoVersion == "" || c.PluginPath == "" {
		return errors.New("config has no goVersion or pluginPath")
	}
	if c.APIVersion == "" {
		return errors.New("config has no apiVersion: the plugin's declared API version is required")
	}
	if !control.ValidAPIVersion(c.APIVersion) {
		return fmt.Errorf("config apiVersion %q is not a semantic version such as 1.4.0 of at most %d bytes", control.Truncate(c.APIVersion, 80), control.MaxAPIVersionBytes)
	}
	// The blob doubles as a facts file: it must be one that ReadFacts would read.
	if err := c.Facts.Validate(); err != nil {
		return fmt.Errorf("config facts: %w", err)
	}
	return nil
}

// sameBuild reports how two facts of one plugin differ in what plugin.Open compares, or "".
func sameBuild(a, b *preflight.Facts) string {
	switch {
	case a.GoVersion != b.GoVersion:
		return fmt.Sprintf("goVersion %s vs %s", a.GoVersion, b.GoVersion)
	case a.PluginPath != b.PluginPath:
		return fmt.Sprintf("pluginPath %s vs %s", a.PluginPath, b.PluginPath)
	case a.GOOS != b.GOOS || a.GOARCH != b.GOARCH || a.GOAMD64 != b.GOAMD64:
		return fmt.Sprintf("platform %s/%s/%s vs %s/%s/%s", a.GOOS, a.GOARCH, a.GOAMD64, b.GOOS, b.GOARCH, b.GOAMD64)
	case !maps.Equal(a.Packages, b.Packages):
		return "package hashes differ"
	}
	return ""
}
