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
	"testing"
	"time"

	"github.com/splice-dev/splice/host/control"
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
	svc := startHostIn(t, filepath.Join(dir, "bin", "pricing"), shared, "-plugin", v1)
	addr, socket := svc.addr, svc.socket
	if got := call(addr); got.err != nil || got.version != "v1" {
		t.Fatalf("the new service after start: %+v, want v1 answering", got)
	}

	load := boundedLoad(addr, 4, 5*time.Millisecond)
	mustSplice(t, 0, nil, "swap", "--socket", socket, filepath.Join(dir, "bin", "plugin-v2.so"))
	// Calls after the swap: until the new version has answered 20 of them.
	for deadline := time.Now().Add(30 * time.Second); load.answered("v2") < 20; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("v2 answered %d calls in 30 s after the swap", load.answered("v2"))
		}
	}
	calls, failed, versions := load.stop()
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

// load is a bounded load on the service: workers each calling, pausing between calls.
type load struct {
	calls, failed atomic.Int64
	mu            sync.Mutex
	versions      map[string]int64 // calls answered, by version
	quit          chan struct{}
	wg            sync.WaitGroup
}

// boundedLoad starts workers goroutines calling addr, each pausing pause between calls.
func boundedLoad(addr string, workers int, pause time.Duration) *load {
	l := &load{versions: map[string]int64{}, quit: make(chan struct{})}
	for range workers {
		l.wg.Go(func() {
			for {
				select {
				case <-l.quit:
					return
				case <-time.After(pause):
				}
				a := call(addr)
				l.calls.Add(1)
				if a.err != nil {
					l.failed.Add(1)
					continue
				}
				l.mu.Lock()
				l.versions[a.version]++
				l.mu.Unlock()
			}
		})
	}
	return l
}

// answered is how many calls version has answered so far.
func (l *load) answered(version string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.versions[version]
}

// stop ends the load and returns the calls made, those that failed and the versions that
// answered.
func (l *load) stop() (calls, failed int64, versions map[string]bool) {
	close(l.quit)
	l.wg.Wait()
	versions = map[string]bool{}
	for v := range l.versions {
		versions[v] = true
	}
	return l.calls.Load(), l.failed.Load(), versions
}
