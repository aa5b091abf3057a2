package artifact

import (
	"encoding/base64"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/registry"
)

// recordingRegistry is go-containerregistry's registry behind a handler that records which
// requests carried credentials.
type recordingRegistry struct {
	mu         sync.Mutex
	requests   int
	authorized int
}

func (r *recordingRegistry) handler() http.Handler {
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.requests++
		if req.Header.Get("Authorization") != "" {
			r.authorized++
		}
		r.mu.Unlock()
		reg.ServeHTTP(w, req)
	})
}

func (r *recordingRegistry) counts() (requests, authorized int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests, r.authorized
}

var basic = WithAuth(&authn.Basic{Username: "ci", Password: "s3cret"})

// A plain-HTTP registry on loopback gets no request, credentials least of all, unless it is
// named insecure (go-containerregistry alone would send them over HTTP to a loopback or
// RFC 1918 address); the error says what to set.
func TestPlainHTTPRegistryMustBeNamedInsecure(t *testing.T) {
	rec := &recordingRegistry{}
	srv := httptest.NewServer(rec.handler())
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")

	_, _, err := Push(ctxFor(t), host+"/greeter", plugins["v1"].Path, Config{APIVersion: "1.0.0"}, basic)
	if err == nil || !strings.Contains(err.Error(), "named insecure") {
		t.Fatalf("Push to a plain-HTTP registry not named insecure: %v; want a refusal naming the insecure-registries setting", err)
	}
	if n, a := rec.counts(); n != 0 || a != 0 {
		t.Fatalf("the plain-HTTP registry received %d requests (%d with credentials); want none", n, a)
	}
	// Another registry named insecure does not make this one so.
	if _, _, err := Push(ctxFor(t), host+"/greeter", plugins["v1"].Path, Config{APIVersion: "1.0.0"}, basic, WithInsecureRegistries("other:5000")); err == nil {
		t.Fatal("Push succeeded with only another registry named insecure")
	}
	ref, _, err := Push(ctxFor(t), host+"/greeter", plugins["v1"].Path, Config{APIVersion: "1.0.0"}, basic, WithInsecureRegistries(host))
	if err != nil {
		t.Fatalf("Push to the registry named insecure: %v", err)
	}
	if _, err := FetchConfig(ctxFor(t), ref); err == nil {
		t.Fatal("FetchConfig over plain HTTP without the registry named insecure succeeded")
	}
	if _, err := FetchConfig(ctxFor(t), ref, WithInsecureRegistries(host)); err != nil {
		t.Fatalf("FetchConfig from the registry named insecure: %v", err)
	}
}

// A TLS registry on loopback works without naming anything, although go-containerregistry
// would address it over plain HTTP: every request goes over TLS.
func TestTLSRegistryOnLoopback(t *testing.T) {
	rec := &recordingRegistry{}
	srv := httptest.NewTLSServer(rec.handler())
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "https://")
	tr := WithTransport(srv.Client().Transport)

	ref, _, err := Push(ctxFor(t), host+"/greeter", plugins["v1"].Path, Config{APIVersion: "1.0.0"}, basic, tr)
	if err != nil {
		t.Fatalf("Push to a TLS registry on loopback: %v", err)
	}
	if _, err := Pull(ctxFor(t), ref, t.TempDir(), basic, tr); err != nil {
		t.Fatalf("Pull from a TLS registry on loopback: %v", err)
	}
	if n, a := rec.counts(); n == 0 || a == 0 {
		t.Fatalf("the TLS registry saw %d requests, %d with credentials; want both above 0", n, a)
	}
}

func TestValidateRegistryHost(t *testing.T) {
	for h, ok := range map[string]bool{
		"registry.example.com": true, "registry.splice-system.svc:5000": true, "127.0.0.1:5000": true,
		"": false, "http://registry": false, "registry/path": false, "a b": false, "user@host": false,
	} {
		if err := ValidateRegistryHost(h); (err == nil) != ok {
			t.Errorf("ValidateRegistryHost(%q) = %v; want ok=%v", h, err, ok)
		}
	}
}

// A registry that needs credentials: the agent's (and the default keychain's) Docker config in
// $DOCKER_CONFIG, where the webhook mounts the pod's splice.dev/registry-secret, is what Pull
// authenticates with.
func TestPullWithDockerConfigCredentials(t *testing.T) {
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if u, p, ok := req.BasicAuth(); !ok || u != "ci" || p != "s3cret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "credentials required", http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	ref, _, err := Push(ctxFor(t), host+"/greeter", plugins["v1"].Path, Config{APIVersion: "1.0.0"}, basic, plainHTTP)
	if err != nil {
		t.Fatalf("Push with credentials: %v", err)
	}
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	if _, err := Pull(ctxFor(t), ref, t.TempDir(), plainHTTP); err == nil {
		t.Fatal("Pull without credentials succeeded against a registry that requires them")
	}
	dir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte("ci:s3cret"))
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"auths":{"`+host+`":{"auth":"`+auth+`"}}}`), 0o444); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dir)
	if _, err := Pull(ctxFor(t), ref, t.TempDir(), plainHTTP); err != nil {
		t.Fatalf("Pull with the Docker config's credentials: %v", err)
	}
}
