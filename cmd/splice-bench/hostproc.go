package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/splice-dev/splice/examples/greeter/greeterproc"
)

// hostProc is a greeter host the benchmark started, with its log file.
type hostProc struct {
	*greeterproc.Host
	log *os.File
}

// startHost starts the greeter host serving plugin on addr (port 0: any), its output appended
// to logPath, and waits until it answers.
func startHost(ctx context.Context, bin, shared, addr, plugin, digest, logPath string) (*hostProc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	h, err := greeterproc.Start(ctx, greeterproc.Options{Bin: bin, Shared: shared, Addr: addr, Plugin: plugin, Digest: digest, Output: logf})
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("%w; see %s", err, logPath)
	}
	return &hostProc{Host: h, log: logf}, nil
}

// stop stops the host (SIGTERM: it drains and exits; killed if still running after
// greeterproc.StopTimeout) and closes its log.
func (h *hostProc) stop() {
	h.Stop()
	h.log.Close()
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
