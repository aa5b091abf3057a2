// Package greeterproc runs the greeter example's host binary (examples/greeter/cmd/greeter, as
// greeterbuild builds it) as a child process and talks to it the way its clients do: Start
// launches it and returns once it serves, Host watches and stops it, and Greet sends one
// POST /greet and reads the answer's headers.
//
// It is shared by the example's end-to-end tests, the agent's suite and the benchmark, which
// keep only their own glue (cleanup, assertions, logs) around it. It never fails a test
// itself: every problem is returned as an error.
package greeterproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// StopTimeout is how long Stop waits for the host to drain and exit after SIGTERM before it
// kills it.
const StopTimeout = 30 * time.Second

// Options say how to start a host.
type Options struct {
	// Bin is the host binary.
	Bin string
	// Shared is the directory shared with the agent (-shared): the control socket and the
	// plugin files. The host also writes its address to a file named "addr" in it.
	Shared string
	// Addr is the TCP address to serve greetings on (-addr); "" means 127.0.0.1:0.
	Addr string
	// Plugin and Digest name the version the host starts serving (-plugin, -digest).
	Plugin, Digest string
	// Args are more flags, after the others.
	Args []string
	// Output receives the host's stdout and stderr; nil discards them.
	Output io.Writer
}

// Host is a greeter host running as a child process.
type Host struct {
	cmd    *exec.Cmd
	addr   string
	exited chan struct{}
}

// Start starts a host and waits until it has written its address and GET /healthz answers 200
// (a plugin serves). If the host exits first, or ctx ends first, Start returns an error and
// leaves no process behind.
func Start(ctx context.Context, o Options) (*Host, error) {
	if o.Bin == "" || o.Shared == "" {
		return nil, errors.New("greeterproc: Options.Bin and Options.Shared are required")
	}
	addr := o.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	// A file left by an earlier host would name an address nobody may be serving yet.
	addrFile := filepath.Join(o.Shared, "addr")
	if err := os.Remove(addrFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	args := append([]string{"-addr", addr, "-addr-file", addrFile, "-shared", o.Shared,
		"-plugin", o.Plugin, "-digest", o.Digest}, o.Args...)
	cmd := exec.Command(o.Bin, args...)
	cmd.Stdout, cmd.Stderr = o.Output, o.Output
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start greeter host: %w", err)
	}
	h := &Host{cmd: cmd, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(h.exited) }()
	if err := h.waitServing(ctx, addrFile); err != nil {
		h.Stop()
		return nil, err
	}
	return h, nil
}

// waitServing polls until the host serves at the address it wrote.
func (h *Host) waitServing(ctx context.Context, addrFile string) error {
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	for {
		why := "it wrote no address to " + addrFile
		if b, err := os.ReadFile(addrFile); err == nil && len(b) > 0 {
			err := healthy(ctx, c, string(b))
			if err == nil {
				h.addr = string(b)
				return nil
			}
			why = err.Error()
		}
		select {
		case <-h.exited:
			return fmt.Errorf("greeter host exited during start-up (%v)", h.cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("greeter host (pid %d) not serving: %w; last: %s", h.PID(), ctx.Err(), why)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// healthy says whether GET /healthz at addr answers 200.
func healthy(ctx context.Context, c *http.Client, addr string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /healthz: status %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return nil
}

// Addr is the address the host serves greetings on, as it wrote it.
func (h *Host) Addr() string { return h.addr }

// PID is the host's process ID (a re-exec keeps it).
func (h *Host) PID() int { return h.cmd.Process.Pid }

// Exited is closed once the process has exited.
func (h *Host) Exited() <-chan struct{} { return h.exited }

// Alive says whether the process is still running.
func (h *Host) Alive() bool {
	select {
	case <-h.exited:
		return false
	default:
		return true
	}
}

// Signal sends sig to the process.
func (h *Host) Signal(sig os.Signal) error { return h.cmd.Process.Signal(sig) }

// Stop sends SIGTERM (the host drains and exits), kills the process if it has not exited
// within StopTimeout, and returns once it has exited. It does nothing to a host that exited.
func (h *Host) Stop() {
	if !h.Alive() {
		return
	}
	h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.exited:
	case <-time.After(StopTimeout):
		h.cmd.Process.Kill()
		<-h.exited
	}
}

// ProcessState describes how the process exited; nil while it runs.
func (h *Host) ProcessState() *os.ProcessState {
	if h.Alive() {
		return nil
	}
	return h.cmd.ProcessState
}

// ExitCode is the process's exit status: -1 while it runs or if a signal ended it.
func (h *Host) ExitCode() int { return h.ProcessState().ExitCode() }

// Answer is the host's reply to one POST /greet. Err is set when there was no complete reply;
// the rest then holds what arrived.
type Answer struct {
	Status     int
	Version    string // X-Plugin-Version: the plugin's release
	Digest     string // X-Plugin-Digest: the version's digest
	PID        string // X-Host-PID
	Generation string // X-Host-Generation: re-execs so far
	Body       string
	Err        error
}

// OneShot is a client that opens a connection of its own for every request, with a 30 s
// timeout.
var OneShot = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}

// Greet sends name in a POST /greet to the host at addr through c, with key as its
// X-Request-Key (the canary routing key) unless it is "".
func Greet(c *http.Client, addr, name, key string) Answer {
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/greet", strings.NewReader(name))
	if err != nil {
		return Answer{Err: err}
	}
	req.Header.Set("Content-Type", "text/plain")
	if key != "" {
		req.Header.Set("X-Request-Key", key)
	}
	resp, err := c.Do(req)
	if err != nil {
		return Answer{Err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return Answer{
		Status: resp.StatusCode, Version: resp.Header.Get("X-Plugin-Version"), Digest: resp.Header.Get("X-Plugin-Digest"),
		PID: resp.Header.Get("X-Host-PID"), Generation: resp.Header.Get("X-Host-Generation"), Body: string(b), Err: err,
	}
}
