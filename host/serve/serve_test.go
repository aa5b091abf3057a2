package serve

import (
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"

	"github.com/splice-dev/splice/host/control"
	"github.com/splice-dev/splice/host/serve/internal/echo"
)

// buildPlugin builds testdata/<name> as a plugin with the flags this test binary was built
// with (a plugin and its host must agree on them), into dir.
func buildPlugin(t *testing.T, name, dir string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a plugin")
	}
	args := []string{"build", "-buildvcs=false", "-buildmode=plugin"}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if (s.Key == "-trimpath" || s.Key == "-race") && s.Value == "true" {
				args = append(args, s.Key)
			}
		}
	}
	out := filepath.Join(dir, name+".so")
	cmd := exec.Command("go", append(args, "-o", out, "./testdata/"+name)...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build plugin %s: %v\n%s", name, err, b)
	}
	return out
}

// start runs fn (Run or HTTP) with cfg in a goroutine, waits for the address file and returns
// the address and the channel fn's result arrives on.
func start(t *testing.T, cfg *Config, fn func(context.Context, Config) error) (string, context.CancelFunc, <-chan error) {
	t.Helper()
	if cfg.SharedDir == "" {
		cfg.SharedDir = t.TempDir()
	}
	cfg.Addr = "127.0.0.1:0"
	cfg.AddrFile = filepath.Join(t.TempDir(), "addr")
	cfg.Logger = testr.NewWithOptions(t, testr.Options{Verbosity: 1})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { done <- fn(ctx, *cfg) }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("returned before serving: %v", err)
		default:
		}
		if b, err := os.ReadFile(cfg.AddrFile); err == nil && len(b) > 0 {
			return string(b), cancel, done
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no address file within 30s")
	return "", nil, nil
}

func echoHandler(h *Host[echo.Echoer]) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var out string
		err := h.Slot.Call("", func(e echo.Echoer) error {
			out = e.Echo(r.URL.Query().Get("s"))
			return nil
		})
		if err != nil {
			WriteError(w, err)
			return
		}
		io.WriteString(w, out)
	})
}

func waitDone(t *testing.T, done <-chan error, within time.Duration) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("returned %v, want nil after the context ended", err)
		}
	case <-time.After(within):
		t.Fatalf("did not return within %v of the context ending", within)
	}
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestHTTPServesRealPlugin: a cold start loads -plugin, serves it over HTTP with the control
// socket beside, and shuts down when the context ends, even with an idle keep-alive
// connection open.
func TestHTTPServesRealPlugin(t *testing.T) {
	shared := t.TempDir()
	cfg := Config{SharedDir: shared, PluginPath: buildPlugin(t, "echov1", shared), APIVersion: echo.APIVersion, DrainTimeout: 20 * time.Second}
	addr, cancel, done := start(t, &cfg, func(ctx context.Context, c Config) error {
		return HTTP(ctx, c, echoHandler)
	})
	client := &http.Client{Timeout: 10 * time.Second}
	if code, body := get(t, client, "http://"+addr+"/?s=hi"); code != 200 || body != "v1:hi" {
		t.Fatalf("GET: %d %q, want 200 v1:hi", code, body)
	}
	st, err := control.NewClient(filepath.Join(shared, control.SocketName)).Status(context.Background())
	if err != nil {
		t.Fatalf("control status: %v", err)
	}
	if st.Current == "" {
		t.Fatalf("control status: no current version: %+v", st)
	}
	cancel()
	waitDone(t, done, 10*time.Second)
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("still accepting after shutdown")
	}
	if _, err := os.Stat(filepath.Join(shared, control.SocketName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("control socket left behind: %v", err)
	}
}

// TestRunH2CNoVersion: an HTTP/2-cleartext service answers 503 before any version serves,
// and an idle HTTP/2 connection does not hold the shutdown until DrainTimeout.
func TestRunH2CNoVersion(t *testing.T) {
	cfg := Config{DrainTimeout: time.Minute}
	addr, cancel, done := start(t, &cfg, func(ctx context.Context, c Config) error {
		return Run(ctx, c, func(h *Host[echo.Echoer]) ([]Service, error) {
			return []Service{{Name: "echo", Server: H2C(echoHandler(h))}}, nil
		})
	})
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Protocols: &p}}
	resp, err := client.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != 503 || !strings.Contains(string(b), "no plugin version") {
		t.Fatalf("GET: HTTP/%d %d %q, want HTTP/2 503 no plugin version", resp.ProtoMajor, resp.StatusCode, b)
	}
	start := time.Now()
	cancel()
	waitDone(t, done, 10*time.Second)
	t.Logf("shut down in %v with an idle HTTP/2 connection open", time.Since(start))
}

func TestConfigChecks(t *testing.T) {
	err := HTTP(context.Background(), Config{Logger: logr.Discard()}, echoHandler)
	if err == nil || !strings.Contains(err.Error(), "SharedDir") {
		t.Fatalf("HTTP without SharedDir: %v", err)
	}
	err = Run(context.Background(), Config{SharedDir: t.TempDir(), Logger: logr.Discard()}, func(*Host[echo.Echoer]) ([]Service, error) {
		return []Service{{Addr: "127.0.0.1:0"}}, nil
	})
	if err == nil || !strings.Contains(err.Error(), "no Server") {
		t.Fatalf("Run with a nil Server: %v", err)
	}
}

func TestRegisterFlags(t *testing.T) {
	var c Config
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	c.RegisterFlags(fs)
	args := []string{"-addr", ":1", "-addr-file", "/a", "-shared", "/s", "-plugin", "/s/p.so", "-digest", "sha256:d",
		"-max-versions", "3", "-max-extra-rss", "100", "-panic-threshold", "-1", "-drain-timeout", "5s", "-v", "2"}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	want := Config{Addr: ":1", AddrFile: "/a", SharedDir: "/s", PluginPath: "/s/p.so", PluginDigest: "sha256:d",
		MaxVersions: 3, MaxExtraRSSBytes: 100, PanicThreshold: -1, DrainTimeout: 5 * time.Second, Verbosity: 2}
	if c != want {
		t.Fatalf("after flags: %+v, want %+v", c, want)
	}
	var d Config
	d.RegisterFlags(flag.NewFlagSet("y", flag.ContinueOnError))
	if d.Addr != DefaultAddr || d.DrainTimeout != DefaultDrainTimeout {
		t.Fatalf("defaults: %+v", d)
	}
}
