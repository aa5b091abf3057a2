package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/splice-dev/splice/examples/greeter/greeterbuild"
	"github.com/splice-dev/splice/examples/greeter/greeterproc"
	"github.com/splice-dev/splice/host/control"
	"github.com/splice-dev/splice/internal/testio"
)

var (
	hostBin   string
	artifacts map[string]*greeterbuild.Artifact
	skip      string // why every test skips, if they do
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		skip = "-short: the end-to-end tests build and run real plugins"
		return m.Run()
	}
	b, remove, err := greeterbuild.NewTemp("splice-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer remove()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	if os.Getenv("SPLICE_E2E_RACE") != "" {
		// Host and plugins with the race detector (both sides: it changes package hashes).
		b.Flags = []string{"-trimpath", "-race"}
	}
	if hostBin, err = b.Host(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	all := append(append([]string{}, greeterbuild.Good...), greeterbuild.Drills...)
	if artifacts, err = b.Plugins(ctx, all, fmt.Sprintf("e2e%d", os.Getpid())); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// hostProc is a greeter host running as a child process, with the test's view of it.
type hostProc struct {
	*greeterproc.Host
	t      testing.TB
	shared string
	log    *testio.SyncBuffer
	client *control.Client
}

// startHost starts a greeter host serving v1, with every plugin hard-linked into a fresh
// shared directory. At the end of the test it stops the host and checks that it shut down
// cleanly.
func startHost(t testing.TB, extraArgs ...string) *hostProc {
	t.Helper()
	if skip != "" {
		t.Skip(skip)
	}
	shared := t.TempDir()
	for _, a := range artifacts {
		dst := filepath.Join(shared, filepath.Base(a.Path))
		if err := os.Link(a.Path, dst); err != nil {
			t.Fatalf("link %s into the shared dir: %v", a.Path, err)
		}
	}
	h := &hostProc{t: t, shared: shared, log: &testio.SyncBuffer{}}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, err := greeterproc.Start(ctx, greeterproc.Options{
		Bin: hostBin, Shared: shared, Plugin: h.pluginPath("v1"), Digest: h.digest("v1"), Args: extraArgs, Output: h.log,
	})
	if err != nil {
		t.Fatalf("%v; host log:\n%s", err, h.log.String())
	}
	h.Host = p
	t.Cleanup(func() {
		h.Stop()
		// SIGTERM drains and exits 0; anything else (a crash, a race report's exit 66) is a
		// failure of the host, whatever the test checked before.
		if code := h.ExitCode(); code != 0 {
			t.Errorf("host exited with status %d after SIGTERM; want 0", code)
		}
		if strings.Contains(h.log.String(), "DATA RACE") {
			t.Errorf("the race detector reported a data race in the host")
		}
		if _, err := os.Stat(filepath.Join(shared, control.SocketName)); err == nil {
			t.Errorf("the control socket outlived the host's shutdown")
		}
		if t.Failed() {
			t.Logf("host log:\n%s", h.log.String())
		}
	})
	h.client = control.NewClient(filepath.Join(shared, control.SocketName))
	waitFor(t, "the host to serve v1", func() bool {
		r := h.greet(t, "warmup", "")
		return r.Err == nil && r.Status == 200 && r.Version == "v1"
	})
	return h
}

func (h *hostProc) requireAlive() {
	h.t.Helper()
	if !h.Alive() {
		h.t.Fatalf("the host died (state %v)", h.ProcessState())
	}
}

// pluginPath is the plugin's file inside this host's shared directory.
func (h *hostProc) pluginPath(name string) string {
	return filepath.Join(h.shared, filepath.Base(artifacts[name].Path))
}

func (h *hostProc) digest(name string) string { return artifacts[name].Digest }

func (h *hostProc) status(t testing.TB) *control.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := h.client.Status(ctx)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	return st
}

func (h *hostProc) ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func (h *hostProc) greet(t testing.TB, name, key string) greeterproc.Answer {
	return greeterproc.Greet(greeterproc.OneShot, h.Addr(), name, key)
}

// known says whether an answer is a correct greeting from a known good version: the header
// and the body must agree on who answered.
func known(a greeterproc.Answer, name string) error {
	if a.Err != nil {
		return a.Err
	}
	if a.Status != http.StatusOK {
		return fmt.Errorf("status %d: %s", a.Status, strings.TrimSpace(a.Body))
	}
	want := map[string]string{
		"v1": "Hello, %s! (v1)\n",
		"v2": "Hi, %s! (v2)\n",
		"v3": "Greetings, %s! (v3)\n",
	}[a.Version]
	if want == "" {
		return fmt.Errorf("answer from unknown version %q", a.Version)
	}
	if a.Body != fmt.Sprintf(want, name) {
		return fmt.Errorf("version %s answered %q", a.Version, a.Body)
	}
	if a.Digest != artifacts[a.Version].Digest {
		return fmt.Errorf("version %s answered with digest %s; built as %s", a.Version, a.Digest, artifacts[a.Version].Digest)
	}
	return nil
}

// load drives POST /greet from several clients until stop is closed, and records everything.
type load struct {
	total       atomic.Int64
	failed      atomic.Int64
	mu          sync.Mutex
	versions    map[string]int
	pids        map[string]int
	generations map[string]int
	failures    []string
	wg          sync.WaitGroup
	stop        chan struct{}
}

// startLoad starts clients; each request is a POST (not idempotent: a client library never
// retries it) and, with freshConns, on a connection of its own.
func startLoad(addr string, clients int, freshConns bool) *load {
	l := &load{versions: map[string]int{}, pids: map[string]int{}, generations: map[string]int{}, stop: make(chan struct{})}
	for i := 0; i < clients; i++ {
		c := greeterproc.OneShot
		if !freshConns {
			c = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}, Timeout: 30 * time.Second}
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for n := 0; ; n++ {
				select {
				case <-l.stop:
					return
				default:
				}
				name := fmt.Sprintf("client%d-%d", i, n)
				a := greeterproc.Greet(c, addr, name, "")
				l.total.Add(1)
				l.mu.Lock()
				if err := known(a, name); err != nil {
					l.failed.Add(1)
					if len(l.failures) < 20 {
						l.failures = append(l.failures, err.Error())
					}
				} else {
					l.versions[a.Version]++
					l.pids[a.PID]++
					l.generations[a.Generation]++
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *load) finish() {
	close(l.stop)
	l.wg.Wait()
}

// progress waits until the load has made n more requests, so that what follows happens
// under traffic.
func (l *load) progress(t testing.TB, n int64) {
	t.Helper()
	start := l.total.Load()
	waitFor(t, fmt.Sprintf("%d more requests", n), func() bool { return l.total.Load() >= start+n })
}

func (l *load) check(t testing.TB) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	t.Logf("load: %d requests, %d failed; versions %v; generations %v", l.total.Load(), l.failed.Load(), l.versions, l.generations)
	if l.total.Load() == 0 {
		t.Fatal("the load made no request; the test proved nothing")
	}
	if f := l.failed.Load(); f != 0 {
		t.Fatalf("%d of %d requests failed or were answered by no known version; first: %s", f, l.total.Load(), strings.Join(l.failures, "\n  "))
	}
}

// waitFor polls cond with a deadline; tests never sleep blindly.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// rawControl sends a request over the control socket without the client's local checks, as a
// hostile or broken peer would.
func (h *hostProc) rawControl(t testing.TB, method, path string, body io.Reader) (int, control.ErrorResponse) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", filepath.Join(h.shared, control.SocketName))
		},
		DisableKeepAlives: true,
	}, Timeout: 60 * time.Second}
	req, err := http.NewRequest(method, "http://splice-host"+path, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var er control.ErrorResponse
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 400 {
		if err := json.Unmarshal(b, &er); err != nil {
			t.Fatalf("%s %s: status %d with a body that is not an ErrorResponse: %q", method, path, resp.StatusCode, b)
		}
	}
	return resp.StatusCode, er
}

func codeOf(err error) control.Code {
	var ce *control.Error
	if errors.As(err, &ce) {
		return ce.Code
	}
	return ""
}

// reasonOf is the reason the host gave beside the code.
func reasonOf(err error) string {
	var ce *control.Error
	if errors.As(err, &ce) {
		return ce.Reason
	}
	return ""
}
