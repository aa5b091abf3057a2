package main

// keygen, sign and verify through run(), as the binary runs them, against go-containerregistry's
// registry on loopback (internal/loopreg) and a real plugin pushed with `splice push`.

import (
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/splice-dev/splice/internal/loopreg"
	"github.com/splice-dev/splice/internal/trust"
)

// mustFail runs the command line and requires the exit status and substrings of stdout+stderr.
func mustFail(t *testing.T, wantStatus int, want []string, args ...string) {
	t.Helper()
	status, stdout, stderr := spliceRun(t, args...)
	if status != wantStatus {
		t.Fatalf("splice %s: exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), status, wantStatus, stdout, stderr)
	}
	for _, s := range want {
		if !strings.Contains(stdout+stderr, s) {
			t.Errorf("splice %s: output lacks %q:\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), s, stdout, stderr)
		}
	}
}

func TestKeygenSignVerify(t *testing.T) {
	_, plugins := buildLoop(t)
	reg, err := loopreg.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	t.Setenv(envSigningPassword, "s3cret")
	t.Setenv(envCosignPassword, "not this one")

	ref := strings.TrimSpace(mustSplice(t, 0, nil, "push", "--insecure", plugins["v1"].Path, reg.Host+"/team-a/greeter"))
	unsigned := strings.TrimSpace(mustSplice(t, 0, nil, "push", "--insecure", plugins["v2"].Path, reg.Host+"/team-a/greeter"))

	keys := filepath.Join(t.TempDir(), "keys")
	mustSplice(t, 0, []string{"wrote " + filepath.Join(keys, "cosign.key"), "key sha256:"}, "keygen", "--out", keys)
	priv, err := os.ReadFile(filepath.Join(keys, "cosign.key"))
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(keys, "cosign.key")); fi == nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("cosign.key mode: %v", fi)
	}
	if b, _ := pem.Decode(priv); b == nil || b.Type != trust.PEMTypeEncryptedSigstore {
		t.Fatalf("cosign.key is not cosign's encrypted key: %q", priv)
	}
	if _, err := trust.LoadSigner(priv, []byte("s3cret")); err != nil {
		t.Fatalf("cosign.key does not load with the password from %s: %v", envSigningPassword, err)
	}
	mustFail(t, 2, []string{"cosign.key exists", "never overwritten"}, "keygen", "--out", keys)

	pub := filepath.Join(keys, "cosign.pub")
	mustSplice(t, 0, []string{"signed " + ref + " with key sha256:", "env=prod"}, "sign", "--insecure", "--key", filepath.Join(keys, "cosign.key"), "-a", "env=prod", ref)
	mustSplice(t, 0, []string{"verified: " + ref, "env=prod"}, "verify", "--insecure", "--key", pub, "--registry", reg.Host+"/team-a/", "-a", "env=prod", ref)

	mustFail(t, 1, []string{"refused: " + ref, trust.ReasonSignatureInvalid, "env=staging"}, "verify", "--insecure", "--key", pub, "-a", "env=staging", ref)
	mustFail(t, 1, []string{trust.ReasonRegistryNotAllowed}, "verify", "--insecure", "--key", pub, "--registry", reg.Host+"/team-ab/", ref)
	mustFail(t, 1, []string{trust.ReasonSignatureMissing, "splice sign --key"}, "verify", "--insecure", "--key", pub, unsigned)

	other := filepath.Join(t.TempDir(), "other")
	mustSplice(t, 0, nil, "keygen", "--out", other)
	otherPub := filepath.Join(other, "cosign.pub")
	mustFail(t, 1, []string{trust.ReasonSignatureUntrusted}, "verify", "--insecure", "--key", otherPub, ref)
	mustSplice(t, 0, []string{"verified: "}, "verify", "--insecure", "--key", otherPub, "--key", pub, ref)

	// The password: a wrong one is refused; COSIGN_PASSWORD counts when SPLICE_SIGNING_PASSWORD
	// is not set.
	t.Setenv(envSigningPassword, "wrong")
	mustFail(t, 2, []string{"cannot decrypt it with the given password"}, "sign", "--insecure", "--key", filepath.Join(keys, "cosign.key"), ref)
	os.Unsetenv(envSigningPassword)
	t.Setenv(envCosignPassword, "s3cret")
	mustSplice(t, 0, []string{"signed " + unsigned}, "sign", "--insecure", "--key", filepath.Join(keys, "cosign.key"), unsigned)
	mustSplice(t, 0, []string{"verified: " + unsigned}, "verify", "--insecure", "--key", pub, unsigned)

	// Usage errors.
	mustFail(t, 2, []string{"--key cosign.key is required"}, "sign", ref)
	mustFail(t, 2, []string{"--key cosign.pub is required"}, "verify", ref)
	mustFail(t, 2, []string{`-a "env": want KEY=VALUE`}, "sign", "--insecure", "--key", filepath.Join(keys, "cosign.key"), "-a", "env", ref)
	mustFail(t, 2, []string{"--registry", "not a registry host"}, "verify", "--insecure", "--key", pub, "--registry", "team-a/", ref)
	mustFail(t, 2, []string{"--out DIR is required"}, "keygen")
}
