// Package e2e builds the quote host and plugins for real (cgo on, -trimpath on both, the same
// toolchain), starts the host, calls it over gRPC, hot-swaps v1 to v2 through the control
// socket and re-execs it, while a caller never stops calling.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/splice-dev/splice/examples/grpc-quote/quoterpc"
	"github.com/splice-dev/splice/host/control"
)

// buildFlags are those of every build here, host and plugins alike, as in the greeter's
// builder: -trimpath keeps package hashes independent of the checkout's location.
var buildFlags = []string{"build", "-buildvcs=false", "-trimpath"}

func goBuild(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command("go", append(append([]string{}, buildFlags...), args...)...)
	cmd.Dir = ".." // the module root
	// Plugins need cgo on both sides.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(cmd.Args[1:], " "), err, out)
	}
}

// caller calls the service until stopped, counting failures and the last reply.
type caller struct {
	calls, failures atomic.Int64
	mu              sync.Mutex
	last            *quoterpc.QuoteReply
	firstErr        error
}

func (c *caller) run(ctx context.Context, cc *grpc.ClientConn) {
	for i := 0; ctx.Err() == nil; i++ {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r, err := quoterpc.Quote(cctx, cc, &quoterpc.QuoteRequest{Topic: fmt.Sprintf("topic-%d", i)})
		cancel()
		c.calls.Add(1)
		c.mu.Lock()
		if err != nil {
			c.failures.Add(1)
			if c.firstErr == nil {
				c.firstErr = err
			}
		} else {
			c.last = r
		}
		c.mu.Unlock()
		time.Sleep(2 * time.Millisecond)
	}
}

func (c *caller) lastReply() *quoterpc.QuoteReply {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

func (c *caller) waitFor(t *testing.T, what string, cond func(*quoterpc.QuoteReply) bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if r := c.lastReply(); r != nil && cond(r) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: not within 60s; last reply %+v", what, c.lastReply())
}

func startHost(t *testing.T, bin, shared, plugin string) (string, *exec.Cmd, *bytes.Buffer) {
	t.Helper()
	addrFile := filepath.Join(t.TempDir(), "addr")
	var logs bytes.Buffer
	cmd := exec.Command(bin, "-addr", "127.0.0.1:0", "-addr-file", addrFile, "-shared", shared, "-plugin", plugin, "-v", "1")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("host logs:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(addrFile); err == nil && len(b) > 0 {
			return string(b), cmd, &logs
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("host wrote no address within 30s; logs:\n%s", logs.String())
	return "", nil, nil
}

func TestHotSwapAndReexecUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a host and two plugins")
	}
	dir, shared := t.TempDir(), t.TempDir()
	bin := filepath.Join(dir, "quote-host")
	goBuild(t, "-o", bin, "./cmd/quote-host")
	v1, v2 := filepath.Join(shared, "v1.so"), filepath.Join(shared, "v2.so")
	goBuild(t, "-buildmode=plugin", "-o", v1, "./plugins/v1")
	goBuild(t, "-buildmode=plugin", "-o", v2, "./plugins/v2")

	addr, cmd, _ := startHost(t, bin, shared, v1)
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	first, err := quoterpc.Quote(context.Background(), cc, &quoterpc.QuoteRequest{Topic: "go"})
	if err != nil || first.Release != "v1" || !strings.Contains(first.Text, "On go:") {
		t.Fatalf("first call: %+v, %v; want v1 answering", first, err)
	}

	var c caller
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.run(ctx, cc); close(done) }()
	time.Sleep(200 * time.Millisecond)

	// Hot swap v1 -> v2 through the control socket.
	d2, err := control.FileDigest(v2)
	if err != nil {
		t.Fatal(err)
	}
	ctl := control.NewClient(filepath.Join(shared, control.SocketName))
	if _, err := ctl.Load(context.Background(), control.LoadRequest{Path: v2, Digest: d2, Swap: true}); err != nil {
		t.Fatalf("load and swap v2: %v", err)
	}
	c.waitFor(t, "v2 answering", func(r *quoterpc.QuoteReply) bool { return r.Release == "v2" && r.Digest == d2 })
	swapped := c.calls.Load()

	// Re-exec in place: the listener is handed over, the gRPC connection drained by GOAWAY.
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	c.waitFor(t, "generation 1 answering", func(r *quoterpc.QuoteReply) bool { return r.HostGeneration == 1 })
	time.Sleep(200 * time.Millisecond)
	stop()
	<-done

	last := c.lastReply()
	if last.Release != "v2" || last.HostPID != cmd.Process.Pid || last.HostGeneration != 1 {
		t.Errorf("after the re-exec: %+v; want v2 from PID %d, generation 1", last, cmd.Process.Pid)
	}
	if n := c.failures.Load(); n != 0 {
		t.Fatalf("%d of %d calls failed; first: %v", n, c.calls.Load(), c.firstErr)
	}
	t.Logf("%d calls, 0 failed (%d before v2 answered)", c.calls.Load(), swapped)

	// SIGTERM drains and exits 0.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("host exit after SIGTERM: %v", err)
	}
}
