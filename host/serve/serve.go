package serve

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"

	"github.com/splice-dev/splice/host"
	"github.com/splice-dev/splice/host/control"
)

// readHeaderTimeout is set on servers that have none (and on the control server).
const readHeaderTimeout = 10 * time.Second

// Host is what the application's services are built from: the slot they call, the hand-off
// and the configuration with its defaults filled in.
type Host[T any] struct {
	Slot    *host.Slot[T]
	Handoff *host.Handoff
	Log     logr.Logger
	Config  Config
}

// Generation is the number of re-execs before this image: 0 at a cold start.
func (h *Host[T]) Generation() int { return h.Handoff.Status().Generation }

// Service is one listener and the server on it.
type Service struct {
	// Name appears in logs. Default: Network:Addr.
	Name string
	// Network is "tcp" (default) or "unix".
	Network string
	// Addr is the address to listen on. Default Config.Addr.
	Addr string
	// Server serves the listener through Handoff.Serve, which chains its ConnState,
	// ConnContext and Handler (see there). A zero ReadHeaderTimeout becomes 10 seconds; an
	// HTTP/2-cleartext server's zero IdleTimeout becomes a third of Config.DrainTimeout.
	Server *http.Server
}

// H2C returns a server for h speaking HTTP/1 and HTTP/2 over cleartext (prior knowledge), the
// way a gRPC client connects: pass a *grpc.Server as h.
func H2C(h http.Handler) *http.Server {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return &http.Server{Handler: h, Protocols: &p, ReadHeaderTimeout: readHeaderTimeout}
}

// HTTP serves the handler built by handler on Config.Addr, with the control socket in
// Config.SharedDir, until ctx ends or SIGTERM/SIGINT arrives (then it drains and returns nil)
// or a server fails. SIGHUP re-execs in place. See the package documentation for the order.
func HTTP[T any](ctx context.Context, cfg Config, handler func(*Host[T]) http.Handler) error {
	return Run(ctx, cfg, func(h *Host[T]) ([]Service, error) {
		return []Service{{Server: &http.Server{Handler: handler(h)}}}, nil
	})
}

// Run is the generic entry point: services builds the listeners and their servers once the
// slot exists (and, after a re-exec, serves the versions restored). It returns as HTTP does.
func Run[T any](ctx context.Context, cfg Config, services func(*Host[T]) ([]Service, error)) error {
	h, ctl, err := setup[T](cfg)
	if err != nil {
		return err
	}
	svcs, err := services(h)
	if err != nil {
		return err
	}
	if err := h.check(svcs); err != nil {
		return err
	}
	lns, err := h.listen(svcs)
	if err != nil {
		h.abandon()
		return err
	}
	ctlSrv := &http.Server{Handler: ctl, ReadHeaderTimeout: readHeaderTimeout}
	servers := make([]*http.Server, 0, len(svcs)+1)
	for _, s := range svcs {
		servers = append(servers, s.Server)
	}
	servers = append(servers, ctlSrv)
	errc := make(chan error, len(servers))
	for i, srv := range servers {
		go func() { errc <- h.Handoff.Serve(srv, lns[i]) }()
	}
	h.Log.Info("serving", "addr", lns[0].Addr().String(), "services", len(svcs), "shared", h.Config.SharedDir,
		"pid", os.Getpid(), "generation", h.Generation())
	return h.untilDone(ctx, errc, servers)
}

// setup creates the hand-off, the slot and the control handler, and loads the initial plugin
// at a cold start.
func setup[T any](cfg Config) (*Host[T], http.Handler, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, nil, err
	}
	log := cfg.Logger
	handoff, err := host.NewHandoff(host.HandoffOptions{Logger: log, DrainTimeout: cfg.DrainTimeout})
	if err != nil {
		return nil, nil, err
	}
	// New restores the serving versions when this image comes from a re-exec, so it runs
	// before any listener is served.
	slot, err := host.New[T](cfg.slotOptions(handoff))
	if err != nil {
		return nil, nil, err
	}
	ctl, err := host.NewControlHandler(slot, host.ControlOptions{SharedDir: cfg.SharedDir, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	h := &Host[T]{Slot: slot, Handoff: handoff, Log: log, Config: cfg}
	if !handoff.Inherited() && cfg.PluginPath != "" {
		if err := h.loadInitial(); err != nil {
			return nil, nil, err
		}
	}
	return h, ctl, nil
}

// loadInitial serves Config.PluginPath at a cold start.
func (h *Host[T]) loadInitial() error {
	path, digest := h.Config.PluginPath, h.Config.PluginDigest
	if digest == "" {
		var err error
		if digest, err = control.FileDigest(path); err != nil {
			return fmt.Errorf("initial plugin: %w", err)
		}
	}
	if _, _, err := h.Slot.LoadAndSwap(context.Background(), path, digest, host.SwapOptions{AllowMinor: true}); err != nil {
		return fmt.Errorf("initial plugin: %w", err)
	}
	h.Log.Info("initial plugin serving", "path", path, "digest", digest)
	return nil
}

// check validates the services and fills their defaults.
func (h *Host[T]) check(svcs []Service) error {
	if len(svcs) == 0 {
		return errors.New("serve: no service to serve")
	}
	for i := range svcs {
		s := &svcs[i]
		s.Network = cmp.Or(s.Network, "tcp")
		s.Addr = cmp.Or(s.Addr, h.Config.Addr)
		s.Name = cmp.Or(s.Name, s.Network+":"+s.Addr)
		if s.Server == nil {
			return fmt.Errorf("serve: service %s has no Server", s.Name)
		}
		if s.Server.ReadHeaderTimeout == 0 {
			s.Server.ReadHeaderTimeout = readHeaderTimeout
		}
		if p := s.Server.Protocols; p != nil && p.UnencryptedHTTP2() && s.Server.IdleTimeout == 0 {
			s.Server.IdleTimeout = h.Config.DrainTimeout / 3
		}
	}
	return nil
}

// listen opens every service's listener, then the control socket's, through the hand-off,
// and writes Config.AddrFile. The control listener is last in the result.
func (h *Host[T]) listen(svcs []Service) ([]net.Listener, error) {
	lns := make([]net.Listener, 0, len(svcs)+1)
	for _, s := range svcs {
		ln, err := h.Handoff.Listen(s.Network, s.Addr)
		if err != nil {
			return nil, fmt.Errorf("serve: service %s: %w", s.Name, err)
		}
		lns = append(lns, ln)
	}
	ctlLn, err := host.ListenControl(h.Handoff, h.Config.SharedDir)
	if err != nil {
		return nil, err
	}
	lns = append(lns, ctlLn)
	if f := h.Config.AddrFile; f != "" {
		if err := writeFileAtomic(f, lns[0].Addr().String()); err != nil {
			return nil, err
		}
	}
	return lns, nil
}

// abandon closes what listen opened when Run fails before serving.
func (h *Host[T]) abandon() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := h.Handoff.Shutdown(ctx); err != nil {
		h.Log.Error(err, "closing listeners")
	}
}

// untilDone re-execs on SIGHUP and shuts down on SIGTERM, SIGINT or the end of ctx, or when a
// server stops.
func (h *Host[T]) untilDone(ctx context.Context, errc <-chan error, servers []*http.Server) error {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	for {
		select {
		case err := <-errc:
			h.Log.Error(err, "a server stopped; shutting down")
			return errors.Join(fmt.Errorf("serve: server stopped: %w", err), h.shutdown(servers))
		case <-ctx.Done():
			h.Log.Info("shutting down", "cause", context.Cause(ctx).Error())
			return h.shutdown(servers)
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				go h.reexec("SIGHUP")
				continue
			}
			h.Log.Info("shutting down", "signal", sig.String())
			return h.shutdown(servers)
		}
	}
}

// reexec re-execs in place keeping the current version; it logs why when it did not happen.
func (h *Host[T]) reexec(reason string) {
	err := h.Slot.Reexec(context.Background(), host.ReexecTarget{}, reason)
	h.Log.Error(err, "re-exec did not happen; serving on", "reason", reason)
}

// shutdown drains every server within Config.DrainTimeout: each server's Shutdown (HTTP/1
// idle connections closed, HTTP/2 connections sent GOAWAY), and the hand-off's, which closes
// the listeners it holds and waits for every connection to close.
func (h *Host[T]) shutdown(servers []*http.Server) error {
	ctx, cancel := context.WithTimeout(context.Background(), h.Config.DrainTimeout)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, srv := range servers {
		wg.Go(func() {
			// The hand-off closes the listeners too: whoever comes second gets net.ErrClosed.
			if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, net.ErrClosed) {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	herr := h.Handoff.Shutdown(ctx)
	wg.Wait()
	if err := errors.Join(append(errs, herr)...); err != nil {
		return fmt.Errorf("serve: shutdown: %w", err)
	}
	h.Log.Info("shut down")
	return nil
}

func writeFileAtomic(path, content string) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
