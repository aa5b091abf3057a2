package trust

// Signing and verifying against go-containerregistry's registry server on loopback, with real
// plugin artifacts pushed by artifact.Push and real keys generated here.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/splice-dev/splice/artifact"
	"github.com/splice-dev/splice/examples/greeter/greeterbuild"
)

// pluginPath is a real greeter plugin, built once for the package's tests.
var pluginPath string

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	b, remove, err := greeterbuild.NewTemp("splice-trust-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer remove()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	a, err := b.Plugin(ctx, "v1", fmt.Sprintf("trust%d", os.Getpid()))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	pluginPath = a.Path
	return m.Run()
}

// testRegistry is go-containerregistry's in-memory registry on loopback whose blob store can
// be made to serve other bytes for a digest, as a broken disk or a hostile proxy would.
type testRegistry struct {
	host  string
	blobs *tamperable

	mu      sync.Mutex
	special map[string]http.HandlerFunc // GET answers by URL path, instead of the registry's
}

type tamperable struct {
	inner   registry.BlobHandler
	mu      sync.Mutex
	replace map[string][]byte
}

func (b *tamperable) Get(ctx context.Context, repo string, h v1.Hash) (io.ReadCloser, error) {
	b.mu.Lock()
	data, ok := b.replace[h.String()]
	b.mu.Unlock()
	if ok {
		return io.NopCloser(bytes.NewReader(data)), nil
	}
	return b.inner.Get(ctx, repo, h)
}

func (b *tamperable) Stat(ctx context.Context, repo string, h v1.Hash) (int64, error) {
	return b.inner.(registry.BlobStatHandler).Stat(ctx, repo, h)
}

func (b *tamperable) Put(ctx context.Context, repo string, h v1.Hash, rc io.ReadCloser) error {
	return b.inner.(registry.BlobPutHandler).Put(ctx, repo, h, rc)
}

func newTestRegistry(t *testing.T) *testRegistry {
	t.Helper()
	r := &testRegistry{blobs: &tamperable{inner: registry.NewInMemoryBlobHandler(), replace: map[string][]byte{}}, special: map[string]http.HandlerFunc{}}
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithBlobHandler(r.blobs))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		f := r.special[req.URL.Path]
		r.mu.Unlock()
		if f != nil && req.Method == http.MethodGet {
			f(w, req)
			return
		}
		h.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	r.host = strings.TrimPrefix(srv.URL, "http://")
	return r
}

// answer makes GET path answer with f.
func (r *testRegistry) answer(path string, f http.HandlerFunc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.special[path] = f
}

// flood makes GET path answer with an endless body (64 MiB at most, no Content-Length); served
// waits for the answer to end and returns how many bytes the client took.
func (r *testRegistry) flood(path string) (served func() int64) {
	var n atomic.Int64
	done := make(chan struct{})
	var once sync.Once
	r.answer(path, func(w http.ResponseWriter, _ *http.Request) {
		defer once.Do(func() { close(done) })
		w.Header().Set("Content-Type", string(types.OCIManifestSchema1))
		chunk := bytes.Repeat([]byte(" "), 32<<10)
		for n.Load() < 64<<20 {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			n.Add(int64(len(chunk)))
		}
	})
	return func() int64 {
		select {
		case <-done:
		case <-time.After(30 * time.Second):
		}
		return n.Load()
	}
}

// cutShort makes GET path declare size bytes and send half of them, then drop the connection.
func (r *testRegistry) cutShort(path string, size int64) {
	r.answer(path, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(size))
		w.WriteHeader(http.StatusOK)
		w.Write(bytes.Repeat([]byte("{"), int(size/2)))
	})
}

// The tests' registries are httptest servers without TLS.
var regOpts = []artifact.Option{artifact.WithAuth(authn.Anonymous), artifact.WithInsecure(true)}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// push pushes the plugin to reg/repo as an artifact; version makes the digest differ.
func (r *testRegistry) push(t *testing.T, repo, version string) string {
	t.Helper()
	cfg := artifact.Config{APIVersion: "1.0.0", BuiltAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	ref, _, err := artifact.Push(ctxFor(t), r.host+"/"+repo, pluginPath, cfg, append(regOpts, artifact.WithVersion(version))...)
	if err != nil {
		t.Fatalf("push %s: %v", repo, err)
	}
	return ref
}

// newSigner is a fresh key, unencrypted (the encrypted format's scrypt takes a good part of a
// second, and is tested on its own).
func newSigner(t *testing.T) (*Signer, string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	s, err := LoadSigner(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := s.PublicKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	return s, string(pub)
}

func policyOf(keys ...string) *Policy {
	return &Policy{Name: "team-a", Namespaces: []string{"*"}, Keys: keys}
}

func sign(t *testing.T, ref string, s *Signer, annotations map[string]string) {
	t.Helper()
	if err := Sign(ctxFor(t), ref, s, annotations, regOpts...); err != nil {
		t.Fatalf("Sign %s: %v", ref, err)
	}
}

func mustVerify(t *testing.T, p *Policy, ref string, want map[string]string) *Verified {
	t.Helper()
	v, err := p.Verify(ctxFor(t), ref, want, regOpts...)
	if err != nil {
		t.Fatalf("Verify %s: %v", ref, err)
	}
	return v
}

// refused requires a Refusal with reason and message substrings.
func refused(t *testing.T, p *Policy, ref string, want map[string]string, reason string, msg ...string) *Refusal {
	t.Helper()
	v, err := p.Verify(ctxFor(t), ref, want, regOpts...)
	var r *Refusal
	if !errors.As(err, &r) {
		t.Fatalf("Verify %s = %+v, %v; want a Refusal %s", ref, v, err, reason)
	}
	if r.Reason != reason {
		t.Fatalf("Verify %s: reason %s (%s); want %s", ref, r.Reason, r.Message, reason)
	}
	for _, m := range msg {
		if !strings.Contains(r.Message, m) {
			t.Errorf("Verify %s: message lacks %q:\n%s", ref, m, r.Message)
		}
	}
	if artifact.Temporary(err) {
		t.Errorf("Verify %s: a refusal is reported as temporary", ref)
	}
	return r
}

func digestOf(t *testing.T, ref string) name.Digest {
	t.Helper()
	d, err := artifact.ParseRef(ref)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// getSignatures reads the signature manifest of ref straight from the registry.
func getSignatures(t *testing.T, ref string) *v1.Manifest {
	t.Helper()
	desc, err := remote.Get(signatureTag(digestOf(t, ref)), remote.WithAuth(authn.Anonymous))
	if err != nil {
		t.Fatalf("get signatures of %s: %v", ref, err)
	}
	m, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// putSignatures writes m as the signature manifest of ref.
func putSignatures(t *testing.T, ref string, m any) {
	t.Helper()
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(signatureTag(digestOf(t, ref)), rawManifest{raw: raw, mediaType: types.OCIManifestSchema1}, remote.WithAuth(authn.Anonymous)); err != nil {
		t.Fatalf("put signatures of %s: %v", ref, err)
	}
}

// upload stores data as a blob of ref's repository and returns its descriptor.
func upload(t *testing.T, ref string, data []byte) v1.Descriptor {
	t.Helper()
	l := static.NewLayer(data, SimpleSigningMediaType)
	if err := remote.WriteLayer(digestOf(t, ref).Context(), l, remote.WithAuth(authn.Anonymous)); err != nil {
		t.Fatal(err)
	}
	h, _ := l.Digest()
	return v1.Descriptor{MediaType: SimpleSigningMediaType, Digest: h, Size: int64(len(data))}
}

// signedLayer uploads body and returns its layer descriptor signed by s.
func signedLayer(t *testing.T, ref string, s *Signer, body []byte) v1.Descriptor {
	t.Helper()
	sig, err := s.sv.SignMessage(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	desc := upload(t, ref, body)
	desc.Annotations = map[string]string{SignatureAnnotation: base64.StdEncoding.EncodeToString(sig), KeyFingerprintAnnotation: s.Fingerprint()}
	return desc
}

// TestSignStoresCosignFormat reads what Sign wrote with nothing of this package: the tag, the
// manifest, the payload JSON, and the signature checked with crypto/ecdsa alone.
func TestSignStoresCosignFormat(t *testing.T) {
	reg := newTestRegistry(t)
	ref := reg.push(t, "team-a/greeter", "v1")
	s, pubPEM := newSigner(t)
	sign(t, ref, s, map[string]string{"env": "prod"})

	d := digestOf(t, ref)
	hex := strings.TrimPrefix(d.DigestStr(), "sha256:")
	req, _ := http.NewRequest(http.MethodGet, "http://"+reg.host+"/v2/team-a/greeter/manifests/sha256-"+hex+".sig", nil)
	req.Header.Set("Accept", string(types.OCIManifestSchema1))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET the sha256-<hex>.sig tag: %v %v", err, resp)
	}
	defer resp.Body.Close()
	var m struct {
		MediaType string `json:"mediaType"`
		Config    struct {
			MediaType string `json:"mediaType"`
		} `json:"config"`
		Layers []struct {
			MediaType   string            `json:"mediaType"`
			Digest      string            `json:"digest"`
			Annotations map[string]string `json:"annotations"`
		} `json:"layers"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	if m.MediaType != "application/vnd.oci.image.manifest.v1+json" || m.Config.MediaType != "application/vnd.oci.image.config.v1+json" || len(m.Layers) != 1 {
		t.Fatalf("signature manifest: %+v", m)
	}
	l := m.Layers[0]
	if l.MediaType != "application/vnd.dev.cosign.simplesigning.v1+json" {
		t.Fatalf("layer media type %s", l.MediaType)
	}
	blob, err := http.Get("http://" + reg.host + "/v2/team-a/greeter/blobs/" + l.Digest)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(blob.Body)
	blob.Body.Close()
	var p struct {
		Critical struct {
			Identity struct {
				DockerReference string `json:"docker-reference"`
			} `json:"identity"`
			Image struct {
				DockerManifestDigest string `json:"docker-manifest-digest"`
			} `json:"image"`
			Type string `json:"type"`
		} `json:"critical"`
		Optional map[string]string `json:"optional"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("payload %s: %v", body, err)
	}
	if p.Critical.Identity.DockerReference != reg.host+"/team-a/greeter" || p.Critical.Image.DockerManifestDigest != d.DigestStr() ||
		p.Critical.Type != "cosign container image signature" || p.Optional["env"] != "prod" {
		t.Fatalf("payload: %s", body)
	}
	sig, err := base64.StdEncoding.DecodeString(l.Annotations["dev.cosignproject.cosign/signature"])
	if err != nil {
		t.Fatal(err)
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey([]byte(pubPEM))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), sum[:], sig) {
		t.Fatal("the signature annotation is not an ECDSA signature over the payload's SHA-256 by the key")
	}
}

func TestVerifySignedByTrustedKey(t *testing.T) {
	reg := newTestRegistry(t)
	ref := reg.push(t, "team-a/greeter", "v1")
	s, pub := newSigner(t)
	sign(t, ref, s, map[string]string{"env": "prod", "team": "a"})
	_, other := newSigner(t)

	v := mustVerify(t, policyOf(other, pub), ref, map[string]string{"env": "prod"})
	if v.KeyFingerprint != s.Fingerprint() || v.Policy != "team-a" || v.Ref != ref {
		t.Errorf("Verified %+v; want key %s, policy team-a, ref %s", v, s.Fingerprint(), ref)
	}
	if v.Annotations["env"] != "prod" || v.Annotations["team"] != "a" || len(v.Annotations) != 2 {
		t.Errorf("Verified annotations %v", v.Annotations)
	}
	fp, err := KeyFingerprint([]byte(pub))
	if err != nil || fp != s.Fingerprint() {
		t.Errorf("KeyFingerprint(pub) = %s, %v; signer's %s", fp, err, s.Fingerprint())
	}
	// The reference may carry a tag as well: the digest decides.
	mustVerify(t, policyOf(pub), strings.Replace(ref, "@", ":latest@", 1), nil)
}

func TestVerifyUnsignedIsMissing(t *testing.T) {
	reg := newTestRegistry(t)
	ref := reg.push(t, "team-a/greeter", "v1")
	_, pub := newSigner(t)
	refused(t, policyOf(pub), ref, nil, ReasonSignatureMissing, "splice sign --key", "sha256-")

	// A signature manifest without a signature layer is no signature either.
	m := emptySignatures(t, ref)
	putSignatures(t, ref, m)
	refused(t, policyOf(pub), ref, nil, ReasonSignatureMissing, "holds no signature layer")
}

// emptySignatures is a signature manifest of ref without layers, its config blob uploaded.
func emptySignatures(t *testing.T, ref string) *v1.Manifest {
	t.Helper()
	config := upload(t, ref, []byte(`{"rootfs":{"type":"layers","diff_ids":[]}}`))
	config.MediaType = types.OCIConfigJSON
	return &v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, Config: config}
}

func TestVerifyUntrustedKey(t *testing.T) {
	reg := newTestRegistry(t)
	ref := reg.push(t, "team-a/greeter", "v1")
	signer, _ := newSigner(t)
	_, trusted := newSigner(t)
	sign(t, ref, signer, nil)
	refused(t, policyOf(trusted), ref, nil, ReasonSignatureUntrusted, "add the signer's public key to the trust policy \"team-a\"", signer.Fingerprint())

	// As cosign writes it, without Splice's fingerprint hint: still untrusted.
	m := getSignatures(t, ref)
	delete(m.Layers[0].Annotations, KeyFingerprintAnnotation)
	putSignatures(t, ref, m)
	refused(t, policyOf(trusted), ref, nil, ReasonSignatureUntrusted)
}

// TestFingerprintAnnotationIsOnlyAHint: a signature verifies without the annotation, and an
// annotation naming a trusted key does not make another key's signature verify.
func TestFingerprintAnnotationIsOnlyAHint(t *testing.T) {
	reg := newTestRegistry(t)
	ref := reg.push(t, "team-a/greeter", "v1")
	s, pub := newSigner(t)
	sign(t, ref, s, nil)
	m := getSignatures(t, ref)
	delete(m.Layers[0].Annotations, KeyFingerprintAnnotation)
	putSignatures(t, ref, m)
	if v := mustVerify(t, policyOf(pub), ref, nil); v.KeyFingerprint != s.Fingerprint() {
		t.Errorf("verified by %s, want %s", v.KeyFingerprint, s.Fingerprint())
	}

	ref2 := reg.push(t, "team-a/greeter", "v2")
	other, _ := newSigner(t)
	sign(t, ref2, other, nil)
	m = getSignatures(t, ref2)
	m.Layers[0].Annotations[KeyFingerprintAnnotation] = s.Fingerprint() // a lie
	putSignatures(t, ref2, m)
	refused(t, policyOf(pub), ref2, nil, ReasonSignatureInvalid, "does not verify")
}

func TestVerifyTamperedSignatureIsInvalid(t *testing.T) {
	reg := newTestRegistry(t)
	ref := reg.push(t, "team-a/greeter", "v1")
	s, pub := newSigner(t)
	sign(t, ref, s, nil)
	m := getSignatures(t, ref)
	sig, err := base64.StdEncoding.DecodeString(m.Layers[0].Annotations[SignatureAnnotation])
	if err != nil {
		t.Fatal(err)
	}
	sig[len(sig)/2] ^= 0x01
	m.Layers[0].Annotations[SignatureAnnotation] = base64.StdEncoding.EncodeToString(sig)
	putSignatures(t, ref, m)
	refused(t, policyOf(pub), ref, nil, ReasonSignatureInvalid, "does not verify over its payload", "splice sign")

	m.Layers[0].Annotations[SignatureAnnotation] = "not base64!"
	putSignatures(t, ref, m)
	refused(t, policyOf(pub), ref, nil, ReasonSignatureInvalid, "no base64 signature")
}

// TestVerifyTamperedPayloadBlobIsInvalid: the registry serves other bytes for the payload's
// digest; the payload is never used.
func TestVerifyTamperedPayloadBlobIsInvalid(t *testing.T) {
	reg := newTestRegistry(t)
	ref := reg.push(t, "team-a/greeter", "v1")
	s, pub := newSigner(t)
	sign(t, ref, s, nil)
	l := getSignatures(t, ref).Layers[0]
	other, err := signedPayload(digestOf(t, reg.push(t, "team-a/greeter", "v2")), nil) // same length
	if err != nil {
		t.Fatal(err)
	}
	reg.blobs.mu.Lock()
	reg.blobs.replace[l.Digest.String()] = other
	reg.blobs.mu.Unlock()
	r := refused(t, policyOf(pub), ref, nil, ReasonSignatureInvalid)
	if !strings.Contains(r.Message, "does not match its digest") && !strings.Contains(r.Message, "checksum") {
		t.Errorf("message does not say the payload did not match its digest: %s", r.Message)
	}
}

func TestVerifySignatureOfAnotherArtifactIsInvalid(t *testing.T) {
	reg := newTestRegistry(t)
	refA := reg.push(t, "team-a/greeter", "a")
	refB := reg.push(t, "team-a/greeter", "b")
	s, pub := newSigner(t)
	sign(t, refA, s, nil)
	putSignatures(t, refB, getSignatures(t, refA))
	refused(t, policyOf(pub), refB, nil, ReasonSignatureInvalid, "signs digest \""+digestOf(t, refA).DigestStr(), "another artifact")
	mustVerify(t, policyOf(pub), refA, nil)

	// The same artifact in another repository: its digest is the same, the repository not.
	refC := reg.push(t, "team-a/copy", "a")
	if digestOf(t, refC).DigestStr() != digestOf(t, refA).DigestStr() {
		t.Fatalf("the same push to two repositories gave two digests: %s, %s", refA, refC)
	}
	m := getSignatures(t, refA)
	upload(t, refC, payloadOf(t, refA, m.Layers[0]))
	putSignatures(t, refC, m)
	refused(t, policyOf(pub), refC, nil, ReasonSignatureInvalid, "signs repository \""+reg.host+"/team-a/greeter\"")
}

func payloadOf(t *testing.T, ref string, l v1.Descriptor) []byte {
	t.Helper()
	layer, err := remote.Layer(digestOf(t, ref).Context().Digest(l.Digest.String()), remote.WithAuth(authn.Anonymous))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := layer.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestVerifyWantedAnnotations(t *testing.T) {
	reg := newTestRegistry(t)
	ref := reg.push(t, "team-a/greeter", "v1")
	s, pub := newSigner(t)
	sign(t, ref, s, map[string]string{"env": "prod"})
	p := policyOf(pub)
	mustVerify(t, p, ref, nil)
	mustVerify(t, p, ref, map[string]string{"env": "prod"})
	refused(t, p, ref, map[string]string{"env": "staging"}, ReasonSignatureInvalid, "lacks the annotation env=staging (it has \"prod\")", "splice sign -a env=staging")
	refused(t, p, ref, map[string]string{"env": "prod", "reviewed": "yes"}, ReasonSignatureInvalid, "lacks the annotation reviewed=yes (it has none)")

	// A second signature with the annotation satisfies it; the first does not stand in the way.
	sign(t, ref, s, map[string]string{"env": "prod", "reviewed": "yes"})
	if v := mustVerify(t, p, ref, map[string]string{"reviewed": "yes"}); v.Annotations["reviewed"] != "yes" {
		t.Errorf("Verified annotations %v", v.Annotations)
	}
}

func TestVerifyRegistryNotAllowed(t *testing.T) {
	reg := newTestRegistry(t)
	s, pub := newSigner(t)
	refs := map[string]string{}
	for _, repo := range []string{"team-a", "team-a/greeter", "team-ab/greeter", "other/greeter"} {
		refs[repo] = reg.push(t, repo, "v1")
		sign(t, refs[repo], s, nil)
	}
	unsigned := reg.push(t, "team-ab/unsigned", "v1")
	h := reg.host
	tests := []struct {
		prefixes []string
		repo     string
		allowed  bool
	}{
		{nil, "team-ab/greeter", true},
		{[]string{h + "/team-a"}, "team-a", true},
		{[]string{h + "/team-a"}, "team-a/greeter", true},
		{[]string{h + "/team-a"}, "team-ab/greeter", false},
		{[]string{h + "/team-a/"}, "team-a/greeter", true},
		{[]string{h + "/team-a/"}, "team-a", false},
		{[]string{h + "/team-a/"}, "team-ab/greeter", false},
		{[]string{h + "/team-a/greeter"}, "team-a/greeter", true},
		{[]string{h + "/team-a/gree"}, "team-a/greeter", false},
		{[]string{h + "/"}, "other/greeter", true},
		{[]string{"registry.example.com/", h + "/team-ab"}, "team-ab/greeter", true},
		{[]string{"registry.example.com/"}, "team-a/greeter", false},
	}
	for _, tt := range tests {
		p := policyOf(pub)
		p.Registries = tt.prefixes
		if tt.allowed {
			mustVerify(t, p, refs[tt.repo], nil)
			continue
		}
		refused(t, p, refs[tt.repo], nil, ReasonRegistryNotAllowed, h+"/"+tt.repo, "add its repository to the policy's registries")
	}
	// The repository is checked before the signatures.
	p := policyOf(pub)
	p.Registries = []string{h + "/team-a"}
	refused(t, p, unsigned, nil, ReasonRegistryNotAllowed)
}

func TestSignIsIdempotentAndAppends(t *testing.T) {
	reg := newTestRegistry(t)
	ref := reg.push(t, "team-a/greeter", "v1")
	a, pubA := newSigner(t)
	b, pubB := newSigner(t)
	sign(t, ref, a, map[string]string{"env": "prod"})
	sign(t, ref, a, map[string]string{"env": "prod"})
	if n := len(getSignatures(t, ref).Layers); n != 1 {
		t.Fatalf("signing twice with one key left %d layers, want 1", n)
	}
	sign(t, ref, b, map[string]string{"env": "prod"})
	m := getSignatures(t, ref)
	if len(m.Layers) != 2 {
		t.Fatalf("a second key's signature: %d layers, want 2", len(m.Layers))
	}
	if v := mustVerify(t, policyOf(pubA), ref, nil); v.KeyFingerprint != a.Fingerprint() {
		t.Errorf("policy of key A verified with %s", v.KeyFingerprint)
	}
	if v := mustVerify(t, policyOf(pubB), ref, nil); v.KeyFingerprint != b.Fingerprint() {
		t.Errorf("policy of key B verified with %s", v.KeyFingerprint)
	}
	sign(t, ref, a, map[string]string{"env": "staging"})
	if n := len(getSignatures(t, ref).Layers); n != 3 {
		t.Fatalf("other annotations: %d layers, want 3", n)
	}
	sign(t, ref, b, map[string]string{"env": "prod"})
	if n := len(getSignatures(t, ref).Layers); n != 3 {
		t.Fatalf("re-signing with key B: %d layers, want 3", n)
	}
	// The config lists every layer, as an image config does.
	m = getSignatures(t, ref)
	var cf v1.ConfigFile
	if err := json.Unmarshal(payloadOf(t, ref, m.Config), &cf); err != nil || len(cf.RootFS.DiffIDs) != 3 || cf.RootFS.DiffIDs[2] != m.Layers[2].Digest {
		t.Errorf("config %+v, %v; want the 3 layer digests", cf.RootFS, err)
	}
}

func TestSignRefuses(t *testing.T) {
	reg := newTestRegistry(t)
	ref := reg.push(t, "team-a/greeter", "v1")
	s, _ := newSigner(t)
	tag := strings.Replace(ref, "@"+digestOf(t, ref).DigestStr(), ":latest", 1)
	if err := Sign(ctxFor(t), tag, s, nil, regOpts...); !errors.Is(err, artifact.ErrNotPinned) {
		t.Errorf("Sign of a tag: %v; want ErrNotPinned", err)
	}
	missing := reg.host + "/team-a/greeter@sha256:" + strings.Repeat("ab", 32)
	if err := Sign(ctxFor(t), missing, s, nil, regOpts...); err == nil || !strings.Contains(err.Error(), "push it first") {
		t.Errorf("Sign of an artifact not in the registry: %v", err)
	}
	if err := Sign(ctxFor(t), ref, s, map[string]string{"": "x"}, regOpts...); err == nil || !strings.Contains(err.Error(), "empty key") {
		t.Errorf("Sign with an empty annotation key: %v", err)
	}
	huge := map[string]string{"big": strings.Repeat("x", int(MaxPayloadBytes))}
	if err := Sign(ctxFor(t), ref, s, huge, regOpts...); !errors.Is(err, artifact.ErrTooLarge) {
		t.Errorf("Sign with a payload over the bound: %v; want ErrTooLarge", err)
	}
	if err := Sign(ctxFor(t), ref, nil, nil, regOpts...); err == nil {
		t.Error("Sign without a signer succeeded")
	}
	// Past MaxSignatureLayers Sign refuses to add one that Verify would not look at.
	m := emptySignatures(t, ref)
	for i := 0; i < MaxSignatureLayers; i++ {
		m.Layers = append(m.Layers, signedLayer(t, ref, s, []byte(fmt.Sprintf(`{"n":%d}`, i))))
	}
	putSignatures(t, ref, m)
	if err := Sign(ctxFor(t), ref, s, nil, regOpts...); err == nil || !strings.Contains(err.Error(), "already has 32 signatures") {
		t.Errorf("Sign past %d layers: %v", MaxSignatureLayers, err)
	}
}

func TestVerifyErrorsThatAreNotRefusals(t *testing.T) {
	reg := newTestRegistry(t)
	ref := reg.push(t, "team-a/greeter", "v1")
	_, pub := newSigner(t)
	p := policyOf(pub)
	tag := strings.Replace(ref, "@"+digestOf(t, ref).DigestStr(), ":latest", 1)
	_, err := p.Verify(ctxFor(t), tag, nil, regOpts...)
	var r *Refusal
	if !errors.Is(err, artifact.ErrNotPinned) || errors.As(err, &r) {
		t.Errorf("Verify of a tag: %v; want ErrNotPinned, not a Refusal", err)
	}

	// A registry that cannot be reached: retryable, not a verdict.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := ln.Addr().String()
	ln.Close()
	_, err = p.Verify(ctxFor(t), gone+"/team-a/greeter@"+digestOf(t, ref).DigestStr(), nil, regOpts...)
	if err == nil || errors.As(err, &r) || !artifact.Temporary(err) {
		t.Errorf("Verify against a closed port: %v; want a temporary error, not a Refusal", err)
	}

	bad := &Policy{Name: "bad", Namespaces: []string{"*"}}
	if _, err := bad.Verify(ctxFor(t), ref, nil, regOpts...); err == nil || errors.As(err, &r) || !strings.Contains(err.Error(), "no keys") {
		t.Errorf("Verify with a policy without keys: %v", err)
	}
}

func TestVerifyBounds(t *testing.T) {
	reg := newTestRegistry(t)
	s, pub := newSigner(t)
	other, _ := newSigner(t)
	p := policyOf(pub)

	t.Run("manifest", func(t *testing.T) {
		ref := reg.push(t, "team-a/big-manifest", "v1")
		sign(t, ref, s, nil)
		m := getSignatures(t, ref)
		m.Annotations = map[string]string{"padding": strings.Repeat("x", int(MaxSignatureManifestBytes))}
		putSignatures(t, ref, m)
		refused(t, p, ref, nil, ReasonSignatureInvalid, "bound 1048576", "delete the tag sha256-")
	})
	t.Run("payload", func(t *testing.T) {
		ref := reg.push(t, "team-a/big-payload", "v1")
		body, err := json.Marshal(map[string]any{
			"critical": map[string]any{"identity": map[string]string{"docker-reference": digestOf(t, ref).Context().Name()},
				"image": map[string]string{"docker-manifest-digest": digestOf(t, ref).DigestStr()}, "type": "cosign container image signature"},
			"optional": map[string]string{"padding": strings.Repeat("x", int(MaxPayloadBytes))},
		})
		if err != nil {
			t.Fatal(err)
		}
		m := emptySignatures(t, ref)
		m.Layers = []v1.Descriptor{signedLayer(t, ref, s, body)}
		putSignatures(t, ref, m)
		refused(t, p, ref, nil, ReasonSignatureInvalid, "bound 65536")

		// A descriptor that understates the size: the registry's bytes are bounded all the same.
		m.Layers[0].Size = 100
		putSignatures(t, ref, m)
		refused(t, p, ref, nil, ReasonSignatureInvalid, "more than 65536 bytes")
	})
	t.Run("endless manifest", func(t *testing.T) {
		ref := reg.push(t, "team-a/endless-manifest", "v1")
		d := digestOf(t, ref)
		served := reg.flood("/v2/team-a/endless-manifest/manifests/" + signatureTag(d).TagStr())
		refused(t, p, ref, nil, ReasonSignatureInvalid, "more than the bound of 1048576 bytes")
		if n := served(); n > 32<<20 {
			t.Errorf("the client read %d bytes of an endless signature manifest", n)
		}
	})
	t.Run("endless payload", func(t *testing.T) {
		ref := reg.push(t, "team-a/endless-payload", "v1")
		sign(t, ref, s, nil)
		l := getSignatures(t, ref).Layers[0]
		served := reg.flood("/v2/team-a/endless-payload/blobs/" + l.Digest.String())
		refused(t, p, ref, nil, ReasonSignatureInvalid, "more than 65536 bytes")
		if n := served(); n > 32<<20 {
			t.Errorf("the client read %d bytes of an endless payload", n)
		}
	})
	t.Run("layers", func(t *testing.T) {
		ref := reg.push(t, "team-a/many-layers", "v1")
		body, err := signedPayload(digestOf(t, ref), nil)
		if err != nil {
			t.Fatal(err)
		}
		m := emptySignatures(t, ref)
		for range MaxSignatureLayers {
			m.Layers = append(m.Layers, signedLayer(t, ref, other, body))
		}
		good := signedLayer(t, ref, s, body)
		m.Layers = append(m.Layers, good)
		putSignatures(t, ref, m)
		refused(t, p, ref, nil, ReasonSignatureUntrusted, "only the first 32 of its 33 signature layers")
		m.Layers = append([]v1.Descriptor{good}, m.Layers[:MaxSignatureLayers]...)
		putSignatures(t, ref, m)
		mustVerify(t, p, ref, nil)
	})
}

// TestVerifyPayloadCutShortIsRetryable: a transfer that breaks is no verdict, unless another
// signature verifies.
func TestVerifyPayloadCutShortIsRetryable(t *testing.T) {
	reg := newTestRegistry(t)
	ref := reg.push(t, "team-a/greeter", "v1")
	a, pubA := newSigner(t)
	b, pubB := newSigner(t)
	sign(t, ref, a, map[string]string{"by": "a"})
	l := getSignatures(t, ref).Layers[0]
	reg.cutShort("/v2/team-a/greeter/blobs/"+l.Digest.String(), l.Size)
	_, err := policyOf(pubA).Verify(ctxFor(t), ref, nil, regOpts...)
	var r *Refusal
	if err == nil || errors.As(err, &r) || !artifact.Temporary(err) {
		t.Fatalf("Verify with the payload cut short: %v; want a temporary error, not a Refusal", err)
	}
	sign(t, ref, b, map[string]string{"by": "b"})
	if v := mustVerify(t, policyOf(pubA, pubB), ref, nil); v.KeyFingerprint != b.Fingerprint() {
		t.Errorf("verified by %s, want the second signature's key %s", v.KeyFingerprint, b.Fingerprint())
	}
}

// TestDecodedPolicyVerifies: what the webhook hands the agent verifies as the original does.
func TestDecodedPolicyVerifies(t *testing.T) {
	reg := newTestRegistry(t)
	ref := reg.push(t, "team-a/greeter", "v1")
	s, pub := newSigner(t)
	sign(t, ref, s, nil)
	p := policyOf(pub)
	p.Registries = []string{reg.host + "/team-a/"}
	enc, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	d, err := DecodePolicy(enc)
	if err != nil {
		t.Fatal(err)
	}
	mustVerify(t, d, ref, nil)
	d.Registries = []string{reg.host + "/team-b/"}
	refused(t, d, ref, nil, ReasonRegistryNotAllowed)
}
