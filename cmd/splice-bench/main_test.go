package main

import (
	"bufio"
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestBenchTiny runs the benchmark in a tiny configuration — every mode, 2 clients, 1
// transition each, 2 s per mode — and checks its own report: every mode made its transition,
// no hot swap (through the agent or on the bare socket) failed a request, and the agent's
// timings are there.
func TestBenchTiny(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the greeter host and plugins and runs real processes; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, []string{
		"-clients", "2", "-duration", "2s", "-hot-swaps", "1", "-reexecs", "1", "-restarts", "1",
		"-modes", "hot-swap,hot-swap-socket,re-exec,cold", "-max-total", "9m", "-work", t.TempDir(),
	}, &stdout, &stderr)
	t.Logf("stderr:\n%s", stderr.String())
	t.Logf("stdout:\n%s", stdout.String())
	if err != nil {
		t.Fatalf("run: %v", err)
	}

	rows, agent := parseReport(t, stdout.String())
	for _, m := range []string{"hot-swap", "hot-swap-socket", "re-exec", "cold"} {
		row, ok := rows[m]
		if !ok {
			t.Fatalf("no row for mode %s in the report", m)
		}
		if row.transitions != 1 {
			t.Errorf("%s: %d transitions, want 1", m, row.transitions)
		}
		if row.requests <= 0 {
			t.Errorf("%s: %d requests", m, row.requests)
		}
		if row.toNew <= 0 {
			t.Errorf("%s: time to new version %v", m, row.toNew)
		}
		if row.rssBefore <= 0 || row.rssAfter <= 0 {
			t.Errorf("%s: RSS %v -> %v MiB", m, row.rssBefore, row.rssAfter)
		}
	}
	for _, m := range []string{"hot-swap", "hot-swap-socket"} {
		if f := rows[m].failed; f != 0 {
			t.Errorf("%s: %d failed requests, want 0", m, f)
		}
	}
	if len(agent) != 1 {
		t.Fatalf("%d per-transition agent rows, want 1", len(agent))
	}
	a := agent[0]
	if a.to == "" || a.pull <= 0 || a.preflight <= 0 || a.loadSwap <= 0 || a.hostSwap <= 0 {
		t.Errorf("agent timings incomplete: %+v", a)
	}
	if a.hostSwap > a.loadSwap {
		t.Errorf("the host's load+swap (%v) is longer than the agent's round trip around it (%v)", a.hostSwap, a.loadSwap)
	}
}

type modeRow struct {
	transitions, requests, failed int64
	toNew                         time.Duration
	rssBefore, rssAfter           float64
}

// parseReport reads the main table (one row per mode) and the agent's per-transition table.
func parseReport(t *testing.T, out string) (map[string]modeRow, []agentTimes) {
	t.Helper()
	rows := map[string]modeRow{}
	var agent []agentTimes
	section := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
			continue
		case f[0] == "mode" && len(f) > 1 && f[1] == "transitions":
			section = "modes"
			continue
		case strings.Contains(line, agentHeading):
			section = "agent"
			continue
		case f[0] == "#" && section == "agent":
			continue
		}
		switch section {
		case "modes":
			// mode transitions requests failed p50 p99 max, to new version p50 p99 max, RSS before after
			if len(f) != 12 {
				section = ""
				continue
			}
			rows[f[0]] = modeRow{
				transitions: atoi(t, f[1]), requests: atoi(t, f[2]), failed: atoi(t, f[3]),
				toNew:     dur(t, f[7]),
				rssBefore: mibs(t, f[10]), rssAfter: mibs(t, f[11]),
			}
		case "agent":
			if len(f) != 7 || f[0] == "p50" || f[0] == "max" {
				if f[0] == "max" {
					section = ""
				}
				continue
			}
			atoi(t, f[0])
			agent = append(agent, agentTimes{to: f[1], pull: dur(t, f[2]), preflight: dur(t, f[3]), loadSwap: dur(t, f[4]), hostSwap: dur(t, f[5])})
		}
	}
	return rows, agent
}

func atoi(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("report: %q is not a count", s)
	}
	return n
}

func dur(t *testing.T, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("report: %q is not a duration: %v", s, err)
	}
	return d
}

func mibs(t *testing.T, s string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(strings.TrimSuffix(s, "MiB"), 64)
	if err != nil || !strings.HasSuffix(s, "MiB") {
		t.Fatalf("report: %q is not a size in MiB", s)
	}
	return v
}
