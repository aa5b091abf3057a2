package trust

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

func TestGenerateKeyPairIsCosignsEncryptedFormat(t *testing.T) {
	priv, pub, err := GenerateKeyPair([]byte("correct horse"))
	if err != nil {
		t.Fatal(err)
	}
	block, rest := pem.Decode(priv)
	if block == nil || block.Type != "ENCRYPTED SIGSTORE PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("private key PEM: %q", priv)
	}
	// The block is go-securesystemslib's encrypted JSON: scrypt and NaCl secretbox.
	var enc struct {
		KDF struct {
			Name string `json:"name"`
		} `json:"kdf"`
		Cipher struct {
			Name string `json:"name"`
		} `json:"cipher"`
		Ciphertext []byte `json:"ciphertext"`
	}
	if err := json.Unmarshal(block.Bytes, &enc); err != nil || enc.KDF.Name != "scrypt" || enc.Cipher.Name != "nacl/secretbox" || len(enc.Ciphertext) == 0 {
		t.Fatalf("encrypted key: %v %+v", err, enc)
	}
	if pb, _ := pem.Decode(pub); pb == nil || pb.Type != "PUBLIC KEY" {
		t.Fatalf("public key PEM: %q", pub)
	}

	s, err := LoadSigner(priv, []byte("correct horse"))
	if err != nil {
		t.Fatalf("LoadSigner with the right password: %v", err)
	}
	got, err := s.PublicKeyPEM()
	if err != nil || !bytes.Equal(got, pub) {
		t.Errorf("PublicKeyPEM = %q, %v; want the generated %q", got, err, pub)
	}
	_, err = LoadSigner(priv, []byte("wrong"))
	if err == nil || !strings.Contains(err.Error(), "cannot decrypt it with the given password") || !strings.Contains(err.Error(), "SPLICE_SIGNING_PASSWORD") {
		t.Errorf("LoadSigner with the wrong password: %v", err)
	}
	if _, err := LoadSigner(priv, nil); err == nil {
		t.Error("LoadSigner without the password succeeded")
	}

	// cosign 1's name for the same format.
	old := pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED COSIGN PRIVATE KEY", Bytes: block.Bytes})
	if s2, err := LoadSigner(old, []byte("correct horse")); err != nil || s2.Fingerprint() != s.Fingerprint() {
		t.Errorf("LoadSigner of an ENCRYPTED COSIGN PRIVATE KEY: %v", err)
	}
}

func TestEmptyPasswordStillEncrypts(t *testing.T) {
	// nil and empty are the same password, and both encrypt, as cosign does with an empty one.
	for _, pw := range [][2][]byte{{nil, {}}, {{}, nil}} {
		priv, _, err := GenerateKeyPair(pw[0])
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := pem.Decode(priv); b == nil || b.Type != PEMTypeEncryptedSigstore {
			t.Fatalf("GenerateKeyPair(%q) wrote %q", pw[0], priv)
		}
		if _, err := LoadSigner(priv, pw[1]); err != nil {
			t.Errorf("generated with %q, loaded with %q: %v", pw[0], pw[1], err)
		}
		if pw[0] == nil {
			if _, err := LoadSigner(priv, []byte("x")); err == nil {
				t.Error("a key with the empty password loaded with another")
			}
		}
	}
}

func TestLoadSignerUnencryptedKeys(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	want, err := fingerprint(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	for typ, der := range map[string][]byte{"PRIVATE KEY": pkcs8, "EC PRIVATE KEY": sec1} {
		s, err := LoadSigner(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), []byte("ignored"))
		if err != nil {
			t.Errorf("LoadSigner %s: %v", typ, err)
			continue
		}
		if s.Fingerprint() != want {
			t.Errorf("LoadSigner %s: fingerprint %s, want %s", typ, s.Fingerprint(), want)
		}
	}

	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	r, _ := rsa.GenerateKey(rand.Reader, 2048)
	for what, key := range map[string]any{"P-384": p384, "RSA": r} {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		_, err = LoadSigner(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil)
		if err == nil || !strings.Contains(err.Error(), "ECDSA P-256 keys only") {
			t.Errorf("LoadSigner of a %s key: %v", what, err)
		}
	}
	for what, in := range map[string][]byte{
		"not PEM":    []byte("hello"),
		"public key": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1}}),
		"two blocks": append(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})...),
		"garbage":    pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}),
	} {
		if _, err := LoadSigner(in, nil); err == nil || !strings.Contains(err.Error(), "load signing key") {
			t.Errorf("LoadSigner of %s: %v", what, err)
		}
	}
}

// pubPEM is a fresh P-256 public key in PEM.
func pubPEM(t *testing.T) string {
	t.Helper()
	_, pub := newSigner(t)
	return pub
}

func TestParseConfig(t *testing.T) {
	k1, k2 := pubPEM(t), pubPEM(t)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384PEM, _ := cryptoutils.MarshalPublicKeyToPEM(p384.Public())
	privPEM, _, _ := GenerateKeyPair([]byte{})
	indent := func(k string) string { return strings.ReplaceAll(strings.TrimSpace(k), "\n", "\n      ") }
	policy := func(name, namespaces, extra string, keys ...string) string {
		var b strings.Builder
		fmt.Fprintf(&b, "- name: %s\n  namespaces: %s\n%s  keys:\n", name, namespaces, extra)
		for _, k := range keys {
			fmt.Fprintf(&b, "    - |\n      %s\n", indent(k))
		}
		return b.String()
	}
	doc := func(policies ...string) string { return "policies:\n" + strings.Join(policies, "") }
	regs := func(r ...string) string { return "  registries: [" + strings.Join(r, ", ") + "]\n" }

	tests := []struct {
		name, in string
		wantErr  []string // substrings; none: valid
	}{
		{"valid", doc(policy("team-a", "[team-a, team-a-staging]", regs("registry.example.com/team-a/"), k1, k2), policy("rest", `["*"]`, "", k1)), nil},
		{"json", `{"policies":[{"name":"p","namespaces":["*"],"keys":[` + mustJSON(k1) + `]}]}`, nil},
		{"whole registry and localhost", doc(policy("p", "[a]", regs("registry.example.com/", "localhost:5000/x", "10.0.0.1:5000/team/plugins"), k1)), nil},
		{"empty", "", []string{"no policies"}},
		{"no policies", "policies: []", []string{"no policies", "add one"}},
		{"unknown field", doc(policy("p", "[a]", "  registry: [x]\n", k1)), []string{`unknown field "registry"`}},
		{"no name", doc(policy(`""`, "[a]", "", k1)), []string{"policies[0]", `name ""`}},
		{"bad name", doc(policy(`"team a"`, "[a]", "", k1)), []string{`"team a"`, "letters, digits"}},
		{"duplicate names", doc(policy("p", "[a]", "", k1), policy("p", "[b]", "", k1)), []string{`"p"`, "used by an earlier policy"}},
		{"no namespaces", doc(policy("p", "[]", "", k1)), []string{`"p"`, "no namespaces"}},
		{"bad namespace", doc(policy("p", "[Team_A]", "", k1)), []string{`"p"`, `namespaces[0] "Team_A" is not a namespace name`}},
		{"namespace twice", doc(policy("p", "[a, a]", "", k1)), []string{`namespaces[1] "a" is listed twice`}},
		{"shadowed by *", doc(policy("all", `["*"]`, "", k1), policy("p", "[a]", "", k1)), []string{`"p"`, `already covered by policy "all"`}},
		{"namespace in two", doc(policy("p", "[a, b]", "", k1), policy("q", "[b]", "", k1)), []string{`"q"`, `namespace "b" is already covered by policy "p"`}},
		{"no keys", doc(policy("p", "[a]", "")), []string{`"p"`, "no keys", "cosign.pub"}},
		{"not PEM", doc(policy("p", "[a]", "", "hello")), []string{`"p"`, "keys[0]", "not a PEM public key"}},
		{"private key", doc(policy("p", "[a]", "", string(privPEM))), []string{`"p"`, "keys[0]", "never the private key"}},
		{"P-384", doc(policy("p", "[a]", "", string(p384PEM))), []string{"keys[0]", "ECDSA P-256 keys only"}},
		{"two keys in one", doc(policy("p", "[a]", "", k1+k2)), []string{"keys[0]", "more than one PEM block"}},
		{"duplicate key", doc(policy("p", "[a]", "", k1, k2, k1)), []string{"keys[2] is the same key as keys[0]"}},
		{"broken key", doc(policy("p", "[a]", "", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----")), []string{"keys[0]", "bad public key"}},
		{"prefix without host", doc(policy("p", "[a]", regs("team-a/plugins"), k1)), []string{`registries[0] "team-a/plugins"`, "not a registry host"}},
		{"prefix without path", doc(policy("p", "[a]", regs("registry.example.com"), k1)), []string{"no path", "registry.example.com/ for every repository"}},
		{"prefix with scheme", doc(policy("p", "[a]", regs("https://registry.example.com/a"), k1)), []string{"has a scheme"}},
		{"prefix with tag", doc(policy("p", "[a]", regs("registry.example.com/a:v1"), k1)), []string{"not a repository path"}},
		{"prefix with digest", doc(policy("p", "[a]", regs(`"registry.example.com/a@sha256:00"`), k1)), []string{"digest or a wildcard"}},
		{"prefix with wildcard", doc(policy("p", "[a]", regs(`"registry.example.com/team-*"`), k1)), []string{"digest or a wildcard"}},
		{"prefix upper case", doc(policy("p", "[a]", regs("registry.example.com/Team"), k1)), []string{"not a repository path"}},
		{"prefix double slash", doc(policy("p", "[a]", regs("registry.example.com/a//b"), k1)), []string{"not a repository path"}},
		{"prefix empty", doc(policy("p", "[a]", regs(`""`), k1)), []string{`registries[0] ""`, "empty"}},
		{"prefix white space", doc(policy("p", "[a]", regs(`"registry.example.com/a b"`), k1)), []string{"white space"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tt.in))
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("ParseConfig: %v\n%s", err, tt.in)
				}
				if len(c.Policies) == 0 {
					t.Fatal("no policies parsed")
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseConfig accepted:\n%s", tt.in)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
		})
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestLoadConfigAndFor(t *testing.T) {
	k := pubPEM(t)
	c := &Config{Policies: []Policy{
		{Name: "a", Namespaces: []string{"team-a", "shared"}, Keys: []string{k}},
		{Name: "b", Namespaces: []string{"team-b"}, Keys: []string{k}},
		{Name: "rest", Namespaces: []string{"*"}, Keys: []string{k}},
	}}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "trust.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(c, got); diff != "" {
		t.Errorf("LoadConfig (-want +got):\n%s", diff)
	}
	for ns, want := range map[string]string{"team-a": "a", "shared": "a", "team-b": "b", "default": "rest"} {
		if p := got.For(ns); p == nil || p.Name != want {
			t.Errorf("For(%s) = %+v, want policy %s", ns, p, want)
		}
	}
	got.Policies = got.Policies[:2]
	if p := got.For("default"); p != nil {
		t.Errorf("For(default) without a * policy = %+v, want nil", p)
	}
	if p := (*Config)(nil).For("x"); p != nil {
		t.Error("nil Config covers a namespace")
	}

	if _, err := LoadConfig(filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !strings.Contains(err.Error(), "trust policy file") {
		t.Errorf("LoadConfig of a missing file: %v", err)
	}
	big := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(big, bytes.Repeat([]byte("#"), MaxConfigBytes+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(big); err == nil || !strings.Contains(err.Error(), "over") {
		t.Errorf("LoadConfig of a file over the bound: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("policies:\n- name: x\n  namespaces: [a]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(bad); err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), `"x": no keys`) {
		t.Errorf("LoadConfig of an invalid policy: %v", err)
	}
}

func TestEncodeDecodePolicy(t *testing.T) {
	p := &Policy{Name: "team-a", Namespaces: []string{"team-a", "*"}, Registries: []string{"registry.example.com/team-a/", "localhost:5000/x"},
		Keys: []string{pubPEM(t), "\n  " + pubPEM(t) + "\n"}}
	enc, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(enc, "\n\r") {
		t.Fatalf("Encode is not one line: %q", enc)
	}
	got, err := DecodePolicy(enc)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != p.Name || !cmp.Equal(got.Namespaces, p.Namespaces) || !cmp.Equal(got.Registries, p.Registries) || len(got.Keys) != 2 {
		t.Fatalf("round trip: %+v, want %+v", got, p)
	}
	for i := range p.Keys {
		want, _ := KeyFingerprint([]byte(p.Keys[i]))
		if fp, err := KeyFingerprint([]byte(got.Keys[i])); err != nil || fp != want {
			t.Errorf("keys[%d]: %s, %v; want %s", i, fp, err, want)
		}
	}
	if again, err := got.Encode(); err != nil || again != enc {
		t.Errorf("Encode(Decode(e)) = %q, %v; want e", again, err)
	}

	if _, err := (&Policy{Name: "x", Namespaces: []string{"a"}}).Encode(); err == nil {
		t.Error("Encode of an invalid policy succeeded")
	}
	var e map[string]any
	if err := json.Unmarshal([]byte(enc), &e); err != nil {
		t.Fatal(err)
	}
	mutate := func(k string, v any) string {
		m := map[string]any{}
		for kk, vv := range e {
			m[kk] = vv
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return mustJSON(m)
	}
	for what, in := range map[string]string{
		"garbage":       "nope",
		"trailing data": enc + "{}",
		"unknown field": mutate("x", 1),
		"version 2":     mutate("v", 2),
		"no keys":       mutate("k", nil),
		"bad base64":    mutate("k", []string{"%%%"}),
		"bad key":       mutate("k", []string{"AAAA"}),
		"bad prefix":    mutate("r", []string{"team-a/"}),
		"bad namespace": mutate("ns", []string{"A"}),
		"too long":      strings.Repeat(" ", MaxEncodedPolicyBytes+1),
	} {
		if _, err := DecodePolicy(in); err == nil || !strings.Contains(err.Error(), "decode trust policy") {
			t.Errorf("DecodePolicy of %s: %v", what, err)
		}
	}
}
