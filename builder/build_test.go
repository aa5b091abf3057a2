package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/splice-dev/splice/artifact"
	"github.com/splice-dev/splice/examples/greeter/greeterbuild"
	"github.com/splice-dev/splice/host/control"
	"github.com/splice-dev/splice/host/preflight"
	"github.com/splice-dev/splice/internal/testio"
)

// The tests in this file build real plugins from a git repository holding the greeter example
// (the contract package and plugin v1 of the splice module, at three revisions), push them to
// go-containerregistry's in-process registry, pull them back by digest, and check them with
// the preflight and with plugin.Open inside the real greeter host.

// fixture is the test module: a git repository with three commits.
type fixture struct {
	url string
	// revA is plugin v1 as in the repository; revB changes only the plugin's greeting; revC
	// changes the shared contract package (and adds nothing to the plugin).
	revA, revB, revC string
	// timeA is revA's commit time.
	timeA time.Time
}

var (
	fixtureOnce sync.Once
	theFixture  *fixture
	fixtureErr  error
)

// sharedDirs are the directories the shared fixtures live in, removed after all tests.
var (
	sharedDirsMu sync.Mutex
	sharedDirs   []string
)

func sharedTempDir(pattern string) (string, error) {
	dir, err := os.MkdirTemp("", pattern)
	if err == nil {
		sharedDirsMu.Lock()
		sharedDirs = append(sharedDirs, dir)
		sharedDirsMu.Unlock()
	}
	return dir, err
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range sharedDirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}

// moduleRoot is the splice checkout these tests run in.
func moduleRoot(t testing.TB) string {
	t.Helper()
	root, err := greeterbuild.FindModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func getFixture(t *testing.T) *fixture {
	t.Helper()
	fixtureOnce.Do(func() { theFixture, fixtureErr = makeFixture(moduleRoot(t)) })
	if fixtureErr != nil {
		t.Fatalf("make the test repository: %v", fixtureErr)
	}
	return theFixture
}

// miniHost is a host program in the fixture: it links the contract package and package
// plugin, which is all the preflight compares.
const miniHost = `package main

import (
	"plugin"

	"github.com/splice-dev/splice/examples/greeter"
)

var _ greeter.Greeter

func main() { _, _ = plugin.Open("") }
`

func makeFixture(root string) (*fixture, error) {
	dir, err := sharedTempDir("splice-builder-fixture-")
	if err != nil {
		return nil, err
	}
	for _, f := range []string{"go.mod", "go.sum", "examples/greeter/doc.go", "examples/greeter/greeter.go", "examples/greeter/plugins/v1/main.go"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755); err != nil {
			return nil, err
		}
		if err := copyFile(filepath.Join(root, f), filepath.Join(dir, f), 0o644); err != nil {
			return nil, err
		}
	}
	write := func(f, content string) error {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, f), []byte(content), 0o644)
	}
	if err := write("examples/greeter/minihost/main.go", miniHost); err != nil {
		return nil, err
	}
	fx := &fixture{url: "file://" + dir}
	commit := func(msg string, when time.Time) (string, error) {
		env := []string{"GIT_AUTHOR_DATE=" + when.Format(time.RFC3339), "GIT_COMMITTER_DATE=" + when.Format(time.RFC3339)}
		if _, err := gitIn(dir, env, "add", "-A"); err != nil {
			return "", err
		}
		if _, err := gitIn(dir, env, "commit", "--quiet", "-m", msg); err != nil {
			return "", err
		}
		out, err := gitIn(dir, nil, "rev-parse", "HEAD")
		return strings.TrimSpace(out), err
	}
	if _, err := gitIn(dir, nil, "init", "--quiet", "--initial-branch=main"); err != nil {
		return nil, err
	}
	fx.timeA = time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	if fx.revA, err = commit("plugin v1", fx.timeA); err != nil {
		return nil, err
	}
	v1 := filepath.Join(dir, "examples/greeter/plugins/v1/main.go")
	src, err := os.ReadFile(v1)
	if err != nil {
		return nil, err
	}
	changed := strings.Replace(string(src), `"Hello, %s! (v1)"`, `"Howdy, %s! (v1b)"`, 1)
	if changed == string(src) {
		return nil, errors.New("examples/greeter/plugins/v1/main.go no longer greets with \"Hello, %s! (v1)\"; update the fixture")
	}
	if err := os.WriteFile(v1, []byte(changed), 0o644); err != nil {
		return nil, err
	}
	if fx.revB, err = commit("plugin v1b: another greeting", fx.timeA.Add(time.Hour)); err != nil {
		return nil, err
	}
	if _, err := gitIn(dir, nil, "tag", "v1b"); err != nil {
		return nil, err
	}
	contract := filepath.Join(dir, "examples/greeter/greeter.go")
	f, err := os.OpenFile(contract, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	_, err = f.WriteString("\n// Extra changes the contract's export data, and so its package hash.\nconst Extra = 1\n")
	f.Close()
	if err != nil {
		return nil, err
	}
	if fx.revC, err = commit("contract: add Extra", fx.timeA.Add(2*time.Hour)); err != nil {
		return nil, err
	}
	return fx, nil
}

func gitIn(dir string, env []string, args ...string) (string, error) {
	cmd := exec.Command("git", append([]string{"-c", "user.name=Splice Test", "-c", "user.email=test@splice.dev"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null"), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("git %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// startRegistry serves go-containerregistry's in-memory registry on loopback (plain HTTP,
// which go-containerregistry uses for 127.0.0.1 without being told).
func startRegistry(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// build runs Build with the options every test shares, logging the progress.
func build(t *testing.T, o Options) (*Result, error) {
	t.Helper()
	if o.GoVersion == "" {
		o.GoVersion = strings.TrimPrefix(goVersionOnPath(t), "go")
	}
	if o.Symbol == "" {
		o.Symbol = "Plugin"
	}
	o.WorkDir = t.TempDir()
	// The tests' registries are httptest servers without TLS.
	o.Insecure = true
	var log strings.Builder
	start := time.Now()
	res, err := Build(testContext(t), o, &log)
	t.Logf("build %s@%s in %v:\n%s", o.Package, o.Revision, time.Since(start).Round(time.Millisecond), log.String())
	return res, err
}

func goVersionOnPath(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOVERSION").Output()
	if err != nil {
		t.Fatalf("go env GOVERSION: %v", err)
	}
	return strings.TrimSpace(string(out))
}

var (
	hostOnce sync.Once
	hostBin  string
	hostErr  error
)

// greeterHost builds the example service from this checkout with greeterbuild's flags
// (-trimpath), as an application team would build its host.
func greeterHost(t *testing.T) string {
	t.Helper()
	hostOnce.Do(func() {
		out, err := sharedTempDir("splice-builder-host-")
		if err != nil {
			hostErr = err
			return
		}
		b := &greeterbuild.Builder{Root: moduleRoot(t), Out: out}
		start := time.Now()
		hostBin, hostErr = b.Host(context.Background())
		t.Logf("built the greeter host in %v", time.Since(start).Round(time.Millisecond))
	})
	if hostErr != nil {
		t.Fatalf("build the greeter host: %v", hostErr)
	}
	return hostBin
}

func TestBuildPushPullPreflight(t *testing.T) {
	fx := getFixture(t)
	reg := startRegistry(t)
	repo := reg + "/team/greeter-plugin"
	ctx := testContext(t)

	res, err := build(t, Options{GitURL: fx.url, Revision: fx.revA, Package: "./examples/greeter/plugins/v1", Repository: repo, BuildKey: "k1"})
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	if err := res.Validate(); err != nil {
		t.Fatalf("the result does not validate: %v\n%+v", err, res)
	}
	wantPath := "github.com/splice-dev/splice/examples/greeter/plugins/v1/" + UniqueDirPrefix + res.SourceHash[:16]
	if res.PluginPath != wantPath || res.Revision != fx.revA || !res.BuiltAt.Equal(fx.timeA) || res.BuildKey != "k1" ||
		res.APIVersion != "1.0.0" || res.GoVersion != goVersionOnPath(t) {
		t.Fatalf("result %+v; want plugin path %s, revision %s, builtAt %s (the commit time), build key k1, API 1.0.0", res, wantPath, fx.revA, fx.timeA)
	}
	if !strings.HasPrefix(res.Ref, repo+"@sha256:") {
		t.Fatalf("ref %s is not in %s", res.Ref, repo)
	}

	// Pull it back by digest, as an agent would: the file it gets is the plugin that was built.
	pulled, err := artifact.Pull(ctx, res.Ref, t.TempDir(), artifact.WithInsecure(true))
	if err != nil {
		t.Fatalf("pull %s: %v", res.Ref, err)
	}
	if pulled.Digest != res.Digest || pulled.Facts.PluginPath != res.PluginPath || pulled.Config.APIVersion != "1.0.0" {
		t.Fatalf("pulled %+v; want digest %s, plugin path %s", pulled.Info, res.Digest, res.PluginPath)
	}
	for k, want := range map[string]string{
		artifact.AnnotationGoVersion: res.GoVersion, artifact.AnnotationAPIVersion: "1.0.0",
		artifact.AnnotationSource: fx.url, artifact.AnnotationRevision: fx.revA,
		artifact.AnnotationCreated: fx.timeA.Format(time.RFC3339),
	} {
		if got := pulled.Annotations[k]; got != want {
			t.Errorf("annotation %s = %q, want %q", k, got, want)
		}
	}

	// The preflight against the example service built from the same module: compatible.
	hostFacts, err := preflight.ReadFacts(greeterHost(t))
	if err != nil {
		t.Fatal(err)
	}
	if v := preflight.Check(hostFacts, pulled.Facts, nil); !v.OK {
		t.Fatalf("preflight refused the plugin for the host built from the same module: %v", v)
	}

	// A host built from a revision whose contract package differs: incompatible, and the
	// verdict names the package.
	other := filepath.Join(t.TempDir(), "minihost")
	checkoutDir := t.TempDir()
	if _, err := gitIn(checkoutDir, nil, "clone", "--quiet", fx.url, "."); err != nil {
		t.Fatal(err)
	}
	if _, err := gitIn(checkoutDir, nil, "checkout", "--quiet", fx.revC); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-o", other, "./examples/greeter/minihost")
	cmd.Dir = checkoutDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1", "GOTOOLCHAIN=local")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the other host: %v\n%s", err, out)
	}
	otherFacts, err := preflight.ReadFacts(other)
	if err != nil {
		t.Fatal(err)
	}
	v := preflight.Check(otherFacts, pulled.Facts, nil)
	if v.OK || len(v.Problems) == 0 || v.Problems[0].Reason != preflight.PackageHashMismatch ||
		v.Problems[0].Package != "github.com/splice-dev/splice/examples/greeter" {
		t.Fatalf("preflight against a host with another contract: %+v; want PackageHashMismatch naming github.com/splice-dev/splice/examples/greeter", v)
	}
}

func TestRebuildsAreReproducibleAndChangesGetNewPluginPaths(t *testing.T) {
	fx := getFixture(t)
	reg := startRegistry(t)
	repo := reg + "/team/greeter-plugin"
	ctx := testContext(t)
	pkg := "./examples/greeter/plugins/v1"

	a1, err := build(t, Options{GitURL: fx.url, Revision: fx.revA, Package: pkg, Repository: repo})
	if err != nil {
		t.Fatal(err)
	}
	// The same inputs in another working directory (another clone path): same plugin path,
	// and, with the commit time as builtAt, the very same artifact.
	a2, err := build(t, Options{GitURL: fx.url, Revision: fx.revA, Package: pkg, Repository: repo})
	if err != nil {
		t.Fatal(err)
	}
	if a2.PluginPath != a1.PluginPath || a2.SourceHash != a1.SourceHash || a2.Digest != a1.Digest {
		t.Fatalf("rebuild of the same inputs: %s %s, first build %s %s; want both equal", a2.PluginPath, a2.Digest, a1.PluginPath, a1.Digest)
	}
	// A branch-independent revision name (a tag) of a changed source: new plugin path, new
	// digest.
	b, err := build(t, Options{GitURL: fx.url, Revision: "v1b", Package: pkg, Repository: repo})
	if err != nil {
		t.Fatal(err)
	}
	if b.Revision != fx.revB {
		t.Fatalf("tag v1b resolved to %s, want %s", b.Revision, fx.revB)
	}
	if b.PluginPath == a1.PluginPath || b.Digest == a1.Digest {
		t.Fatalf("changed source kept plugin path %s / digest %s", b.PluginPath, b.Digest)
	}
	// Build tags are an input too.
	tagged, err := build(t, Options{GitURL: fx.url, Revision: fx.revA, Package: pkg, Tags: []string{"splice_test"}})
	if err != nil {
		t.Fatal(err)
	}
	if tagged.PluginPath == a1.PluginPath {
		t.Fatalf("a build with other tags kept plugin path %s", tagged.PluginPath)
	}

	// Both versions into one host. The preflight predicts it...
	shared := t.TempDir()
	pa, err := artifact.Pull(ctx, a1.Ref, shared, artifact.WithInsecure(true))
	if err != nil {
		t.Fatal(err)
	}
	pb, err := artifact.Pull(ctx, b.Ref, shared, artifact.WithInsecure(true))
	if err != nil {
		t.Fatal(err)
	}
	hostFacts, err := preflight.ReadFacts(greeterHost(t))
	if err != nil {
		t.Fatal(err)
	}
	if v := preflight.Check(hostFacts, pb.Facts, []*preflight.Facts{pa.Facts}); !v.OK {
		t.Fatalf("preflight refuses v1b next to v1: %v", v)
	}
	// ...and would refuse a second build of the same path, which is why paths must differ.
	if v := preflight.Check(hostFacts, pa.Facts, []*preflight.Facts{pa.Facts}); v.OK || v.Problems[0].Reason != preflight.DuplicatePluginPath {
		t.Fatalf("preflight of the same plugin path twice: %+v; want DuplicatePluginPath", v)
	}
	// ...and the example service really loads both and serves each.
	h := startGreeter(t, shared)
	for _, p := range []*artifact.Pulled{pa, pb} {
		if _, err := h.client.Load(ctx, control.LoadRequest{Path: p.Path, Digest: p.Digest}); err != nil {
			t.Fatalf("host load %s (%s): %v", p.Path, p.Facts.PluginPath, err)
		}
	}
	for _, c := range []struct {
		p    *artifact.Pulled
		want string
	}{{pa, "Hello, ada! (v1)\n"}, {pb, "Howdy, ada! (v1b)\n"}, {pa, "Hello, ada! (v1)\n"}} {
		if _, err := h.client.Swap(ctx, control.SwapRequest{Digest: c.p.Digest}); err != nil {
			t.Fatalf("swap to %s: %v", c.p.Digest, err)
		}
		if got, digest := h.greet(t, "ada"); got != c.want || digest != c.p.Digest {
			t.Fatalf("after the swap to %s the host answered %q from %s; want %q", c.p.Digest, got, digest, c.want)
		}
	}
	st, err := h.client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.LoadedVersions != 2 {
		t.Fatalf("the host holds %d versions, want 2: %+v", st.LoadedVersions, st.Versions)
	}
}

func TestRefusesAnotherGoRelease(t *testing.T) {
	fx := getFixture(t)
	have := goVersionOnPath(t)
	// Go 1.26.7 is not on PATH: one patch release off is as wrong as any other.
	_, err := build(t, Options{GitURL: fx.url, Revision: fx.revA, Package: "./examples/greeter/plugins/v1", GoVersion: "1.26.7"})
	if ReasonOf(err) != ReasonToolchainMismatch {
		t.Fatalf("build with go1.26.7 asked for and %s on PATH: %v; want %s", have, err, ReasonToolchainMismatch)
	}
	for _, want := range []string{have, "go1.26.7", "golang:1.26.7"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

func TestBuildFailuresSayWhatToFix(t *testing.T) {
	fx := getFixture(t)
	tests := []struct {
		name       string
		o          Options
		wantReason string
		wantText   string
	}{
		{"unknown revision", Options{GitURL: fx.url, Revision: "no-such-branch", Package: "./examples/greeter/plugins/v1"},
			ReasonSourceUnavailable, "no-such-branch"},
		{"missing package", Options{GitURL: fx.url, Revision: fx.revA, Package: "./plugins/v1", BuildKey: "k"},
			ReasonPackageInvalid, "spec.plugin.package"},
		{"missing package, command line", Options{GitURL: fx.url, Revision: fx.revA, Package: "./plugins/v1"},
			ReasonPackageInvalid, "check --package"},
		{"not a main package", Options{GitURL: fx.url, Revision: fx.revA, Package: "./examples/greeter"},
			ReasonPackageInvalid, "must be package main"},
		{"symbol not exported", Options{GitURL: fx.url, Revision: fx.revA, Package: "./examples/greeter/plugins/v1", Symbol: "Greeter", BuildKey: "k"},
			ReasonSymbolNotFound, "spec.plugin.symbol"},
		{"symbol not exported, command line", Options{GitURL: fx.url, Revision: fx.revA, Package: "./examples/greeter/plugins/v1", Symbol: "Greeter"},
			ReasonSymbolNotFound, "pass --symbol"},
		{"API version disagrees with the plugin", Options{GitURL: fx.url, Revision: fx.revA, Package: "./examples/greeter/plugins/v1", APIVersion: "2.0.0"},
			ReasonAPIVersionMismatch, `--api-version is 2.0.0 but the plugin declares APIVersion "1.0.0"`},
		{"unreachable registry", Options{GitURL: fx.url, Revision: fx.revA, Package: "./examples/greeter/plugins/v1", Repository: "127.0.0.1:1/team/plugin"},
			ReasonPushFailed, "127.0.0.1:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := build(t, tt.o)
			t.Logf("error: %v", err)
			if ReasonOf(err) != tt.wantReason || !strings.Contains(err.Error(), tt.wantText) {
				t.Fatalf("error (%s) %v; want %s mentioning %q", ReasonOf(err), err, tt.wantReason, tt.wantText)
			}
		})
	}
}

func TestLocalCheckoutLeavesNoCopyBehind(t *testing.T) {
	fx := getFixture(t)
	src := t.TempDir()
	if _, err := gitIn(src, nil, "clone", "--quiet", fx.url, "."); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	res, err := build(t, Options{Source: src, Package: "examples/greeter/plugins/v1", Output: out})
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Join(src, "examples/greeter/plugins/v1"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "main.go" {
		t.Fatalf("the checkout's package directory holds %v after the build; want only main.go", entries)
	}
	facts, err := preflight.ReadFacts(strings.TrimSuffix(res.Path, ".so") + ".facts.json")
	if err != nil {
		t.Fatalf("kept facts: %v", err)
	}
	if facts.PluginPath != res.PluginPath || res.Ref != "" {
		t.Fatalf("kept facts name %s, result %s (ref %q); want the same plugin path and no ref", facts.PluginPath, res.PluginPath, res.Ref)
	}
}

// greeterProc is the example service running as a child process.
type greeterProc struct {
	addr   string
	client *control.Client
}

func startGreeter(t *testing.T, shared string) *greeterProc {
	t.Helper()
	addrFile := filepath.Join(t.TempDir(), "addr")
	cmd := exec.Command(greeterHost(t), "-addr", "127.0.0.1:0", "-addr-file", addrFile, "-shared", shared)
	var logs testio.SyncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		<-exited
		if t.Failed() {
			t.Logf("greeter log:\n%s", logs.String())
		}
	})
	h := &greeterProc{client: control.NewClient(filepath.Join(shared, control.SocketName))}
	ctx := testContext(t)
	for {
		b, err := os.ReadFile(addrFile)
		if err == nil && len(b) > 0 {
			h.addr = string(b)
			if _, err := h.client.Status(ctx); err == nil {
				return h
			}
		}
		select {
		case <-exited:
			t.Fatalf("the greeter exited during start-up:\n%s", logs.String())
		case <-ctx.Done():
			t.Fatalf("the greeter did not start:\n%s", logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (h *greeterProc) greet(t *testing.T, name string) (body, digest string) {
	t.Helper()
	resp, err := http.Post("http://"+h.addr+"/greet", "text/plain", strings.NewReader(name))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), resp.Header.Get("X-Plugin-Digest")
}

// An abbreviated commit is not a ref a server hands out by name: the shallow fetch is refused
// and the full fetch resolves it.
func TestAbbreviatedRevisionFallsBackToAFullFetch(t *testing.T) {
	fx := getFixture(t)
	res, err := build(t, Options{GitURL: fx.url, Revision: fx.revB[:12], Package: "./examples/greeter/plugins/v1"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Revision != fx.revB {
		t.Fatalf("revision %s resolved to %s, want %s", fx.revB[:12], res.Revision, fx.revB)
	}
}
