package artifact

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/splice-dev/splice/host/control"
	"github.com/splice-dev/splice/host/preflight"
)

// FetchConfig reads an artifact's manifest and config blob — not the plugin — and verifies
// both against their digests. ref must be pinned by digest.
func FetchConfig(ctx context.Context, ref string, opts ...Option) (*Info, error) {
	o := makeOptions(opts)
	d, err := ParseRef(ref, opts...)
	if err != nil {
		return nil, err
	}
	f, err := newFetcher(ctx, d, o)
	if err != nil {
		return nil, fmt.Errorf("fetch config of %s: %w", ref, err)
	}
	info, _, err := f.info(ctx, d, o)
	if err != nil {
		return nil, fmt.Errorf("fetch config of %s: %w", ref, err)
	}
	return info, nil
}

// Pull downloads the artifact ref (pinned by digest) into destDir as <hex of digest>.so, mode
// 0644, after verifying the manifest, the config and the layer against their digests and
// bounds (see the package documentation). If the file is already there with the right
// content it is reused; if it is there with other content Pull fails with ErrFileConflict and
// leaves it alone. destDir must exist.
func Pull(ctx context.Context, ref, destDir string, opts ...Option) (*Pulled, error) {
	o := makeOptions(opts)
	d, err := ParseRef(ref, opts...)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(destDir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("pull %s: destination %s is not a directory (is the shared volume mounted?): %v", ref, destDir, err)
	}
	f, err := newFetcher(ctx, d, o)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	info, layer, err := f.info(ctx, d, o)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	p := &Pulled{Info: *info, Path: filepath.Join(destDir, strings.TrimPrefix(info.Digest, "sha256:")+".so")}

	p.Reused, err = existing(p.Path, layer)
	if err == nil && !p.Reused {
		p.Reused, err = f.install(ctx, layer, p.Path, &info.Config.Facts)
	}
	if err == nil {
		// Read from the final file even when it was just checked as a temporary one: these
		// facts are what the preflight compares, so they must come from what the host opens.
		p.Facts, err = checkFacts(p.Path, &info.Config.Facts)
	}
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	return p, nil
}

// Temporary reports whether err is worth retrying: network failures, truncated transfers and
// the registry answers that mean "later" (429, 5xx). Everything else — not found, denied,
// digest mismatch, invalid artifact, file conflict — fails the same way next time.
func Temporary(err error) bool {
	if err == nil {
		return false
	}
	for _, permanent := range []error{ErrNotPinned, ErrDigestMismatch, ErrTooLarge, ErrInvalidArtifact, ErrFileConflict, context.Canceled} {
		if errors.Is(err, permanent) {
			return false
		}
	}
	var te *transport.Error
	if errors.As(err, &te) {
		return te.Temporary()
	}
	var ne net.Error
	return errors.As(err, &ne) ||
		errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET)
}

// fetcher reads one repository over an authenticated transport.
type fetcher struct {
	client *http.Client
	repo   name.Repository
}

func newFetcher(ctx context.Context, d name.Digest, o *options) (*fetcher, error) {
	auth := o.auth
	if auth == nil {
		var err error
		auth, err = authn.Resolve(ctx, o.keychain, d.Context())
		if err != nil {
			return nil, fmt.Errorf("resolve credentials for %s: %w", d.Context(), err)
		}
	}
	rt, err := transport.NewWithContext(ctx, d.Context().Registry, auth, o.transport, []string{d.Context().Scope(transport.PullScope)})
	if err != nil {
		return nil, fmt.Errorf("connect to registry %s: %w", d.Context().RegistryStr(), err)
	}
	return &fetcher{client: &http.Client{Transport: rt}, repo: d.Context()}, nil
}

// get fetches /v2/<repo>/<kind>/<digest> and returns the open response body.
func (f *fetcher) get(ctx context.Context, kind, digest, accept string) (io.ReadCloser, int64, error) {
	u := url.URL{
		Scheme: f.repo.Scheme(),
		Host:   f.repo.RegistryStr(),
		Path:   fmt.Sprintf("/v2/%s/%s/%s", f.repo.RepositoryStr(), kind, digest),
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, 0, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		resp.Body.Close()
		return nil, 0, err
	}
	return resp.Body, resp.ContentLength, nil
}

// readVerified reads a whole blob of the declared size and digest, refusing more than max.
func (f *fetcher) readVerified(ctx context.Context, kind string, desc v1.Descriptor, accept string, max int64) ([]byte, error) {
	if desc.Size > max {
		return nil, fmt.Errorf("%w: %s %s declares %d bytes, bound %d", ErrTooLarge, kind, desc.Digest, desc.Size, max)
	}
	body, _, err := f.get(ctx, kind, desc.Digest.String(), accept)
	if err != nil {
		return nil, fmt.Errorf("get %s %s: %w", kind, desc.Digest, err)
	}
	defer body.Close()
	h := sha256.New()
	var buf bytes.Buffer
	n, err := copyExactly(io.MultiWriter(&buf, h), body, desc.Size)
	if err != nil {
		return nil, fmt.Errorf("read %s %s: %w", kind, desc.Digest, err)
	}
	if err := checkSum(h, n, desc); err != nil {
		return nil, fmt.Errorf("%s: %w", kind, err)
	}
	return buf.Bytes(), nil
}

// info fetches and checks the manifest and the config; it returns the layer's descriptor.
func (f *fetcher) info(ctx context.Context, d name.Digest, o *options) (*Info, v1.Descriptor, error) {
	want, err := v1.NewHash(d.DigestStr())
	if err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("%w: %v", ErrNotPinned, err)
	}
	raw, err := f.readManifest(ctx, want)
	if err != nil {
		return nil, v1.Descriptor{}, err
	}
	m, layer, err := decodeManifest(raw, o)
	if err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("manifest %s: %w", want, err)
	}
	cfgRaw, err := f.readVerified(ctx, "blobs", m.Config, "", MaxConfigBytes)
	if err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("config: %w", err)
	}
	info := &Info{
		Ref:         d.Context().Digest(want.String()).String(),
		Digest:      want.String(),
		Annotations: m.Annotations,
		LayerDigest: layer.Digest.String(),
		LayerSize:   layer.Size,
	}
	if info.Config, err = decodeConfig(cfgRaw); err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("config %s: %w", m.Config.Digest, err)
	}
	return info, layer, nil
}

// decodeManifest reads a manifest's bytes, already checked against their digest, as a Splice
// plugin artifact (checkManifest) and returns it with its plugin layer.
func decodeManifest(raw []byte, o *options) (*v1.Manifest, v1.Descriptor, error) {
	var m v1.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("%w: decode manifest: %v", ErrInvalidArtifact, err)
	}
	layer, err := checkManifest(&m, o)
	if err != nil {
		return nil, v1.Descriptor{}, err
	}
	return &m, layer, nil
}

// decodeConfig reads a config blob's bytes, already checked against their digest, and checks
// what a consumer relies on (validateConfig).
func decodeConfig(raw []byte) (Config, error) {
	var c Config
	if err := json.Unmarshal(raw, &c); err != nil {
		return Config{}, fmt.Errorf("%w: decode config: %v", ErrInvalidArtifact, err)
	}
	if err := validateConfig(&c); err != nil {
		return Config{}, fmt.Errorf("%w: %v", ErrInvalidArtifact, err)
	}
	return c, nil
}

func (f *fetcher) readManifest(ctx context.Context, want v1.Hash) ([]byte, error) {
	body, _, err := f.get(ctx, "manifests", want.String(), ManifestMediaType)
	if err != nil {
		return nil, fmt.Errorf("get manifest %s: %w", want, err)
	}
	defer body.Close()
	raw, err := io.ReadAll(io.LimitReader(body, MaxManifestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", want, err)
	}
	if int64(len(raw)) > MaxManifestBytes {
		return nil, fmt.Errorf("%w: manifest %s is over %d bytes", ErrTooLarge, want, MaxManifestBytes)
	}
	sum := sha256.Sum256(raw)
	if got := hex.EncodeToString(sum[:]); got != want.Hex {
		return nil, fmt.Errorf("%w: the registry answered manifest %s with content whose digest is sha256:%s", ErrDigestMismatch, want, got)
	}
	return raw, nil
}

// checkManifest checks that m is a Splice plugin artifact this package reads and returns
// its plugin layer.
func checkManifest(m *v1.Manifest, o *options) (v1.Descriptor, error) {
	bad := func(format string, args ...any) (v1.Descriptor, error) {
		return v1.Descriptor{}, fmt.Errorf("%w: %s", ErrInvalidArtifact, fmt.Sprintf(format, args...))
	}
	if m.SchemaVersion != 2 || (m.MediaType != "" && m.MediaType != types.OCIManifestSchema1) {
		return bad("schemaVersion %d, mediaType %q; want an OCI image manifest", m.SchemaVersion, m.MediaType)
	}
	if m.ArtifactType != "" && m.ArtifactType != ArtifactType {
		return bad("artifactType %q; want %s", m.ArtifactType, ArtifactType)
	}
	if m.Config.MediaType != ConfigMediaType {
		return bad("config mediaType %q; want %s (is this a container image rather than a plugin artifact?)", m.Config.MediaType, ConfigMediaType)
	}
	if len(m.Layers) != 1 {
		return bad("%d layers; want exactly one, the plugin", len(m.Layers))
	}
	l := m.Layers[0]
	if l.MediaType != LayerMediaType {
		return bad("layer mediaType %q; want %s", l.MediaType, LayerMediaType)
	}
	for _, dsc := range []v1.Descriptor{m.Config, l} {
		if !control.ValidDigest(dsc.Digest.String()) {
			return bad("digest %q is not sha256:<64 hex>", dsc.Digest)
		}
		if dsc.Size <= 0 {
			return bad("blob %s declares size %d", dsc.Digest, dsc.Size)
		}
	}
	if l.Size > o.maxLayerBytes {
		return v1.Descriptor{}, fmt.Errorf("%w: plugin layer %s declares %d bytes, bound %d (raise it with the agent's --max-plugin-bytes if the plugin is really that big)",
			ErrTooLarge, l.Digest, l.Size, o.maxLayerBytes)
	}
	return l, nil
}

// install downloads the layer into a temporary file beside final, verifies it, and links it
// into place. It reports reused when another writer put the same content there first.
func (f *fetcher) install(ctx context.Context, layer v1.Descriptor, final string, cfgFacts *preflight.Facts) (reused bool, err error) {
	dir, base := filepath.Split(final)
	// Partial files of an earlier attempt (an agent killed mid-download) are garbage: the
	// final name is only ever created by link, so nothing can have loaded them.
	if stale, _ := filepath.Glob(filepath.Join(dir, "."+base+".partial-*")); len(stale) > 0 {
		for _, s := range stale {
			os.Remove(s)
		}
	}
	tmp, err := os.CreateTemp(dir, "."+base+".partial-*")
	if err != nil {
		return false, fmt.Errorf("create temporary plugin file in %s: %w", dir, err)
	}
	defer os.Remove(tmp.Name()) // after the link the final name keeps the inode
	if err := f.download(ctx, layer, tmp); err != nil {
		tmp.Close()
		return false, err
	}
	// No fsync: the file only has to survive container restarts, not a node crash (which
	// takes the pod and its emptyDir with it); the link below is atomic either way.
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return false, fmt.Errorf("chmod %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return false, fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	// The artifact must be consistent before it gets its final name: a host must never see
	// a file whose config lied about it.
	if _, err := checkFacts(tmp.Name(), cfgFacts); err != nil {
		return false, err
	}
	// link, not rename: link fails when final exists, so a file a host may have loaded is
	// never replaced, even by a racing writer.
	if err := os.Link(tmp.Name(), final); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return existing(final, layer)
		}
		return false, fmt.Errorf("link %s into place (the shared volume must support hard links): %w", final, err)
	}
	return false, nil
}

func (f *fetcher) download(ctx context.Context, layer v1.Descriptor, dst io.Writer) error {
	body, length, err := f.get(ctx, "blobs", layer.Digest.String(), "")
	if err != nil {
		return fmt.Errorf("get plugin layer %s: %w", layer.Digest, err)
	}
	defer body.Close()
	if length >= 0 && length != layer.Size {
		return fmt.Errorf("%w: the registry sends %d bytes for plugin layer %s, the manifest declares %d", ErrDigestMismatch, length, layer.Digest, layer.Size)
	}
	h := sha256.New()
	n, err := copyExactly(io.MultiWriter(dst, h), body, layer.Size)
	if err != nil {
		return fmt.Errorf("download plugin layer %s: %w", layer.Digest, err)
	}
	if err := checkSum(h, n, layer); err != nil {
		return fmt.Errorf("plugin layer: %w", err)
	}
	return nil
}

// existing checks a file already at the final name: reused when its content is the layer's;
// ErrFileConflict when it is anything else (it is left untouched).
func existing(final string, layer v1.Descriptor) (bool, error) {
	fi, err := os.Lstat(final)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("inspect %s: %w", final, err)
	}
	if !fi.Mode().IsRegular() {
		return false, fmt.Errorf("%w: %s is a %v, not a regular file; remove it", ErrFileConflict, final, fi.Mode().Type())
	}
	if fi.Size() != layer.Size {
		return false, fmt.Errorf("%w: %s has %d bytes, the artifact's plugin %d; it is left alone because a host may have it loaded: remove it only after restarting the pod",
			ErrFileConflict, final, fi.Size(), layer.Size)
	}
	file, err := os.Open(final)
	if err != nil {
		return false, fmt.Errorf("open %s: %w", final, err)
	}
	defer file.Close()
	h := sha256.New()
	if _, err := io.Copy(h, file); err != nil {
		return false, fmt.Errorf("hash %s: %w", final, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != layer.Digest.Hex {
		return false, fmt.Errorf("%w: %s has digest sha256:%s, the artifact's plugin %s; it is left alone because a host may have it loaded: remove it only after restarting the pod",
			ErrFileConflict, final, got, layer.Digest)
	}
	return true, nil
}

// copyExactly copies size bytes and fails on fewer (io.ErrUnexpectedEOF: a truncated
// transfer, worth a retry) or more (the registry sends something else).
func copyExactly(dst io.Writer, src io.Reader, size int64) (int64, error) {
	n, err := io.Copy(dst, io.LimitReader(src, size+1))
	if err != nil {
		return n, err
	}
	if n < size {
		return n, fmt.Errorf("got %d of %d bytes: %w", n, size, io.ErrUnexpectedEOF)
	}
	if n > size {
		return n, fmt.Errorf("%w: more than the %d bytes the manifest declares", ErrDigestMismatch, size)
	}
	return n, nil
}

func checkSum(h hash.Hash, n int64, desc v1.Descriptor) error {
	if got := hex.EncodeToString(h.Sum(nil)); got != desc.Digest.Hex || n != desc.Size {
		return fmt.Errorf("%w: %s: got %d bytes with digest sha256:%s", ErrDigestMismatch, desc.Digest, n, got)
	}
	return nil
}

// checkFacts reads the plugin file's own facts and requires the config's to describe it.
func checkFacts(path string, cfg *preflight.Facts) (*preflight.Facts, error) {
	facts, err := preflight.ReadFacts(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidArtifact, err)
	}
	if facts.Kind != preflight.KindPlugin {
		return nil, fmt.Errorf("%w: the layer is a %s, not a plugin", ErrInvalidArtifact, facts.Kind)
	}
	if diff := sameBuild(cfg, facts); diff != "" {
		return nil, fmt.Errorf("%w: the config's build facts do not describe the plugin layer (%s)", ErrInvalidArtifact, diff)
	}
	return facts, nil
}
