package controllers

import (
	"encoding/base64"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// The manager signs with the push Secret's "auths" entries only: a credential helper the
// Secret names is never run, keys written with a scheme and path match their host, and a
// registry without an entry is anonymous.
func TestDockerConfigKeychain(t *testing.T) {
	t.Setenv("DOCKER_AUTH_CONFIG", `{"auths":{"elsewhere.example.com":{"auth":"`+base64.StdEncoding.EncodeToString([]byte("env:leak"))+`"}}}`)
	kc, err := dockerConfigKeychain([]byte(`{
		"auths": {
			"https://registry.example.com/v1/": {"auth": "` + base64.StdEncoding.EncodeToString([]byte("team:s3cret")) + `"},
			"registry.example.com:5000": {"username": "ci", "password": "t0ken"},
			"https://index.docker.io/v1/": {"username": "hub", "password": "h"}
		},
		"credsStore": "splice-test-helper-that-must-not-run",
		"credHelpers": {"registry.example.com": "splice-test-helper-that-must-not-run"}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ registry, user, password string }{
		{"registry.example.com", "team", "s3cret"},
		{"registry.example.com:5000", "ci", "t0ken"},
		{name.DefaultRegistry, "hub", "h"},
		{"elsewhere.example.com", "", ""},
	} {
		reg, err := name.NewRegistry(c.registry)
		if err != nil {
			t.Fatal(err)
		}
		a, err := kc.Resolve(reg)
		if err != nil {
			t.Fatalf("resolve %s: %v", c.registry, err)
		}
		if c.user == "" {
			if a != authn.Anonymous {
				t.Errorf("%s: %v, want anonymous (no entry; the manager's environment is not read)", c.registry, a)
			}
			continue
		}
		got, err := a.Authorization()
		if err != nil || got.Username != c.user || got.Password != c.password {
			t.Errorf("%s: %+v (%v), want %s/%s", c.registry, got, err, c.user, c.password)
		}
	}
	if _, err := dockerConfigKeychain([]byte(`{"auths": [`)); err == nil {
		t.Error("a malformed Docker config was accepted")
	}
}
