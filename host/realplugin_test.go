package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"

	"github.com/splice-dev/splice/host/control"
)

// The tests in this file open real plugins in the test process. Their contract is
// fmt.Stringer, an interface the standard library gives host and plugin alike, so the plugins
// need no module but their own; each test builds a plugin with its own plugin path (a process
// opens a plugin path once).

// stringerPlugin is a plugin whose String divides by div: 0 panics with "integer divide by
// zero".
const stringerPlugin = `package main

import "fmt"

var APIVersion = "1.0.0"

type impl struct{ div int }

func (i impl) String() string { return fmt.Sprint(10 / i.div) }

func Plugin() fmt.Stringer { return impl{div: %d} }
`

// buildRealPlugin builds a plugin from src as module modPath and returns the .so's path.
func buildRealPlugin(t *testing.T, modPath, src string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a Go plugin; skipped with -short")
	}
	dir := t.TempDir()
	files := map[string]string{"go.mod": "module " + modPath + "\n\ngo 1.21\n", "p.go": src}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	so := filepath.Join(dir, "p.so")
	args := []string{"build", "-buildmode=plugin", "-o", so}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, kv := range bi.Settings {
			if kv.Key == "-race" && kv.Value == "true" {
				args = append(args, "-race") // as this test binary, or the preflight refuses it
			}
		}
	}
	cmd := exec.Command("go", append(args, ".")...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false", "GOWORK=off", "GOTOOLCHAIN=local", "CGO_ENABLED=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build -buildmode=plugin: %v\n%s", err, out)
	}
	return so
}

// logLines collects funcr's JSON records.
type logLines struct {
	mu    sync.Mutex
	lines []map[string]any
}

func (l *logLines) write(obj string) {
	var m map[string]any
	if err := json.Unmarshal([]byte(obj), &m); err != nil {
		panic(fmt.Sprintf("funcr wrote %q: %v", obj, err))
	}
	l.mu.Lock()
	l.lines = append(l.lines, m)
	l.mu.Unlock()
}

func (l *logLines) withMsg(msg string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, m := range l.lines {
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

func copyTestFile(t *testing.T, src string) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "artifact.so")
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestSameBuildUnderManifestDigestIsAnAlias: a plugin started from its file (named by the
// file's sha256) and the same bytes pulled as an artifact (named by its manifest digest) are
// one build: the second load records the digest as an alias instead of failing the preflight
// with DuplicatePluginPath, and swapping to it changes nothing.
func TestSameBuildUnderManifestDigestIsAnAlias(t *testing.T) {
	so := buildRealPlugin(t, "example.test/alias", fmt.Sprintf(stringerPlugin, 5))
	ctx := context.Background()
	private := filepath.Join(t.TempDir(), "private")
	s := newStringerSlot(t, Options{PrivateDir: private})
	fileDigest, err := control.FileDigest(so)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.LoadAndSwap(ctx, so, fileDigest, SwapOptions{}); err != nil {
		t.Fatalf("cold-start load: %v", err)
	}

	manifest := "sha256:" + strings.Repeat("ab", 32)
	artifact := copyTestFile(t, so)
	vs, err := s.Load(ctx, artifact, manifest)
	if err != nil {
		t.Fatalf("load of the same bytes under the manifest digest: %v", err)
	}
	if vs.Digest != fileDigest || !slices.Equal(vs.Aliases, []string{manifest}) || vs.State != control.StateCurrent {
		t.Errorf("load answered %+v; want the loaded version %s, current, with alias %s", vs, fileDigest, manifest)
	}
	res, err := s.Swap(ctx, manifest, SwapOptions{})
	if err != nil || res.Reason != "already current" || res.To != fileDigest {
		t.Errorf("swap to the alias: %+v, %v; want a no-op (already current)", res, err)
	}
	if _, _, err := s.LoadAndSwap(ctx, copyTestFile(t, so), manifest, SwapOptions{}); err != nil {
		t.Errorf("a retried load-and-swap of the same artifact: %v; want success", err)
	}

	if copies, _ := os.ReadDir(private); len(copies) != 1 {
		t.Errorf("the private directory holds %d copies, want the one opened: the loads that only added an alias keep none", len(copies))
	}
	st := s.Status()
	if len(st.Versions) != 1 || st.LoadedVersions != 1 {
		t.Fatalf("status lists %d versions, %d opened; want one of each: %+v", len(st.Versions), st.LoadedVersions, st.Versions)
	}
	if v := st.Version(manifest); v == nil || v.Digest != fileDigest || !v.Named(fileDigest) || !v.Named(manifest) || !slices.Equal(v.Aliases, []string{manifest}) {
		t.Errorf("status of %s = %+v; want the version %s listing both digests", manifest, v, fileDigest)
	}
	var out string
	if err := s.Call("k", func(g fmt.Stringer) error { out = g.String(); return nil }); err != nil || out != "2" {
		t.Errorf("call = %q, %v; want 2", out, err)
	}

	// Another file under the alias is still refused: a digest names one build.
	other := buildRealPlugin(t, "example.test/alias2", fmt.Sprintf(stringerPlugin, 2))
	if _, err := s.Load(ctx, other, manifest); !errors.Is(err, ErrDigestInUse) {
		t.Errorf("another file under the alias: %v; want ErrDigestInUse", err)
	}
}

func newStringerSlot(t *testing.T, opts Options) *Slot[fmt.Stringer] {
	t.Helper()
	s, err := New[fmt.Stringer](opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// TestPanicLoggedAtDefaultVerbosity: a plugin's panic value and its first stack frames,
// plugin frames first, are logged at V(0), at most panicLogBurst per version and then one per
// panicLogInterval with the count suppressed meanwhile.
func TestPanicLoggedAtDefaultVerbosity(t *testing.T) {
	so := buildRealPlugin(t, "example.test/panics", fmt.Sprintf(stringerPlugin, 0))
	ctx := context.Background()
	var logs logLines
	now := time.Unix(1_000_000, 0)
	s := newStringerSlot(t, Options{Logger: funcr.NewJSON(logs.write, funcr.Options{Verbosity: 0}), PanicThreshold: -1})
	s.now = func() time.Time { return now }
	d, err := control.FileDigest(so)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.LoadAndSwap(ctx, so, d, SwapOptions{}); err != nil {
		t.Fatal(err)
	}
	call := func() {
		t.Helper()
		err := s.Call("k", func(g fmt.Stringer) error { _ = g.String(); return nil })
		var pe *PanicError
		if !errors.As(err, &pe) {
			t.Fatalf("call: %v; want a PanicError", err)
		}
	}
	for range 20 {
		call()
	}
	got := logs.withMsg("plugin call panicked")
	if len(got) != panicLogBurst {
		t.Fatalf("%d panic records after 20 panics within the interval, want %d: %v", len(got), panicLogBurst, got)
	}
	first := got[0]
	if first["panic"] != "runtime error: integer divide by zero" || first["digest"] != d || first["level"] != float64(0) {
		t.Errorf("record %v; want panic %q and digest %s at level 0", first, "runtime error: integer divide by zero", d)
	}
	frames, _ := first["stack"].([]any)
	if len(frames) == 0 || len(frames) > panicLogFrames {
		t.Fatalf("stack %v: want 1..%d frames", first["stack"], panicLogFrames)
	}
	if f, _ := frames[0].(string); !strings.HasPrefix(f, "example.test/panics.") || !strings.Contains(f, "String") {
		t.Errorf("first frame %q; want the plugin's String", frames[0])
	}
	for _, f := range frames {
		if s, _ := f.(string); strings.ContainsAny(s, "\r\n") || s == "" {
			t.Errorf("frame %q is empty or holds a line break", f)
		}
	}

	now = now.Add(panicLogInterval - time.Second)
	call()
	if n := len(logs.withMsg("plugin call panicked")); n != panicLogBurst {
		t.Errorf("%d records before the interval passed, want %d", n, panicLogBurst)
	}
	now = now.Add(2 * time.Second)
	call()
	call()
	got = logs.withMsg("plugin call panicked")
	if len(got) != panicLogBurst+1 {
		t.Fatalf("%d records after the interval, want %d", len(got), panicLogBurst+1)
	}
	if last := got[len(got)-1]; last["suppressed"] != float64(16) || last["panics"] != float64(22) {
		t.Errorf("record after the interval %v; want suppressed 16 and panics 22", last)
	}
}
