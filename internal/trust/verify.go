package trust

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/sigstore/pkg/signature/payload"

	"github.com/splice-dev/splice/artifact"
)

// Reasons of a Refusal.
const (
	// ReasonRegistryNotAllowed: the artifact's repository is under none of the policy's
	// registry prefixes.
	ReasonRegistryNotAllowed = "RegistryNotAllowed"
	// ReasonSignatureMissing: the artifact has no signature (no sha256-<hex>.sig manifest, or
	// one without a signature layer).
	ReasonSignatureMissing = "SignatureMissing"
	// ReasonSignatureUntrusted: the artifact has signatures, none by a key of the policy.
	ReasonSignatureUntrusted = "SignatureUntrusted"
	// ReasonSignatureInvalid: a signature by (or claiming) a key of the policy does not verify,
	// or its payload names another digest or repository or lacks a wanted annotation, or the
	// signatures could not be read within their bounds.
	ReasonSignatureInvalid = "SignatureInvalid"
)

// Refusal is the policy's no: the artifact may not run. Reason is one of the Reason constants;
// Message says what is wrong and what to fix.
type Refusal struct {
	Reason  string
	Message string
}

func (r *Refusal) Error() string { return r.Reason + ": " + r.Message }

// Verified is an artifact the policy accepts.
type Verified struct {
	// Ref is the artifact, registry/repo@sha256:<hex>.
	Ref string
	// Policy is the name of the policy that accepted it.
	Policy string
	// KeyFingerprint is the key of the signature that verified: "sha256:<hex>" of its DER
	// SubjectPublicKeyInfo (KeyFingerprint, Signer.Fingerprint).
	KeyFingerprint string
	// Annotations are the string annotations of that signature's payload (its optional
	// section), the wanted ones among them.
	Annotations map[string]string
}

// Verify accepts ref (registry/repo@sha256:<hex>) when its repository is allowed by
// Registries, and one of its first MaxSignatureLayers signature layers verifies with one of
// Keys over its payload, whose docker-manifest-digest is ref's digest, whose docker-reference
// is ref's repository, and whose optional annotations include every want key with its value.
//
// A no is a *Refusal (errors.As) with one of the Reason constants. Any other error is not a
// verdict: a reference not pinned by digest (artifact.ErrNotPinned), an invalid policy, or a
// registry that did not answer (artifact.Temporary says whether a retry may help). opts are
// the registry options of artifact.Pull.
func (p *Policy) Verify(ctx context.Context, ref string, want map[string]string, opts ...artifact.Option) (*Verified, error) {
	d, err := artifact.ParseRef(ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	c, err := p.compile()
	if err != nil {
		return nil, fmt.Errorf("verify %s: trust policy %s: %w", d, p.label(-1), err)
	}
	repo := d.Context().Name()
	if !c.allows(repo) {
		return nil, &Refusal{Reason: ReasonRegistryNotAllowed, Message: fmt.Sprintf(
			"%s is in repository %s, which trust policy %q does not allow (it allows %s): push the plugin under one of those, or add its repository to the policy's registries",
			d, repo, p.Name, strings.Join(p.Registries, ", "))}
	}
	r := newSignatureStore(ctx, opts)
	m, err := r.signatures(d)
	switch {
	case errors.Is(err, artifact.ErrTooLarge) || errors.Is(err, errBadSignatureManifest):
		return nil, &Refusal{Reason: ReasonSignatureInvalid, Message: fmt.Sprintf(
			"%s: its signatures cannot be read: %v: delete the tag %s and sign the artifact again with `splice sign`", d, err, signatureTag(d).TagStr())}
	case err != nil:
		return nil, fmt.Errorf("verify %s: %w", d, err)
	case m == nil:
		return nil, missing(p, d, "there is no "+signatureTag(d).String())
	}
	v := &verification{policy: p, c: c, d: d, want: want, r: r}
	return v.run(m)
}

// verification is one Verify of one artifact.
type verification struct {
	policy *Policy
	c      *compiled
	d      name.Digest
	want   map[string]string
	r      *signatureStore

	invalid   []string // why signatures by (or claiming) a trusted key were refused
	untrusted []string // the key fingerprints untrusted signatures claim ("" for none)
	retry     error    // the first registry failure reading a payload
}

// run looks at the signature layers of m: the first that verifies wins.
func (v *verification) run(m *v1.Manifest) (*Verified, error) {
	layers := m.Layers
	if len(layers) > MaxSignatureLayers {
		layers = layers[:MaxSignatureLayers]
	}
	for i, l := range layers {
		if l.MediaType != SimpleSigningMediaType {
			continue
		}
		if ok := v.layer(i, l); ok != nil {
			return ok, nil
		}
	}
	return nil, v.verdict(len(m.Layers))
}

// verdict is the refusal (or retryable error) when no layer verified.
func (v *verification) verdict(layers int) error {
	looked := ""
	if layers > MaxSignatureLayers {
		looked = fmt.Sprintf(" (only the first %d of its %d signature layers were looked at)", MaxSignatureLayers, layers)
	}
	switch {
	case v.retry != nil:
		return fmt.Errorf("verify %s: %w", v.d, v.retry)
	case len(v.invalid) > 0:
		return &Refusal{Reason: ReasonSignatureInvalid, Message: fmt.Sprintf(
			"%s: no signature is valid under trust policy %q%s: %s", v.d, v.policy.Name, looked, strings.Join(firstN(v.invalid, 3), "; "))}
	case len(v.untrusted) > 0:
		return &Refusal{Reason: ReasonSignatureUntrusted, Message: fmt.Sprintf(
			"%s has %d signature(s)%s, none by a key of trust policy %q%s: sign it with one of the policy's keys (`splice sign --key cosign.key %s`), or add the signer's public key to the trust policy %q",
			v.d, len(v.untrusted), looked, v.policy.Name, claimedKeys(v.untrusted), v.d, v.policy.Name)}
	}
	return missing(v.policy, v.d, "its signature manifest "+signatureTag(v.d).String()+" holds no signature layer")
}

func missing(p *Policy, d name.Digest, why string) error {
	return &Refusal{Reason: ReasonSignatureMissing, Message: fmt.Sprintf(
		"%s is not signed (%s): sign it with `splice sign --key cosign.key %s` (or `cosign sign --key`), using a key of trust policy %q", d, why, d, p.Name)}
}

// layer checks one signature layer: the Verified when it verifies; otherwise it records why not.
func (v *verification) layer(i int, l v1.Descriptor) *Verified {
	claimed := l.Annotations[KeyFingerprintAnnotation]
	trusted := v.c.key(claimed) != nil
	sig, err := base64.StdEncoding.DecodeString(l.Annotations[SignatureAnnotation])
	if err != nil || len(sig) == 0 {
		v.refuse(trusted, claimed, fmt.Sprintf("layer %d has no base64 signature in its %s annotation", i, SignatureAnnotation))
		return nil
	}
	body, err := v.r.payload(v.d.Context(), l)
	if err != nil {
		if artifact.Temporary(err) {
			if v.retry == nil {
				v.retry = fmt.Errorf("signature layer %d: %w", i, err)
			}
			return nil
		}
		v.invalid = append(v.invalid, fmt.Sprintf("layer %d: %v", i, err))
		return nil
	}
	key := v.c.verifying(sig, body)
	if key == nil {
		v.refuse(trusted, claimed, fmt.Sprintf("layer %d names key %s of the policy, but its signature does not verify over its payload: the signature manifest was altered; sign the artifact again with `splice sign`", i, claimed))
		return nil
	}
	if why := v.checkPayload(body); why != "" {
		v.invalid = append(v.invalid, fmt.Sprintf("layer %d, signed by key %s: %s", i, key.fingerprint, why))
		return nil
	}
	return &Verified{Ref: v.d.String(), Policy: v.policy.Name, KeyFingerprint: key.fingerprint, Annotations: stringAnnotations(body)}
}

// refuse records a signature that does not verify: invalid when it names a trusted key,
// untrusted otherwise.
func (v *verification) refuse(trusted bool, claimed, why string) {
	if trusted {
		v.invalid = append(v.invalid, why)
		return
	}
	v.untrusted = append(v.untrusted, claimed)
}

// checkPayload says what is wrong with a payload signed by a trusted key, or "".
func (v *verification) checkPayload(body []byte) string {
	var sci payload.SimpleContainerImage
	if err := json.Unmarshal(body, &sci); err != nil {
		return fmt.Sprintf("the payload is not a simple-signing JSON document (%v): sign the artifact again with `splice sign`", err)
	}
	if sci.Critical.Type != payload.CosignSignatureType {
		return fmt.Sprintf("the payload's critical.type is %q, not %q: sign the artifact again with `splice sign`", sci.Critical.Type, payload.CosignSignatureType)
	}
	if got := sci.Critical.Image.DockerManifestDigest; got != v.d.DigestStr() {
		return fmt.Sprintf("it signs digest %q, not %s: the signature belongs to another artifact; sign this one with `splice sign --key cosign.key %s`", got, v.d.DigestStr(), v.d)
	}
	ref := sci.Critical.Identity.DockerReference
	if repo, err := name.NewRepository(ref); err != nil || repo.Name() != v.d.Context().Name() {
		return fmt.Sprintf("it signs repository %q, not %s: the signature was made for the artifact elsewhere; sign it where it is, with `splice sign --key cosign.key %s`", ref, v.d.Context().Name(), v.d)
	}
	got := stringAnnotations(body)
	for _, k := range slices.Sorted(maps.Keys(v.want)) {
		if val, ok := got[k]; !ok || val != v.want[k] {
			have := "none"
			if ok {
				have = fmt.Sprintf("%q", val)
			}
			return fmt.Sprintf("it lacks the annotation %s=%s (it has %s): sign it with `splice sign -a %s=%s`", k, v.want[k], have, k, v.want[k])
		}
	}
	return ""
}

// stringAnnotations are the string values of a payload's optional section.
func stringAnnotations(body []byte) map[string]string {
	var sci payload.SimpleContainerImage
	out := map[string]string{}
	if json.Unmarshal(body, &sci) != nil {
		return out
	}
	for k, val := range sci.Optional {
		if s, ok := val.(string); ok {
			out[k] = s
		}
	}
	return out
}

// key is the policy's key with that fingerprint, or nil.
func (c *compiled) key(fingerprint string) *trustedKey {
	for _, k := range c.keys {
		if fingerprint != "" && k.fingerprint == fingerprint {
			return k
		}
	}
	return nil
}

// verifying is the policy's key under which sig verifies over body, or nil.
func (c *compiled) verifying(sig, body []byte) *trustedKey {
	for _, k := range c.keys {
		if k.verifier.VerifySignature(bytes.NewReader(sig), bytes.NewReader(body)) == nil {
			return k
		}
	}
	return nil
}

func claimedKeys(fingerprints []string) string {
	var named []string
	for _, f := range fingerprints {
		if f != "" && !slices.Contains(named, f) {
			named = append(named, f)
		}
	}
	if len(named) == 0 {
		return ""
	}
	return " (signed by " + strings.Join(firstN(named, 3), ", ") + ")"
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("and %d more", len(s)-n))
	}
	return s
}
