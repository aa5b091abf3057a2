package trust

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/splice-dev/splice/artifact"
)

// The cosign signature format.
const (
	// SimpleSigningMediaType is the media type of a signature layer: the simple-signing payload.
	SimpleSigningMediaType = "application/vnd.dev.cosign.simplesigning.v1+json"
	// SignatureAnnotation is the layer annotation holding the base64 signature over the payload.
	SignatureAnnotation = "dev.cosignproject.cosign/signature"
	// KeyFingerprintAnnotation is the layer annotation where Sign records the signing key's
	// fingerprint. It is not signed: Verify uses it only to say which reason a signature that
	// does not verify gets (SignatureInvalid when it names a trusted key, else
	// SignatureUntrusted), never to accept one.
	KeyFingerprintAnnotation = "splice.dev/key-fingerprint"
)

// Bounds on what is read from a registry: it is untrusted input.
const (
	// MaxSignatureManifestBytes bounds the signature manifest (one layer descriptor is a few
	// hundred bytes; cosign's keyless bundles a few KB).
	MaxSignatureManifestBytes int64 = 1 << 20
	// MaxSignatureLayers is how many layers of a signature manifest are looked at; Sign refuses
	// to add one past it.
	MaxSignatureLayers = 32
	// MaxPayloadBytes bounds a signature's payload (cosign's are a few hundred bytes).
	MaxPayloadBytes int64 = 64 << 10
)

// errBadSignatureManifest marks a signature manifest that is not an image manifest this package
// reads.
var errBadSignatureManifest = errors.New("not a signature manifest")

// signatureTag is where the signatures of d live: <repo>:sha256-<hex>.sig, cosign's scheme.
func signatureTag(d name.Digest) name.Tag {
	return d.Context().Tag(strings.Replace(d.DigestStr(), ":", "-", 1) + ".sig")
}

// signatureStore reads and writes one artifact's signatures with the artifact package's options.
type signatureStore struct {
	ropts []remote.Option
}

func newSignatureStore(ctx context.Context, opts []artifact.Option) *signatureStore {
	ropts := artifact.RemoteOptions(ctx, func(rt http.RoundTripper) http.RoundTripper {
		return &boundedManifests{inner: rt, max: MaxSignatureManifestBytes}
	}, opts...)
	// One puller for every read: one authentication handshake per repository, not per blob.
	if p, err := remote.NewPuller(ropts...); err == nil {
		ropts = append(ropts, remote.Reuse(p))
	}
	return &signatureStore{ropts: ropts}
}

// signatures reads the signature manifest of d: nil, nil when there is none. A manifest over
// MaxSignatureManifestBytes fails with artifact.ErrTooLarge, one that is not an image manifest
// with errBadSignatureManifest.
func (r *signatureStore) signatures(d name.Digest) (*v1.Manifest, error) {
	tag := signatureTag(d)
	desc, err := remote.Get(tag, r.ropts...)
	if err != nil {
		var te *transport.Error
		if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
			return nil, nil
		}
		return nil, fmt.Errorf("read signature manifest %s: %w", tag, err)
	}
	m, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", errBadSignatureManifest, tag, err)
	}
	if m.SchemaVersion != 2 || (m.MediaType != "" && m.MediaType != types.OCIManifestSchema1 && m.MediaType != types.DockerManifestSchema2) {
		return nil, fmt.Errorf("%w: %s is schemaVersion %d, mediaType %q; want an OCI image manifest", errBadSignatureManifest, tag, m.SchemaVersion, m.MediaType)
	}
	return m, nil
}

// payload reads the payload blob of a signature layer of repo, at most MaxPayloadBytes, checked
// against its digest: artifact.ErrTooLarge when it is bigger, artifact.ErrDigestMismatch when
// the registry sends other bytes.
func (r *signatureStore) payload(repo name.Repository, desc v1.Descriptor) ([]byte, error) {
	if desc.Size > MaxPayloadBytes {
		return nil, fmt.Errorf("%w: the payload declares %d bytes, bound %d", artifact.ErrTooLarge, desc.Size, MaxPayloadBytes)
	}
	if desc.Digest.Algorithm != "sha256" || len(desc.Digest.Hex) != 64 {
		return nil, fmt.Errorf("%w: payload digest %q is not sha256:<64 hex>", artifact.ErrDigestMismatch, desc.Digest)
	}
	layer, err := remote.Layer(repo.Digest(desc.Digest.String()), r.ropts...)
	if err != nil {
		return nil, fmt.Errorf("payload %s: %w", desc.Digest, err)
	}
	// A remote layer's Compressed checks the digest of what it read when it reaches the end.
	rc, err := layer.Compressed()
	if err != nil {
		return nil, fmt.Errorf("get payload %s: %w", desc.Digest, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, MaxPayloadBytes+1))
	switch {
	case int64(len(b)) > MaxPayloadBytes:
		return nil, fmt.Errorf("%w: the registry sends more than %d bytes for payload %s", artifact.ErrTooLarge, MaxPayloadBytes, desc.Digest)
	case err != nil && artifact.Temporary(err):
		return nil, fmt.Errorf("read payload %s: %w", desc.Digest, err)
	case err != nil:
		// go-containerregistry's digest check at the end of the blob has no error type of
		// its own; what is not a transfer failure is the content.
		return nil, fmt.Errorf("%w: payload %s: %v", artifact.ErrDigestMismatch, desc.Digest, err)
	case int64(len(b)) != desc.Size:
		return nil, fmt.Errorf("%w: payload %s has %d bytes, its descriptor says %d", artifact.ErrDigestMismatch, desc.Digest, len(b), desc.Size)
	}
	return b, nil
}

// exists checks that the artifact d is in the registry.
func (r *signatureStore) exists(d name.Digest) error {
	if _, err := remote.Head(d, r.ropts...); err != nil {
		var te *transport.Error
		if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
			return fmt.Errorf("%s is not in the registry: push it first (splice push), and sign the reference it prints", d)
		}
		return fmt.Errorf("look up %s: %w", d, err)
	}
	return nil
}

// put uploads blobs into repo, then the manifest raw under tag.
func (r *signatureStore) put(tag name.Tag, raw []byte, mediaType types.MediaType, blobs ...v1.Layer) error {
	ropts := r.ropts
	for _, b := range blobs {
		if err := remote.WriteLayer(tag.Context(), b, ropts...); err != nil {
			d, _ := b.Digest()
			return fmt.Errorf("upload blob %s to %s: %w", d, tag.Context(), err)
		}
	}
	if err := remote.Put(tag, rawManifest{raw: raw, mediaType: mediaType}, ropts...); err != nil {
		return fmt.Errorf("put signature manifest %s: %w", tag, err)
	}
	return nil
}

// rawManifest is a manifest uploaded byte for byte.
type rawManifest struct {
	raw       []byte
	mediaType types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mediaType, nil }

// boundedManifests fails manifest downloads over max bytes, before go-containerregistry reads
// them whole into memory (its own bound is 100 MiB).
type boundedManifests struct {
	inner http.RoundTripper
	max   int64
}

func (t *boundedManifests) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.inner.RoundTrip(req)
	if err != nil || req.Method != http.MethodGet || !strings.Contains(req.URL.Path, "/manifests/") {
		return resp, err
	}
	if resp.ContentLength > t.max {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: the registry sends %d bytes for %s, bound %d", artifact.ErrTooLarge, resp.ContentLength, req.URL.Path, t.max)
	}
	resp.Body = &boundedBody{ReadCloser: resp.Body, max: t.max, left: t.max, what: req.URL.Path}
	return resp, nil
}

// boundedBody fails a read past left bytes.
type boundedBody struct {
	io.ReadCloser
	max, left int64
	what      string
}

func (b *boundedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return n, fmt.Errorf("%w: the registry sends more than the bound of %d bytes for %s", artifact.ErrTooLarge, b.max, b.what)
	}
	return n, err
}
