package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/go-logr/logr"

	"github.com/splice-dev/splice/examples/greeter"
	"github.com/splice-dev/splice/host"
	"github.com/splice-dev/splice/host/control"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "greeter:", err)
		os.Exit(1)
	}
}

// flags are the command line.
type flags struct {
	addr, addrFile, shared   string
	pluginPath, pluginDigest string
	maxVersions              int
	maxExtraRSS              uint64
	panicThreshold, verbose  int
	drainTimeout             time.Duration
	apiVersion               string
}

func parseFlags() (flags, error) {
	var f flags
	flag.StringVar(&f.addr, "addr", "127.0.0.1:8080", "TCP address to serve greetings on")
	flag.StringVar(&f.addrFile, "addr-file", "", "write the bound address here once listening (for -addr with port 0)")
	flag.StringVar(&f.shared, "shared", "", "directory shared with the agent: control socket and plugin files (required)")
	flag.StringVar(&f.pluginPath, "plugin", "", "plugin file to load and serve at a cold start (must be inside -shared)")
	flag.StringVar(&f.pluginDigest, "digest", "", "digest naming -plugin (default: sha256 of the file)")
	flag.IntVar(&f.maxVersions, "max-versions", 0, "re-exec after a swap once more plugin files than this were opened (0: never)")
	flag.Uint64Var(&f.maxExtraRSS, "max-extra-rss", 0, "re-exec after a swap once RSS exceeds the start by this many bytes (0: never)")
	flag.IntVar(&f.panicThreshold, "panic-threshold", 0, "panics of a version before automatic rollback (0: library default, <0: never)")
	flag.DurationVar(&f.drainTimeout, "drain-timeout", 30*time.Second, "longest wait for connections to close before a re-exec")
	flag.IntVar(&f.verbose, "v", 0, "log verbosity")
	// The major-API-change drill: an image whose host declares contract 2.0.0 stands for a host
	// rebuilt against a new major version of the contract; the drills/major plugin declares the
	// same. The contract package itself is shared and unchanged, as package hashes require.
	flag.StringVar(&f.apiVersion, "api-version", greeter.APIVersion, "plugin API version this host declares it was built against (drill: 2.0.0)")
	flag.Parse()
	if f.shared == "" {
		return f, errors.New("-shared is required: the directory holding the control socket and plugin files")
	}
	return f, nil
}

func run() error {
	f, err := parseFlags()
	if err != nil {
		return err
	}
	log := logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.Level(-f.verbose)}))

	handoff, err := host.NewHandoff(host.HandoffOptions{Logger: log, DrainTimeout: f.drainTimeout})
	if err != nil {
		return err
	}
	// New restores the serving version when this image comes from a re-exec, so it runs
	// before any listener is served.
	slot, err := host.New[greeter.Greeter](host.Options{
		Logger:           log,
		APIVersion:       f.apiVersion,
		PanicThreshold:   f.panicThreshold,
		MaxVersions:      f.maxVersions,
		MaxExtraRSSBytes: f.maxExtraRSS,
		Handoff:          handoff,
	})
	if err != nil {
		return err
	}
	ctl, err := host.NewControlHandler(slot, host.ControlOptions{SharedDir: f.shared, Logger: log})
	if err != nil {
		return err
	}
	if !handoff.Inherited() && f.pluginPath != "" {
		if err := loadInitial(slot, f.pluginPath, f.pluginDigest); err != nil {
			return err
		}
	}

	ln, err := handoff.Listen("tcp", f.addr)
	if err != nil {
		return err
	}
	ctlLn, err := host.ListenControl(handoff, f.shared)
	if err != nil {
		return err
	}
	if f.addrFile != "" {
		if err := writeFileAtomic(f.addrFile, ln.Addr().String()); err != nil {
			return err
		}
	}

	errc := make(chan error, 2)
	app := &http.Server{Handler: handler(slot, handoff), ReadHeaderTimeout: 10 * time.Second}
	go func() { errc <- handoff.Serve(app, ln) }()
	ctlSrv := &http.Server{Handler: ctl, ReadHeaderTimeout: 10 * time.Second}
	go func() { errc <- handoff.Serve(ctlSrv, ctlLn) }()
	log.Info("greeter serving", "addr", ln.Addr().String(), "shared", f.shared, "pid", os.Getpid(), "generation", handoff.Status().Generation)
	return serveUntilSignal(log, slot, handoff, errc, f.drainTimeout)
}

// loadInitial serves the plugin given on the command line at a cold start (a re-exec
// restores what served before instead).
func loadInitial(slot *host.Slot[greeter.Greeter], path, digest string) error {
	if digest == "" {
		var err error
		if digest, err = fileDigest(path); err != nil {
			return err
		}
	}
	if _, _, err := slot.LoadAndSwap(context.Background(), path, digest, host.SwapOptions{AllowMinor: true}); err != nil {
		return fmt.Errorf("initial plugin: %w", err)
	}
	return nil
}

// serveUntilSignal re-execs on SIGHUP and shuts down on SIGTERM or SIGINT, or returns when a
// server stops.
func serveUntilSignal(log logr.Logger, slot *host.Slot[greeter.Greeter], handoff *host.Handoff, errc <-chan error, drainTimeout time.Duration) error {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	for {
		select {
		case err := <-errc:
			return fmt.Errorf("server stopped: %w", err)
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				go func() {
					err := slot.Reexec(context.Background(), host.ReexecTarget{}, "SIGHUP")
					log.Error(err, "re-exec on SIGHUP did not happen")
				}()
				continue
			}
			log.Info("shutting down", "signal", sig.String())
			ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
			defer cancel()
			return handoff.Shutdown(ctx)
		}
	}
}

func handler(slot *host.Slot[greeter.Greeter], h *host.Handoff) http.Handler {
	pid := strconv.Itoa(os.Getpid())
	gen := strconv.Itoa(h.Status().Generation)
	mux := http.NewServeMux()
	mux.HandleFunc("/greet", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Host-PID", pid)
		w.Header().Set("X-Host-Generation", gen)
		var name string
		switch r.Method {
		case http.MethodGet:
			name = r.URL.Query().Get("name")
		case http.MethodPost:
			b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1024))
			if err != nil {
				http.Error(w, "body: "+err.Error(), http.StatusRequestEntityTooLarge)
				return
			}
			name = string(b)
		default:
			http.Error(w, "GET or POST", http.StatusMethodNotAllowed)
			return
		}
		key := r.Header.Get("X-Request-Key")
		if key == "" {
			key = name
		}
		var msg string
		err := slot.CallVersion(key, func(g greeter.Greeter, v *host.Version) error {
			w.Header().Set("X-Plugin-Version", g.Release())
			w.Header().Set("X-Plugin-Digest", v.Digest())
			var err error
			msg, err = g.Greet(name)
			return err
		})
		var perr *host.PanicError
		switch {
		case errors.Is(err, host.ErrNoVersion):
			http.Error(w, "no plugin version loaded yet", http.StatusServiceUnavailable)
		case errors.As(err, &perr):
			http.Error(w, "plugin panicked (recovered and counted)", http.StatusInternalServerError)
		case err != nil:
			http.Error(w, "plugin: "+err.Error(), http.StatusInternalServerError)
		default:
			io.WriteString(w, msg+"\n")
		}
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if slot.Current() == nil {
			http.Error(w, "no plugin version loaded yet", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	return mux
}

func fileDigest(path string) (string, error) {
	return control.FileDigest(path)
}

func writeFileAtomic(path, content string) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return os.Rename(tmp, path)
}
