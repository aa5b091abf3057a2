package greeterproc

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/splice-dev/splice/examples/greeter/greeterbuild"
	"github.com/splice-dev/splice/internal/testio"
)

// The real greeter host and its real v1 plugin, built once for the package's tests.
var (
	hostBin string
	v1      *greeterbuild.Artifact
)

func TestMain(m *testing.M) {
	remove, err := build()
	if err != nil {
		fmt.Fprintln(os.Stderr, "build the greeter host and its plugin v1:", err)
		os.Exit(1)
	}
	code := m.Run()
	remove()
	os.Exit(code)
}

// build builds hostBin and v1 into a temporary directory that remove deletes.
func build() (remove func(), err error) {
	b, remove, err := greeterbuild.NewTemp("splice-greeterproc-")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	if hostBin, err = b.Host(ctx); err == nil {
		v1, err = b.Plugin(ctx, "v1", fmt.Sprintf("greeterproc%d", os.Getpid()))
	}
	if err != nil {
		remove()
		return nil, err
	}
	return remove, nil
}

// start starts the real host on plugin, in a shared directory that holds a stale address file
// nobody serves (Start must not take it); out collects what the host prints.
func start(t *testing.T, ctx context.Context, plugin string) (*Host, *testio.SyncBuffer, error) {
	shared := t.TempDir()
	if err := os.WriteFile(filepath.Join(shared, "addr"), []byte("127.0.0.1:1"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := &testio.SyncBuffer{}
	h, err := Start(ctx, Options{Bin: hostBin, Shared: shared, Plugin: plugin, Digest: v1.Digest, Output: out})
	return h, out, err
}

func TestStartGreetStop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h, out, err := start(t, ctx, v1.Path)
	if err != nil {
		t.Fatalf("%v; output:\n%s", err, out.String())
	}
	t.Cleanup(h.Stop)
	if !h.Alive() || h.Addr() == "127.0.0.1:1" || h.ExitCode() != -1 || h.ProcessState() != nil {
		t.Fatalf("running host: alive %v, addr %q, exit code %d, state %v", h.Alive(), h.Addr(), h.ExitCode(), h.ProcessState())
	}
	a := Greet(OneShot, h.Addr(), "ada", "tenant-1")
	want := Answer{Status: http.StatusOK, Version: "v1", Digest: v1.Digest, PID: fmt.Sprint(h.PID()), Generation: "0",
		Body: "Hello, ada! (v1)\n"}
	if a != want {
		t.Fatalf("Greet = %+v; want %+v", a, want)
	}
	h.Stop()
	select {
	case <-h.Exited():
	default:
		t.Fatal("Exited is open after Stop")
	}
	if h.Alive() || h.ExitCode() != 0 {
		t.Fatalf("after Stop: alive %v, exit code %d (%v); want exited with 0; output:\n%s", h.Alive(), h.ExitCode(), h.ProcessState(), out.String())
	}
	if a := Greet(OneShot, h.Addr(), "ada", ""); a.Err == nil {
		t.Fatalf("Greet after Stop = %+v; want an error", a)
	}
}

func TestStartReportsEarlyExit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h, out, err := start(t, ctx, filepath.Join(t.TempDir(), "missing.so"))
	if err == nil {
		h.Stop()
		t.Fatal("Start succeeded with a host whose initial plugin does not exist")
	}
	if !strings.Contains(err.Error(), "exited during start-up (exit status 1)") {
		t.Errorf("error %q does not say that the host exited, and how", err)
	}
	if !strings.Contains(out.String(), "initial plugin") {
		t.Errorf("the host's output did not reach Output: %q", out.String())
	}
}

func TestStartGivesUpWithContext(t *testing.T) {
	// Ended before the host can have exec'd, loaded its plugin and written its address.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err := start(t, ctx, v1.Path)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "no address") {
		t.Fatalf("Start with a context that ended: %v; want the context's error and what was missing", err)
	}
}
