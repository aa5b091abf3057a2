package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// hostProc is a greeter host the benchmark started.
type hostProc struct {
	cmd    *exec.Cmd
	pid    int
	addr   string
	exited chan struct{}
	log    *os.File
}

// startHost starts the greeter host serving plugin on addr (port 0: any) and waits until it
// answers.
func startHost(ctx context.Context, bin, shared, addr, plugin, digest, logPath string) (*hostProc, error) {
	addrFile := filepath.Join(filepath.Dir(logPath), "addr")
	os.Remove(addrFile)
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-addr", addr, "-addr-file", addrFile, "-shared", shared, "-plugin", plugin, "-digest", digest)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start host: %w", err)
	}
	h := &hostProc{cmd: cmd, pid: cmd.Process.Pid, exited: make(chan struct{}), log: logf}
	go func() { cmd.Wait(); close(h.exited) }()
	deadline := time.Now().Add(60 * time.Second)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for {
		select {
		case <-h.exited:
			return nil, fmt.Errorf("host exited during start-up; see %s", logPath)
		case <-ctx.Done():
			h.stop()
			return nil, ctx.Err()
		default:
		}
		if time.Now().After(deadline) {
			h.stop()
			return nil, fmt.Errorf("host not serving after 60s; see %s", logPath)
		}
		if b, err := os.ReadFile(addrFile); err == nil && len(b) > 0 {
			h.addr = string(b)
			if resp, err := c.Get("http://" + h.addr + "/healthz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return h, nil
				}
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stop sends SIGTERM (the host drains and exits) and kills it if it has not exited in 30s.
func (h *hostProc) stop() {
	defer h.log.Close()
	select {
	case <-h.exited:
		return
	default:
	}
	h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.exited:
	case <-time.After(30 * time.Second):
		h.cmd.Process.Kill()
		<-h.exited
	}
}

// rss returns a process's resident set size from /proc/<pid>/status, or 0.
func rss(pid int) uint64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, _ := strconv.ParseUint(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}
