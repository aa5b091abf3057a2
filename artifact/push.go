package artifact

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/splice-dev/splice/host/preflight"
)

// Push uploads the plugin file soPath as a Splice artifact to repo ("registry/path/name") and
// returns its reference pinned by digest and the digest.
//
// cfg.APIVersion is required. cfg.Facts may be left zero, and are then read from soPath; when
// given (the builder records them while building) they must describe soPath, so that the
// facts a controller reads from the registry are those of the file an agent will load.
// cfg.BuiltAt defaults to now. The manifest is uploaded under its digest, and under each
// WithTag.
func Push(ctx context.Context, repo string, soPath string, cfg Config, opts ...Option) (ref string, digest string, err error) {
	o := makeOptions(opts)
	r, err := name.NewRepository(repo, o.nameOptions(repo)...)
	if err != nil {
		return "", "", fmt.Errorf("push %s: repository %q: %w (want registry/path/name, no tag or digest)", soPath, repo, err)
	}
	cfg, configJSON, err := pushConfig(soPath, cfg)
	if err != nil {
		return "", "", fmt.Errorf("push %s: %w", soPath, err)
	}
	layer, err := newFileLayer(soPath)
	if err != nil {
		return "", "", fmt.Errorf("push %s: %w", soPath, err)
	}
	if layer.size > o.maxLayerBytes {
		return "", "", fmt.Errorf("push %s: %w: %d bytes, bound %d (WithMaxLayerBytes)", soPath, ErrTooLarge, layer.size, o.maxLayerBytes)
	}
	config := &bytesBlob{data: configJSON, mediaType: ConfigMediaType}

	ropts := o.remoteOptions(ctx)
	for _, blob := range []v1.Layer{config, layer} {
		if err := remote.WriteLayer(r, blob, ropts...); err != nil {
			mt, _ := blob.MediaType()
			return "", "", fmt.Errorf("push %s: upload %s blob to %s: %w", soPath, mt, r, err)
		}
	}
	raw, err := encodeManifest(&cfg, config, layer, filepath.Base(soPath), o.annotations)
	if err != nil {
		return "", "", fmt.Errorf("push %s: encode manifest: %w", soPath, err)
	}
	sum := sha256.Sum256(raw)
	digest = "sha256:" + hex.EncodeToString(sum[:])
	pinned := r.Digest(digest)
	if err := remote.Put(pinned, rawManifest(raw), ropts...); err != nil {
		return "", "", fmt.Errorf("push %s: put manifest %s: %w", soPath, pinned, err)
	}
	for _, t := range o.tags {
		tag := r.Tag(t)
		if err := remote.Put(tag, rawManifest(raw), ropts...); err != nil {
			return "", "", fmt.Errorf("push %s: tag %s: %w", soPath, tag, err)
		}
	}
	return pinned.String(), digest, nil
}

// pushConfig completes cfg for the plugin file soPath (see Push) and checks it, and returns it
// with its JSON.
func pushConfig(soPath string, cfg Config) (Config, []byte, error) {
	fileFacts, err := preflight.ReadFacts(soPath)
	if err != nil {
		return cfg, nil, err
	}
	if fileFacts.Kind != preflight.KindPlugin {
		return cfg, nil, fmt.Errorf("%w: it is a %s, not a plugin built with -buildmode=plugin", ErrInvalidArtifact, fileFacts.Kind)
	}
	if cfg.Kind == "" {
		cfg.Facts = *fileFacts
	} else if diff := sameBuild(&cfg.Facts, fileFacts); diff != "" {
		return cfg, nil, fmt.Errorf("%w: the given facts do not describe the file (%s); record them from this file", ErrInvalidArtifact, diff)
	}
	cfg.Path = "" // a path on the build machine means nothing to a puller
	if cfg.BuiltAt.IsZero() {
		cfg.BuiltAt = time.Now()
	}
	cfg.BuiltAt = cfg.BuiltAt.UTC().Truncate(time.Second)
	if err := validateConfig(&cfg); err != nil {
		return cfg, nil, fmt.Errorf("%w: %v", ErrInvalidArtifact, err)
	}
	configJSON, err := json.Marshal(&cfg)
	if err != nil {
		return cfg, nil, fmt.Errorf("encode config: %w", err)
	}
	return cfg, configJSON, nil
}

// encodeManifest is the artifact's OCI manifest: its config blob, the plugin file's layer
// titled title, and the annotations a registry's listing shows.
func encodeManifest(cfg *Config, config *bytesBlob, layer *fileLayer, title string, extra map[string]string) ([]byte, error) {
	annotations := map[string]string{
		AnnotationCreated:    cfg.BuiltAt.Format(time.RFC3339),
		AnnotationGoVersion:  cfg.GoVersion,
		AnnotationAPIVersion: cfg.APIVersion,
	}
	for k, v := range extra {
		annotations[k] = v
	}
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  ArtifactType,
		Config:        v1.Descriptor{MediaType: ConfigMediaType, Size: int64(len(config.data)), Digest: config.digest()},
		Layers: []v1.Descriptor{{
			MediaType: LayerMediaType, Size: layer.size, Digest: layer.hash,
			Annotations: map[string]string{AnnotationTitle: title},
		}},
		Annotations: annotations,
	}
	return json.Marshal(&m)
}

func (o *options) remoteOptions(ctx context.Context) []remote.Option {
	ropts := []remote.Option{remote.WithContext(ctx), remote.WithTransport(o.transport), remote.WithUserAgent("splice")}
	if o.auth != nil {
		ropts = append(ropts, remote.WithAuth(o.auth))
	} else {
		ropts = append(ropts, remote.WithAuthFromKeychain(o.keychain))
	}
	return ropts
}

// rawManifest is a manifest uploaded byte for byte, so its digest is the one computed here.
type rawManifest []byte

func (m rawManifest) RawManifest() ([]byte, error)        { return m, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

// fileLayer uploads a file as it is. go-containerregistry's file layers gzip their content;
// the plugin layer must stay the exact bytes the host will open.
type fileLayer struct {
	path string
	hash v1.Hash
	size int64
}

func newFileLayer(path string) (*fileLayer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open plugin file: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return nil, fmt.Errorf("hash plugin file: %w", err)
	}
	return &fileLayer{path: path, size: n, hash: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}}, nil
}

func (l *fileLayer) Digest() (v1.Hash, error)             { return l.hash, nil }
func (l *fileLayer) DiffID() (v1.Hash, error)             { return l.hash, nil }
func (l *fileLayer) Size() (int64, error)                 { return l.size, nil }
func (l *fileLayer) MediaType() (types.MediaType, error)  { return LayerMediaType, nil }
func (l *fileLayer) Compressed() (io.ReadCloser, error)   { return os.Open(l.path) }
func (l *fileLayer) Uncompressed() (io.ReadCloser, error) { return os.Open(l.path) }

// bytesBlob is a small in-memory blob (the config).
type bytesBlob struct {
	data      []byte
	mediaType types.MediaType
}

func (b *bytesBlob) digest() v1.Hash {
	sum := sha256.Sum256(b.data)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}
func (b *bytesBlob) Digest() (v1.Hash, error)            { return b.digest(), nil }
func (b *bytesBlob) DiffID() (v1.Hash, error)            { return b.digest(), nil }
func (b *bytesBlob) Size() (int64, error)                { return int64(len(b.data)), nil }
func (b *bytesBlob) MediaType() (types.MediaType, error) { return b.mediaType, nil }
func (b *bytesBlob) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(b.data)), nil
}
func (b *bytesBlob) Uncompressed() (io.ReadCloser, error) { return b.Compressed() }
