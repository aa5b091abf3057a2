package trust

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/sigstore/pkg/signature/payload"

	"github.com/splice-dev/splice/artifact"
)

// Sign signs the artifact ref (registry/repo@sha256:<hex>, which must be in the registry) with
// s, and stores the signature as cosign does: a simple-signing payload naming the repository,
// the digest and annotations, as one more layer of the manifest tagged sha256-<hex>.sig in the
// same repository. The signatures already there are kept; signing again with the same key and
// annotations changes nothing. opts are the registry options of artifact.Push (credentials,
// transport, insecure).
//
// Two signers of one artifact at the same moment may lose one of the two signatures (the
// registry has no compare-and-swap for tags, as with cosign): sign again to be sure.
func Sign(ctx context.Context, ref string, s *Signer, annotations map[string]string, opts ...artifact.Option) error {
	d, err := artifact.ParseRef(ref, opts...)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	if s == nil {
		return errors.New("sign: no signing key: load one with LoadSigner")
	}
	body, err := signedPayload(d, annotations)
	if err != nil {
		return fmt.Errorf("sign %s: %w", ref, err)
	}
	sig, err := s.sv.SignMessage(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("sign %s: %w", ref, err)
	}
	r := newSignatureStore(ctx, opts)
	if err := r.exists(d); err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	m, err := r.signatures(d)
	if err != nil {
		return fmt.Errorf("sign %s: %w (delete the tag %s to start its signatures over)", ref, err, signatureTag(d).TagStr())
	}
	layer := static.NewLayer(body, SimpleSigningMediaType)
	if s.signedAlready(m, layer, body) {
		return nil
	}
	m, err = appendSignature(m, signatureTag(d), layer, map[string]string{
		SignatureAnnotation:      base64.StdEncoding.EncodeToString(sig),
		KeyFingerprintAnnotation: s.fingerprint,
	})
	if err != nil {
		return fmt.Errorf("sign %s: %w", ref, err)
	}
	config, err := signatureConfig(m)
	if err != nil {
		return fmt.Errorf("sign %s: %w", ref, err)
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("sign %s: encode signature manifest: %w", ref, err)
	}
	if err := r.put(signatureTag(d), raw, m.MediaType, layer, config); err != nil {
		return fmt.Errorf("sign %s: %w", ref, err)
	}
	return nil
}

// signedPayload is cosign's simple-signing payload for d: critical.identity.docker-reference
// is the repository, critical.image.docker-manifest-digest the digest, optional the annotations.
func signedPayload(d name.Digest, annotations map[string]string) ([]byte, error) {
	var optional map[string]any
	for k, v := range annotations {
		if k == "" {
			return nil, errors.New("an annotation has an empty key: give key=value")
		}
		if optional == nil {
			optional = map[string]any{}
		}
		optional[k] = v
	}
	body, err := json.Marshal(payload.Cosign{Image: d, Annotations: optional})
	if err != nil {
		return nil, fmt.Errorf("encode payload: %w", err)
	}
	if int64(len(body)) > MaxPayloadBytes {
		return nil, fmt.Errorf("%w: the payload is %d bytes, bound %d: give fewer or shorter annotations", artifact.ErrTooLarge, len(body), MaxPayloadBytes)
	}
	return body, nil
}

// signedAlready reports whether m has a layer with this very payload signed by s.
func (s *Signer) signedAlready(m *v1.Manifest, layer v1.Layer, body []byte) bool {
	if m == nil {
		return false
	}
	digest, err := layer.Digest()
	if err != nil {
		return false
	}
	for _, l := range m.Layers {
		if l.MediaType != SimpleSigningMediaType || l.Digest != digest {
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(l.Annotations[SignatureAnnotation])
		if err == nil && s.sv.VerifySignature(bytes.NewReader(sig), bytes.NewReader(body)) == nil {
			return true
		}
	}
	return false
}

// appendSignature adds the layer with its annotations to m, the signature manifest at tag, or to
// a new OCI image manifest when m is nil.
func appendSignature(m *v1.Manifest, tag name.Tag, layer v1.Layer, annotations map[string]string) (*v1.Manifest, error) {
	if m == nil {
		m = &v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, Config: v1.Descriptor{MediaType: types.OCIConfigJSON}}
	}
	if m.MediaType == "" {
		m.MediaType = types.OCIManifestSchema1
	}
	if len(m.Layers) >= MaxSignatureLayers {
		return nil, fmt.Errorf("it already has %d signatures, the most Splice reads: delete the tag %s and sign it again with the keys that matter", len(m.Layers), tag)
	}
	digest, err := layer.Digest()
	if err != nil {
		return nil, err
	}
	size, err := layer.Size()
	if err != nil {
		return nil, err
	}
	m.Layers = append(m.Layers, v1.Descriptor{MediaType: SimpleSigningMediaType, Size: size, Digest: digest, Annotations: annotations})
	return m, nil
}

// signatureConfig is the config blob of a signature manifest, as cosign writes it: an image
// config whose rootfs lists the layers (uncompressed, so each diff ID is the layer's digest).
// It sets m's config descriptor.
func signatureConfig(m *v1.Manifest) (v1.Layer, error) {
	cf := v1.ConfigFile{RootFS: v1.RootFS{Type: "layers"}}
	for _, l := range m.Layers {
		cf.RootFS.DiffIDs = append(cf.RootFS.DiffIDs, l.Digest)
	}
	raw, err := json.Marshal(&cf)
	if err != nil {
		return nil, fmt.Errorf("encode signature config: %w", err)
	}
	if m.Config.MediaType == "" {
		m.Config.MediaType = types.OCIConfigJSON
	}
	config := static.NewLayer(raw, m.Config.MediaType)
	if m.Config.Digest, err = config.Digest(); err != nil {
		return nil, err
	}
	m.Config.Size = int64(len(raw))
	return config, nil
}
