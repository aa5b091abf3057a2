package main

// The 15-minute path of docs/getting-started.md, step by step with real parts: `splice init`,
// the skeleton's own `make build`, its host started with the v1 plugin, `splice swap` to v2
// under bounded load, `splice status`, `splice rollback`. Nothing here knows the skeleton's
// code beyond what the docs tell a user.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/splice-dev/splice/host/control"
	"github.com/splice-dev/splice/internal/testio"
)

func TestAdoptionPath(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a new service from the scaffold and runs it; skipped with -short")
	}
	hostModule, err := filepath.Abs("../../host")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "pricing")
	mustSplice(t, 0, nil, "init", dir, "--module", "example.com/team/pricing", "--host-module-dir", hostModule)
	make := exec.Command("make", "build")
	make.Dir = dir
	if out, err := make.CombinedOutput(); err != nil {
		t.Fatalf("make build in the new service: %v\n%s", err, out)
	}

	shared := filepath.Join(dir, "shared")
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	v1 := filepath.Join(shared, "plugin-v1.so")
	copyFile(t, filepath.Join(dir, "bin", "plugin-v1.so"), v1)
	addrFile := filepath.Join(shared, "addr")
	addr := startService(t, addrFile, filepath.Join(dir, "bin", "pricing"), "-addr", "127.0.0.1:0",
		"-addr-file", addrFile, "-shared", shared, "-plugin", v1)
	if got := call(addr); got.err != nil || got.version != "v1" {
		t.Fatalf("the new service after start: %+v, want v1 answering", got)
	}

	socket := filepath.Join(shared, control.SocketName)
	stop := boundedLoad(addr, 4, 5*time.Millisecond)
	mustSplice(t, 0, nil, "swap", "--socket", socket, filepath.Join(dir, "bin", "plugin-v2.so"))
	time.Sleep(200 * time.Millisecond) // calls after the swap
	calls, failed, versions := stop()
	t.Logf("swap v1 -> v2 under load: %d calls, %d failed, answered by %v", calls, failed, versions)
	if failed != 0 || calls < 20 {
		t.Errorf("swap under load: %d of %d calls failed, want 0 of at least 20", failed, calls)
	}
	if !versions["v2"] {
		t.Errorf("no call was answered by v2 after the swap: %v", versions)
	}
	if got := call(addr); got.version != "v2" {
		t.Errorf("after splice swap: %+v, want v2", got)
	}
	v2, err := control.FileDigest(filepath.Join(dir, "bin", "plugin-v2.so"))
	if err != nil {
		t.Fatal(err)
	}
	mustSplice(t, 0, []string{"serving:     " + v2, v2 + "  Current"}, "status", "--socket", socket)
	mustSplice(t, 0, nil, "rollback", "--socket", socket)
	if got := call(addr); got.version != "v1" {
		t.Errorf("after splice rollback: %+v, want v1", got)
	}

	// Through a registry, as a cluster would: the artifact of the build the host already
	// holds as a file is that build (an alias of it), not a second plugin of the same path.
	reg, _ := startRegistry(t)
	ref := strings.TrimSpace(mustSplice(t, 0, nil, "push", filepath.Join(dir, "bin", "plugin-v2.so"), reg+"/pricing", "--insecure"))
	mustSplice(t, 0, nil, "swap", "--socket", socket, "--insecure", ref)
	if got := call(addr); got.version != "v2" {
		t.Errorf("after splice swap of the pushed v2: %+v, want v2", got)
	}
	var st control.Status
	if err := json.Unmarshal([]byte(mustSplice(t, 0, nil, "status", "--socket", socket, "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	manifest := ref[strings.LastIndex(ref, "@")+1:]
	if !st.IsCurrent(manifest) || st.Current != v2 || len(st.Versions) != 2 {
		t.Errorf("after swapping to %s: current %s, %d versions; want %s current under its alias %s, 2 versions", ref, st.Current, len(st.Versions), v2, manifest)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// startService starts the new service's host and returns its address once written to
// addrFile; the test's end stops it with SIGTERM, as Kubernetes would.
func startService(t *testing.T, addrFile, bin string, args ...string) string {
	t.Helper()
	log := &testio.SyncBuffer{}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("the service did not exit cleanly on SIGTERM: %v", err)
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Errorf("the service did not exit within 30 s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("service log:\n%s", log.String())
		}
	})
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-exited:
			t.Fatalf("the service exited during start-up: %v\n%s", err, log.String())
		default:
		}
		if b, err := os.ReadFile(addrFile); err == nil && len(b) > 0 {
			return string(b)
		}
	}
	t.Fatalf("the service wrote no address to %s within 60 s:\n%s", addrFile, log.String())
	return ""
}

type answer struct {
	status  int
	version string
	err     error
}

// call makes one GET /call on a fresh connection, as a new client would.
func call(addr string) answer {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/call?input=quote", nil)
	req.Close = true
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return answer{status: resp.StatusCode, err: fmt.Errorf("status %d: %s", resp.StatusCode, body)}
	}
	return answer{status: resp.StatusCode, version: resp.Header.Get("X-Plugin-Version")}
}

// boundedLoad calls from workers goroutines, each pausing between calls, until stop, which
// returns the calls made, those that failed and the versions that answered.
func boundedLoad(addr string, workers int, pause time.Duration) (stop func() (int64, int64, map[string]bool)) {
	var calls, failed atomic.Int64
	var mu sync.Mutex
	versions := map[string]bool{}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				select {
				case <-quit:
					return
				case <-time.After(pause):
				}
				a := call(addr)
				calls.Add(1)
				if a.err != nil {
					failed.Add(1)
					continue
				}
				mu.Lock()
				versions[a.version] = true
				mu.Unlock()
			}
		})
	}
	return func() (int64, int64, map[string]bool) {
		close(quit)
		wg.Wait()
		return calls.Load(), failed.Load(), versions
	}
}
