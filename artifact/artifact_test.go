package artifact

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/splice-dev/splice/examples/greeter/greeterbuild"
	"github.com/splice-dev/splice/host/control"
	"github.com/splice-dev/splice/host/preflight"
)

// plugins are real greeter plugins built once for the package's tests.
var plugins map[string]*greeterbuild.Artifact

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	b, remove, err := greeterbuild.NewTemp("splice-artifact-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer remove()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	if plugins, err = b.Plugins(ctx, []string{"v1", "v2"}, fmt.Sprintf("artifact%d", os.Getpid())); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// testRegistry is go-containerregistry's in-process registry on loopback, with a count of
// the blob downloads it served and an optional corruption of one blob in storage.
type testRegistry struct {
	srv       *httptest.Server
	host      string
	blobGets  atomic.Int64
	blobStore *corruptible
}

// plainHTTP lets the tests' registries (httptest servers without TLS) be reached over HTTP.
var plainHTTP = WithInsecure(true)

func newRegistry(t *testing.T) *testRegistry {
	t.Helper()
	r := &testRegistry{blobStore: &corruptible{inner: registry.NewInMemoryBlobHandler()}}
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithBlobHandler(r.blobStore))
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/blobs/sha256:") {
			r.blobGets.Add(1)
		}
		h.ServeHTTP(w, req)
	}))
	t.Cleanup(r.srv.Close)
	r.host = strings.TrimPrefix(r.srv.URL, "http://")
	return r
}

// corruptible stores blobs in memory and can flip a byte of one of them on the way out, as a
// disk or a proxy might.
type corruptible struct {
	inner  registry.BlobHandler
	mu     sync.Mutex
	target string
}

func (c *corruptible) corrupt(digest string) { c.mu.Lock(); c.target = digest; c.mu.Unlock() }

func (c *corruptible) Get(ctx context.Context, repo string, h v1.Hash) (io.ReadCloser, error) {
	rc, err := c.inner.Get(ctx, repo, h)
	c.mu.Lock()
	target := c.target
	c.mu.Unlock()
	if err != nil || h.String() != target {
		return rc, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, err
	}
	b[len(b)/2] ^= 0xff
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (c *corruptible) Stat(ctx context.Context, repo string, h v1.Hash) (int64, error) {
	return c.inner.(registry.BlobStatHandler).Stat(ctx, repo, h)
}

func (c *corruptible) Put(ctx context.Context, repo string, h v1.Hash, rc io.ReadCloser) error {
	return c.inner.(registry.BlobPutHandler).Put(ctx, repo, h, rc)
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func push(t *testing.T, reg *testRegistry, repo, plugin string, opts ...Option) (string, string) {
	t.Helper()
	ref, digest, err := Push(ctxFor(t), reg.host+"/"+repo, plugins[plugin].Path, Config{APIVersion: "1.0.0"}, append(opts, plainHTTP)...)
	if err != nil {
		t.Fatalf("push %s: %v", plugin, err)
	}
	return ref, digest
}

func TestPushPullRoundTrip(t *testing.T) {
	reg := newRegistry(t)
	ctx := ctxFor(t)
	built := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	ref, digest, err := Push(ctx, reg.host+"/greeter/plugin", plugins["v1"].Path, Config{APIVersion: "1.0.0", BuiltAt: built},
		WithSource("https://example.com/greeter"), WithRevision("abc123"), WithVersion("v1"), WithTag("v1"), WithInsecureRegistries(reg.host))
	if err != nil {
		t.Fatalf("Push: %v", err)
	}
	if want := reg.host + "/greeter/plugin@" + digest; ref != want || !control.ValidDigest(digest) {
		t.Fatalf("Push returned %q, %q; want %q", ref, digest, want)
	}

	// The manifest as any OCI client sees it.
	desc, err := remote.Get(mustTag(t, reg.host+"/greeter/plugin:v1"), remote.WithContext(ctx))
	if err != nil {
		t.Fatalf("get the manifest by tag: %v", err)
	}
	if desc.Digest.String() != digest {
		t.Fatalf("tag v1 points at %s, want %s", desc.Digest, digest)
	}
	var m v1.Manifest
	if err := json.Unmarshal(desc.Manifest, &m); err != nil {
		t.Fatal(err)
	}
	wantAnn := map[string]string{
		AnnotationCreated: "2026-11-25T10:00:00Z", AnnotationSource: "https://example.com/greeter", AnnotationRevision: "abc123",
		AnnotationVersion: "v1", AnnotationAPIVersion: "1.0.0", AnnotationGoVersion: goVersionOf(t, plugins["v1"].Path),
	}
	for k, v := range wantAnn {
		if m.Annotations[k] != v {
			t.Errorf("annotation %s = %q, want %q", k, m.Annotations[k], v)
		}
	}
	if m.ArtifactType != ArtifactType || m.Config.MediaType != ConfigMediaType || len(m.Layers) != 1 || m.Layers[0].MediaType != LayerMediaType {
		t.Fatalf("manifest %s", desc.Manifest)
	}
	if d, _ := fileDigest(plugins["v1"].Path); m.Layers[0].Digest.String() != d {
		t.Fatalf("layer digest %s, file digest %s: the layer must be the file byte for byte", m.Layers[0].Digest, d)
	}

	dir := t.TempDir()
	p, err := Pull(ctx, ref, dir, plainHTTP)
	if err != nil {
		t.Fatalf("Pull: %v", err)
	}
	if want := filepath.Join(dir, strings.TrimPrefix(digest, "sha256:")+".so"); p.Path != want || p.Reused {
		t.Fatalf("pulled to %s (reused %v), want a fresh %s", p.Path, p.Reused, want)
	}
	fi, err := os.Stat(p.Path)
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("pulled file: %v, mode %v; want 0644", err, fi.Mode())
	}
	got, _ := os.ReadFile(p.Path)
	orig, _ := os.ReadFile(plugins["v1"].Path)
	if !bytes.Equal(got, orig) {
		t.Fatal("pulled file differs from the pushed one")
	}
	if p.Digest != digest || p.Ref != ref || p.Config.APIVersion != "1.0.0" || !p.Config.BuiltAt.Equal(built) || p.Config.Path != "" {
		t.Fatalf("pulled info %+v", p.Info)
	}
	if p.Facts.PluginPath == "" || p.Facts.PluginPath != p.Config.PluginPath {
		t.Fatalf("facts of the pulled file %q, config %q", p.Facts.PluginPath, p.Config.PluginPath)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("destination holds %d entries, want only the plugin (no partial files)", len(entries))
	}

	// The config blob is a facts file: the preflight CLI can read it as it is.
	cfgFile := filepath.Join(t.TempDir(), "config.json")
	raw, _ := json.Marshal(&p.Config)
	if err := os.WriteFile(cfgFile, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	asFacts, err := preflight.ReadFacts(cfgFile)
	if err != nil || asFacts.PluginPath != p.Facts.PluginPath || len(asFacts.Packages) != len(p.Facts.Packages) {
		t.Fatalf("config blob read as a facts file: %v, %+v", err, asFacts)
	}

	info, err := FetchConfig(ctx, ref, plainHTTP)
	if err != nil {
		t.Fatalf("FetchConfig: %v", err)
	}
	if info.Digest != digest || info.Config.PluginPath != p.Facts.PluginPath || info.LayerSize != int64(len(orig)) {
		t.Fatalf("FetchConfig %+v", info)
	}
}

func TestPullReusesExistingFile(t *testing.T) {
	reg := newRegistry(t)
	ref, _ := push(t, reg, "greeter", "v1")
	dir := t.TempDir()
	first, err := Pull(ctxFor(t), ref, dir, plainHTTP)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(first.Path)
	gets := reg.blobGets.Load()
	second, err := Pull(ctxFor(t), ref, dir, plainHTTP)
	if err != nil {
		t.Fatalf("second pull: %v", err)
	}
	after, _ := os.Stat(second.Path)
	if !second.Reused || second.Path != first.Path || !os.SameFile(before, after) || !after.ModTime().Equal(before.ModTime()) {
		t.Fatalf("second pull reused=%v path=%s, same file %v; want the first file reused untouched", second.Reused, second.Path, os.SameFile(before, after))
	}
	// Only the config blob is fetched again; the plugin layer is not downloaded.
	if n := reg.blobGets.Load() - gets; n != 1 {
		t.Fatalf("second pull fetched %d blobs, want 1 (the config)", n)
	}
}

func TestPullNeverOverwritesAFile(t *testing.T) {
	reg := newRegistry(t)
	ref, digest := push(t, reg, "greeter", "v1")
	orig, _ := os.ReadFile(plugins["v1"].Path)
	tests := []struct {
		name    string
		content []byte
	}{
		{"other size", []byte("not the plugin")},
		{"same size, other bytes", append([]byte{orig[0] ^ 1}, orig[1:]...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			final := filepath.Join(dir, strings.TrimPrefix(digest, "sha256:")+".so")
			if err := os.WriteFile(final, tt.content, 0o600); err != nil {
				t.Fatal(err)
			}
			before, _ := os.Stat(final)
			_, err := Pull(ctxFor(t), ref, dir, plainHTTP)
			if !errors.Is(err, ErrFileConflict) {
				t.Fatalf("Pull over a different file: %v; want ErrFileConflict", err)
			}
			after, _ := os.Stat(final)
			got, _ := os.ReadFile(final)
			if !bytes.Equal(got, tt.content) || !os.SameFile(before, after) || after.Mode() != before.Mode() {
				t.Fatal("the existing file was modified or replaced")
			}
		})
	}
}

func TestPullRefusesTagReferences(t *testing.T) {
	for _, ref := range []string{"registry.example.com/greeter:v1", "registry.example.com/greeter", "registry.example.com/greeter@sha256:abc", "no spaces allowed@sha256:x"} {
		_, err := Pull(context.Background(), ref, t.TempDir())
		if !errors.Is(err, ErrNotPinned) || Temporary(err) {
			t.Errorf("Pull(%q): %v; want ErrNotPinned, not temporary", ref, err)
		}
	}
}

func TestPullRefusesManifestDigestMismatch(t *testing.T) {
	reg := newRegistry(t)
	ref1, digest1 := push(t, reg, "greeter", "v1")
	_, digest2 := push(t, reg, "greeter", "v2")
	// Store v2's manifest under v1's digest: the registry will answer a request for v1 with
	// v2's bytes.
	raw2 := getManifest(t, reg, "greeter", digest2)
	req, _ := http.NewRequest(http.MethodPut, reg.srv.URL+"/v2/greeter/manifests/"+digest1, bytes.NewReader(raw2))
	req.Header.Set("Content-Type", ManifestMediaType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("plant the wrong manifest: %v %v", err, resp)
	}
	dir := t.TempDir()
	_, err = Pull(ctxFor(t), ref1, dir, plainHTTP)
	if !errors.Is(err, ErrDigestMismatch) || Temporary(err) {
		t.Fatalf("Pull: %v; want ErrDigestMismatch, not temporary", err)
	}
	if _, err := FetchConfig(ctxFor(t), ref1, plainHTTP); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("FetchConfig: %v; want ErrDigestMismatch", err)
	}
	assertEmpty(t, dir)
}

func TestPullRefusesTamperedLayer(t *testing.T) {
	reg := newRegistry(t)
	ref, _ := push(t, reg, "greeter", "v1")
	d, _ := fileDigest(plugins["v1"].Path)
	reg.blobStore.corrupt(d)
	dir := t.TempDir()
	_, err := Pull(ctxFor(t), ref, dir, plainHTTP)
	if !errors.Is(err, ErrDigestMismatch) || Temporary(err) {
		t.Fatalf("Pull of a corrupted layer: %v; want ErrDigestMismatch", err)
	}
	assertEmpty(t, dir)
}

func TestPullRefusesOversizedLayerBeforeDownloading(t *testing.T) {
	reg := newRegistry(t)
	ref, _ := push(t, reg, "greeter", "v1")
	gets := reg.blobGets.Load()
	dir := t.TempDir()
	_, err := Pull(ctxFor(t), ref, dir, WithMaxLayerBytes(1<<10), plainHTTP)
	if !errors.Is(err, ErrTooLarge) || Temporary(err) {
		t.Fatalf("Pull with a 1 KiB bound: %v; want ErrTooLarge", err)
	}
	if n := reg.blobGets.Load() - gets; n != 0 {
		t.Fatalf("%d blobs were downloaded; the bound must refuse before any", n)
	}
	assertEmpty(t, dir)
	if _, _, err := Push(ctxFor(t), reg.host+"/greeter", plugins["v1"].Path, Config{APIVersion: "1.0.0"}, WithMaxLayerBytes(1<<10), plainHTTP); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Push over the bound: %v; want ErrTooLarge", err)
	}
}

func TestPushRefusesFactsOfAnotherFile(t *testing.T) {
	reg := newRegistry(t)
	f2, err := preflight.ReadFacts(plugins["v2"].Path)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = Push(ctxFor(t), reg.host+"/greeter", plugins["v1"].Path, Config{Facts: *f2, APIVersion: "1.0.0"}, plainHTTP)
	if !errors.Is(err, ErrInvalidArtifact) || !strings.Contains(err.Error(), "pluginPath") {
		t.Fatalf("Push with v2's facts for v1's file: %v; want ErrInvalidArtifact naming the plugin path", err)
	}
	if _, _, err := Push(ctxFor(t), reg.host+"/greeter", plugins["v1"].Path, Config{}, plainHTTP); !errors.Is(err, ErrInvalidArtifact) {
		t.Fatalf("Push without an API version: %v; want ErrInvalidArtifact", err)
	}
}

// TestPullRefusesConfigThatLies: an artifact whose config describes another plugin than its
// layer (a builder bug or a forged artifact) never gets a final file name.
func TestPullRefusesConfigThatLies(t *testing.T) {
	reg := newRegistry(t)
	ctx := ctxFor(t)
	f2, _ := preflight.ReadFacts(plugins["v2"].Path)
	f2.Path = ""
	cfg, _ := json.Marshal(&Config{Facts: *f2, APIVersion: "1.0.0", BuiltAt: time.Now().UTC()})
	layer, err := newFileLayer(plugins["v1"].Path)
	if err != nil {
		t.Fatal(err)
	}
	blob := &bytesBlob{data: cfg, mediaType: ConfigMediaType}
	repo := mustRepo(t, reg.host+"/liar")
	for _, l := range []v1.Layer{blob, layer} {
		if err := remote.WriteLayer(repo, l, remote.WithContext(ctx)); err != nil {
			t.Fatal(err)
		}
	}
	m := v1.Manifest{SchemaVersion: 2, MediaType: ManifestMediaType, ArtifactType: ArtifactType,
		Config: v1.Descriptor{MediaType: ConfigMediaType, Size: int64(len(cfg)), Digest: blob.digest()},
		Layers: []v1.Descriptor{{MediaType: LayerMediaType, Size: layer.size, Digest: layer.hash}}}
	raw, _ := json.Marshal(&m)
	d := "sha256:" + sha256Hex(raw)
	if err := remote.Put(repo.Digest(d), rawManifest(raw), remote.WithContext(ctx)); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	_, err = Pull(ctx, repo.Digest(d).String(), dir, plainHTTP)
	if !errors.Is(err, ErrInvalidArtifact) || !strings.Contains(err.Error(), "do not describe") {
		t.Fatalf("Pull of a lying artifact: %v; want ErrInvalidArtifact", err)
	}
	assertEmpty(t, dir)
}

func TestPullRefusesContainerImages(t *testing.T) {
	reg := newRegistry(t)
	docker, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	oci := mutate.ConfigMediaType(mutate.MediaType(docker, types.OCIManifestSchema1), types.OCIConfigJSON)
	for _, tt := range []struct {
		name string
		img  v1.Image
		want string
	}{
		{"docker image", docker, "want an OCI image manifest"},
		{"OCI image", oci, "container image"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d, _ := tt.img.Digest()
			repo := mustRepo(t, reg.host+"/app")
			if err := remote.Write(repo.Digest(d.String()), tt.img); err != nil {
				t.Fatal(err)
			}
			_, err = Pull(ctxFor(t), repo.Digest(d.String()).String(), t.TempDir(), plainHTTP)
			if !errors.Is(err, ErrInvalidArtifact) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Pull of a container image: %v; want ErrInvalidArtifact saying %q", err, tt.want)
			}
		})
	}
}

func TestPullUnknownArtifactIsNotTemporary(t *testing.T) {
	reg := newRegistry(t)
	_, err := Pull(ctxFor(t), reg.host+"/greeter@sha256:"+strings.Repeat("0", 64), t.TempDir(), plainHTTP)
	var te *transport.Error
	if !errors.As(err, &te) || te.StatusCode != http.StatusNotFound || Temporary(err) {
		t.Fatalf("Pull of an unknown digest: %v; want a 404, not temporary", err)
	}
	// A registry that is down is worth retrying.
	reg.srv.Close()
	_, err = Pull(ctxFor(t), reg.host+"/greeter@sha256:"+strings.Repeat("0", 64), t.TempDir(), plainHTTP)
	if err == nil || !Temporary(err) {
		t.Fatalf("Pull from a closed registry: %v; want a temporary error", err)
	}
}

func TestTemporary(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{&transport.Error{StatusCode: http.StatusServiceUnavailable}, true},
		{&transport.Error{StatusCode: http.StatusTooManyRequests}, true},
		{fmt.Errorf("get: %w", &transport.Error{StatusCode: http.StatusUnauthorized}), false},
		{fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{context.DeadlineExceeded, true},
		{context.Canceled, false},
		{fmt.Errorf("x: %w: %w", ErrDigestMismatch, io.ErrUnexpectedEOF), false},
		{errors.New("something else"), false},
	}
	for _, tt := range tests {
		if got := Temporary(tt.err); got != tt.want {
			t.Errorf("Temporary(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("left behind in the destination: %s", e.Name())
	}
}

func goVersionOf(t *testing.T, path string) string {
	t.Helper()
	f, err := preflight.ReadFacts(path)
	if err != nil {
		t.Fatal(err)
	}
	return f.GoVersion
}

func mustTag(t *testing.T, s string) name.Tag {
	t.Helper()
	tag, err := name.NewTag(s)
	if err != nil {
		t.Fatal(err)
	}
	return tag
}

func mustRepo(t *testing.T, s string) name.Repository {
	t.Helper()
	r, err := name.NewRepository(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func getManifest(t *testing.T, reg *testRegistry, repo, digest string) []byte {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, reg.srv.URL+"/v2/"+repo+"/manifests/"+digest, nil)
	req.Header.Set("Accept", ManifestMediaType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("get manifest %s: %v %d", digest, err, resp.StatusCode)
	}
	return b
}

func fileDigest(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return "sha256:" + sha256Hex(b), nil
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
