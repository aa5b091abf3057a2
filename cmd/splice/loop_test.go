package main

// The local loop, end to end with real parts: a real greeter host process, real plugin builds,
// a real loopback registry served by `splice registry`, and the commands run through run() as
// the binary would run them.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/splice-dev/splice/examples/greeter/greeterbuild"
	"github.com/splice-dev/splice/examples/greeter/greeterproc"
	"github.com/splice-dev/splice/host/control"
	"github.com/splice-dev/splice/internal/testio"
)

// loopBuild is the greeter host and plugins every local-loop test uses, built once.
var loopBuild struct {
	once    sync.Once
	err     error
	host    string
	plugins map[string]*greeterbuild.Artifact // v1, v2, v3 (API 1.1.0) and "v1-no-trimpath"
}

func buildLoop(t *testing.T) (string, map[string]*greeterbuild.Artifact) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a greeter host and plugins and runs them; skipped with -short")
	}
	lb := &loopBuild
	lb.once.Do(func() {
		// Not t.TempDir: the builds outlive the first test that asks for them.
		dir, err := os.MkdirTemp("", "splice-loop-")
		if err != nil {
			lb.err = err
			return
		}
		root, err := greeterbuild.FindModuleRoot()
		if err != nil {
			lb.err = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		b := &greeterbuild.Builder{Root: root, Out: dir}
		if lb.host, lb.err = b.Host(ctx); lb.err != nil {
			return
		}
		nonce := fmt.Sprintf("loop%d", os.Getpid())
		if lb.plugins, lb.err = b.Plugins(ctx, []string{"v1", "v2", "v3"}, nonce); lb.err != nil {
			return
		}
		// Other build flags than the host's: without -trimpath every package hash differs.
		other := &greeterbuild.Builder{Root: root, Out: filepath.Join(dir, "other"), Flags: []string{}}
		a, err := other.Plugin(ctx, "v1", nonce+"nt")
		lb.plugins["v1-no-trimpath"], lb.err = a, err
	})
	if lb.err != nil {
		t.Fatal(lb.err)
	}
	return lb.host, lb.plugins
}

// splice runs the command line in process and returns its exit status, stdout and stderr.
func spliceRun(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr strings.Builder
	status := run(args, &stdout, &stderr)
	t.Logf("splice %s -> %d\nstdout:\n%sstderr:\n%s", strings.Join(args, " "), status, stdout.String(), stderr.String())
	return status, stdout.String(), stderr.String()
}

// mustSplice runs the command line and requires the exit status and substrings of stdout.
func mustSplice(t *testing.T, wantStatus int, wantStdout []string, args ...string) string {
	t.Helper()
	status, stdout, stderr := spliceRun(t, args...)
	if status != wantStatus {
		t.Fatalf("splice %s: exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), status, wantStatus, stdout, stderr)
	}
	for _, s := range wantStdout {
		if !strings.Contains(stdout, s) {
			t.Errorf("splice %s: stdout lacks %q:\n%s", strings.Join(args, " "), s, stdout)
		}
	}
	return stdout
}

// startRegistry runs `splice registry` on a free loopback port until the test ends (SIGINT,
// as Ctrl-C would), and returns its address and blob directory.
func startRegistry(t *testing.T) (addr, dir string) {
	t.Helper()
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	var stderr testio.SyncBuffer
	dir = t.TempDir()
	go func() {
		done <- run([]string{"registry", "--addr", "127.0.0.1:0", "--dir", dir}, pw, &stderr)
		pw.Close()
	}()
	lines := bufio.NewScanner(pr)
	if !lines.Scan() {
		t.Fatalf("splice registry printed no address; exit %d; stderr:\n%s", <-done, stderr.String())
	}
	addr = lines.Text()
	go io.Copy(io.Discard, pr)
	t.Cleanup(func() {
		// The command has registered for SIGINT before it printed the address.
		if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
			t.Errorf("signal the registry: %v", err)
		}
		select {
		case status := <-done:
			if status != 0 {
				t.Errorf("splice registry exited %d after SIGINT; stderr:\n%s", status, stderr.String())
			}
		case <-time.After(10 * time.Second):
			t.Errorf("splice registry did not stop on SIGINT")
		}
	})
	return addr, dir
}

// loopHost is a greeter host started with no plugin, as `splice load` finds a fresh app.
type loopHost struct {
	cmd    *exec.Cmd
	shared string
	socket string
	addr   string
	log    *testio.SyncBuffer
}

func startLoopHost(t *testing.T, bin string) *loopHost {
	t.Helper()
	return startHostIn(t, bin, t.TempDir())
}

// startHostIn starts a host binary that takes host/serve's flags, with its control socket and
// plugin files in shared and the extra flags (-plugin, ...), and returns it once it serves and
// answers on its socket. The test's end stops it with SIGTERM, as Kubernetes would, and fails
// the test unless it exits cleanly.
func startHostIn(t *testing.T, bin, shared string, extra ...string) *loopHost {
	t.Helper()
	h := &loopHost{shared: shared, socket: filepath.Join(shared, control.SocketName), log: &testio.SyncBuffer{}}
	args := append([]string{"-addr", "127.0.0.1:0", "-addr-file", filepath.Join(shared, "addr"), "-shared", shared}, extra...)
	h.cmd = exec.Command(bin, args...)
	h.cmd.Stdout, h.cmd.Stderr = h.log, h.log
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var exitErr error
	go func() { exitErr = h.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		h.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
			if exitErr != nil {
				t.Errorf("the host did not exit cleanly on SIGTERM: %v", exitErr)
			}
		case <-time.After(greeterproc.StopTimeout):
			h.cmd.Process.Kill()
			<-exited
			t.Errorf("the host did not exit within %s of SIGTERM", greeterproc.StopTimeout)
		}
		if t.Failed() {
			t.Logf("host log:\n%s", h.log.String())
		}
	})
	client := control.NewClient(h.socket)
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(shared, "addr"))
		if err == nil && len(b) > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err = client.Status(ctx)
			cancel()
			if err == nil {
				h.addr = string(b)
				return h
			}
		}
		select {
		case <-exited:
			t.Fatalf("the host exited during start-up; log:\n%s", h.log.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the host did not answer on %s: %v; log:\n%s", h.socket, err, h.log.String())
		}
	}
}

func (h *loopHost) greet(t *testing.T) greeterproc.Answer {
	t.Helper()
	return greeterproc.Greet(greeterproc.OneShot, h.addr, "loop", "")
}

func (h *loopHost) status(t *testing.T) *control.Status {
	t.Helper()
	out := mustSplice(t, 0, nil, "status", "--socket", h.socket, "-o", "json")
	var st control.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status -o json is not a status: %v\n%s", err, out)
	}
	return &st
}

// waitCalls waits until made reports at least n calls.
func waitCalls(t *testing.T, made func() int64, n int64) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); made() < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d calls in 30 s, want %d", made(), n)
		}
	}
}

// traffic greets the host in a loop until stop is called, which returns the failed requests
// and the last version that answered.
func (h *loopHost) traffic(t *testing.T) (made func() int64, stop func() (failed int64, calls int64, last string)) {
	var failed, calls atomic.Int64
	var last atomic.Value
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			default:
			}
			a := h.greet(t)
			calls.Add(1)
			if a.Err != nil || a.Status != 200 {
				failed.Add(1)
				t.Logf("failed request: status %d, %v, %s", a.Status, a.Err, a.Body)
				continue
			}
			last.Store(a.Version)
		}
	}()
	return calls.Load, func() (int64, int64, string) {
		close(quit)
		<-done
		v, _ := last.Load().(string)
		return failed.Load(), calls.Load(), v
	}
}

func TestLocalLoopThroughRegistry(t *testing.T) {
	hostBin, plugins := buildLoop(t)
	reg, blobDir := startRegistry(t)
	repo := reg + "/greeter"

	refs := map[string]string{}
	for _, name := range []string{"v1", "v2", "v3"} {
		status, stdout, stderr := spliceRun(t, "push", "--insecure", plugins[name].Path, repo, "--tag", name, "--version", name)
		if status != 0 {
			t.Fatalf("push %s: exit %d\n%s", name, status, stderr)
		}
		refs[name] = strings.TrimSpace(stdout)
		if !strings.HasPrefix(refs[name], repo+"@sha256:") || !control.ValidDigest(strings.TrimPrefix(refs[name], repo+"@")) {
			t.Fatalf("push printed %q, want %s@sha256:<hex>", stdout, repo)
		}
	}
	// --dir keeps the blobs on disk: two per plugin (the layer and the config).
	if n := countFiles(t, blobDir); n < 6 {
		t.Errorf("the registry's --dir holds %d files after three pushes, want at least 6", n)
	}
	status, _, stderr := spliceRun(t, "push", hostBin, repo)
	if status != 2 || !strings.Contains(stderr, "not a Go plugin") || !strings.Contains(stderr, "-buildmode=plugin") {
		t.Errorf("push of the host binary: exit %d, stderr %q; want 2 and a message that it is not a Go plugin", status, stderr)
	}

	h := startLoopHost(t, hostBin)
	sock := []string{"--socket", h.socket}
	digest := func(name string) string { return strings.TrimPrefix(refs[name], repo+"@") }

	// Load v1 from the registry, then make it serve.
	mustSplice(t, 0, []string{"ok: the host can load " + refs["v1"], "loaded " + digest("v1"), "plugin API 1.0.0"}, append([]string{"load"}, append(sock, "--insecure", refs["v1"])...)...)
	if st := h.status(t); st.Current != "" || st.Version(digest("v1")) == nil {
		t.Fatalf("after load: current %q, versions %+v; want v1 loaded, nothing serving", st.Current, st.Versions)
	}
	mustSplice(t, 0, []string{"is loaded already"}, append([]string{"load"}, append(sock, "--insecure", refs["v1"])...)...)
	mustSplice(t, 0, []string{"serving " + digest("v1")}, append([]string{"swap"}, append(sock, "--insecure", refs["v1"])...)...)
	if a := h.greet(t); a.Version != "v1" || a.Digest != digest("v1") {
		t.Fatalf("after swap to v1 the host answers %+v", a)
	}

	// Swap to v2 (pull, preflight, load and swap in one step) under traffic.
	made, stop := h.traffic(t)
	waitCalls(t, made, 10) // calls before the swap
	mustSplice(t, 0, []string{"ok: the host can load", "loaded " + digest("v2"), "serving " + digest("v2") + " (was " + digest("v1") + ")"},
		append([]string{"swap"}, append(sock, "--insecure", refs["v2"])...)...)
	waitCalls(t, made, made()+10) // and after it
	failed, calls, last := stop()
	t.Logf("under the swap: %d requests, %d failed, last answered by %s", calls, failed, last)
	if failed != 0 || last != "v2" || calls < 10 {
		t.Errorf("under the swap: %d of %d requests failed, last answer from %q; want 0 failed of at least 10, v2 answering", failed, calls, last)
	}

	// Status shows both, v2 serving, v1 the previous.
	out := mustSplice(t, 0, []string{"serving:     " + digest("v2"), "previous:    " + digest("v1"), "generation 0", "Current", "Retired"},
		append([]string{"status"}, sock...)...)
	if !strings.Contains(out, digest("v1")+"  Retired") {
		t.Errorf("status does not show v1 retired:\n%s", out)
	}

	// v3 declares API 1.1.0: a minor step needs consent; nothing reaches the host without it.
	out = mustSplice(t, 1, []string{"refused: " + refs["v3"], "MinorAPIChangeNotAllowed", "--allow-minor-api-change"},
		append([]string{"swap"}, append(sock, "--insecure", refs["v3"])...)...)
	if st := h.status(t); len(st.Versions) != 2 {
		t.Errorf("after the refusal the host holds %d versions, want 2: %s", len(st.Versions), out)
	}
	if _, err := os.Stat(filepath.Join(h.shared, strings.TrimPrefix(digest("v3"), "sha256:")+".so")); err == nil {
		t.Errorf("the refused plugin file stayed in the shared directory")
	}
	mustSplice(t, 0, []string{"serving " + digest("v3")}, append([]string{"swap", "--allow-minor-api-change"}, append(sock, "--insecure", refs["v3"])...)...)
	if a := h.greet(t); a.Version != "v3" {
		t.Fatalf("after the consented swap the host answers %+v", a)
	}

	// Rollback walks back: v3 -> v2 -> v1, then there is nothing left.
	mustSplice(t, 0, []string{"rolled back (rollback): serving " + digest("v2")}, append([]string{"rollback"}, sock...)...)
	mustSplice(t, 0, []string{"rolled back (rollback): serving " + digest("v1")}, append([]string{"rollback"}, sock...)...)
	if a := h.greet(t); a.Version != "v1" || a.Digest != digest("v1") {
		t.Fatalf("after rolling back the host answers %+v; want v1", a)
	}
	status, _, stderr = spliceRun(t, append([]string{"rollback"}, sock...)...)
	if status != 2 || !strings.Contains(stderr, "nothing to roll back to") {
		t.Errorf("rollback with no previous version: exit %d, stderr %q", status, stderr)
	}

	// A build with other flags than the host's is refused by the preflight, with the reason.
	other := plugins["v1-no-trimpath"].Path
	mustSplice(t, 1, []string{"refused: the host on " + h.socket + " cannot load " + other, "PackageHashMismatch", "the plugin was built without -trimpath and the host", "rebuild the plugin with -trimpath", "(1 problem)"},
		append([]string{"swap"}, append(sock, other)...)...)
	if a := h.greet(t); a.Version != "v1" {
		t.Errorf("after the refusal the host answers %+v; want v1 still", a)
	}
}

func TestLocalLoopFile(t *testing.T) {
	hostBin, plugins := buildLoop(t)
	h := startLoopHost(t, hostBin)
	sock := []string{"--socket", h.socket}
	v2 := plugins["v2"]

	// A local file, no registry: copied into the shared directory under its sha256.
	mustSplice(t, 0, []string{"ok: the host can load " + v2.Path, "loaded " + v2.Digest, "serving " + v2.Digest},
		append([]string{"swap"}, append(sock, v2.Path)...)...)
	if a := h.greet(t); a.Version != "v2" || a.Digest != v2.Digest {
		t.Fatalf("after swapping to the file the host answers %+v; want v2 under %s", a, v2.Digest)
	}
	inShared := filepath.Join(h.shared, strings.TrimPrefix(v2.Digest, "sha256:")+".so")
	if got, err := control.FileDigest(inShared); err != nil || got != v2.Digest {
		t.Errorf("%s: digest %s, %v; want a copy of %s", inShared, got, err, v2.Path)
	}
	if st := h.status(t); st.Current != v2.Digest || len(st.Versions) != 1 || st.Versions[0].Path != inShared {
		t.Errorf("status: current %s, versions %+v", st.Current, st.Versions)
	}
	mustSplice(t, 0, []string{"serves already"}, append([]string{"swap"}, append(sock, v2.Path)...)...)

	// The API version is read from the file itself: v3's 1.1.0 needs consent.
	mustSplice(t, 1, []string{"MinorAPIChangeNotAllowed", "--allow-minor-api-change"}, append([]string{"swap"}, append(sock, plugins["v3"].Path)...)...)
	// The digest of a version the host holds is enough to swap back to it.
	mustSplice(t, 0, []string{"loaded " + plugins["v1"].Digest}, append([]string{"load"}, append(sock, plugins["v1"].Path)...)...)
	mustSplice(t, 0, []string{"serving " + plugins["v1"].Digest}, append([]string{"swap"}, append(sock, plugins["v1"].Digest)...)...)

	// Usage errors name the flag to fix.
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"swap", v2.Path}, "--socket is required"},
		{[]string{"load", "--socket", filepath.Join(t.TempDir(), "missing", control.SocketName), v2.Path}, "give --shared"},
		{[]string{"status", "--socket", h.socket, "-o", "yaml"}, `-o "yaml": want text or json`},
		{[]string{"registry", "--addr", "0.0.0.0:5000"}, "not a loopback address"},
		{[]string{"load", "--socket", h.socket, "registry.example/greeter:v1"}, "names a tag"},
		{[]string{"load", "--socket", h.socket, filepath.Join(h.shared, "missing.so")}, "missing.so: stat"},
		{[]string{"push", filepath.Join(h.shared, "addr"), "127.0.0.1:1/x"}, "not a Go plugin"},
	} {
		if status, _, stderr := spliceRun(t, tt.args...); status != 2 || !strings.Contains(stderr, tt.want) {
			t.Errorf("splice %s: exit %d, stderr %q; want 2 and %q", strings.Join(tt.args, " "), status, stderr, tt.want)
		}
	}
}

func countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
