package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/splice-dev/splice/examples/greeter/greeterbuild"
	"github.com/splice-dev/splice/host/control"
	"github.com/splice-dev/splice/internal/loopreg"
)

type config struct {
	clients     int
	duration    time.Duration
	transitions map[string]int
	keepAlive   bool
	modes       []string
	work        string
	keep        bool
	maxTotal    time.Duration
	hostBin     string

	stdout, stderr io.Writer
}

type result struct {
	mode        string
	requests    int64
	failed      int64
	errs        map[string]int
	lat         latencyStats
	toNew       []time.Duration
	notes       []string
	agent       []*agentTimes
	rssBefore   uint64
	rssAfter    uint64
	transitions atomic.Int64
	err         error
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "splice-bench:", err)
		os.Exit(1)
	}
}

// modeNames are the modes the benchmark knows, in the default order; hot-swap-socket is not
// run by default.
var modeNames = []string{"hot-swap", "re-exec", "cold", "hot-swap-socket"}

func newMode(name string) mode {
	switch name {
	case "hot-swap":
		return hotSwap{label: name, swapper: agentSwapper{}}
	case "hot-swap-socket":
		return hotSwap{label: name, swapper: controlSwapper{}}
	case "re-exec":
		return reexec{}
	case "cold":
		return cold{}
	}
	return nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := &config{transitions: map[string]int{}, stdout: stdout, stderr: stderr}
	fs := flag.NewFlagSet("splice-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var hot, reexecs, restarts int
	var modes string
	fs.IntVar(&cfg.clients, "clients", 50, "concurrent clients (1-500)")
	fs.DurationVar(&cfg.duration, "duration", 6*time.Second, "load duration per mode (at most 5m)")
	fs.IntVar(&hot, "hot-swaps", 10, "hot swaps during each hot-swap mode (at most 50)")
	fs.IntVar(&reexecs, "reexecs", 3, "re-execs during the re-exec mode (at most 50)")
	fs.IntVar(&restarts, "restarts", 3, "restarts during the cold mode (at most 50)")
	fs.BoolVar(&cfg.keepAlive, "keepalive", false, "reuse connections (default: every request on a fresh connection)")
	fs.StringVar(&modes, "modes", "hot-swap,re-exec,cold", "modes to run, in order: hot-swap (through the agent: registry pull, preflight, load+swap), "+
		"hot-swap-socket (load+swap on the host's control socket directly, builds already in place), re-exec, cold")
	fs.StringVar(&cfg.work, "work", "", "work directory (default: a new temporary directory, removed afterwards)")
	fs.BoolVar(&cfg.keep, "keep", false, "keep the work directory (host logs, builds)")
	fs.DurationVar(&cfg.maxTotal, "max-total", 15*time.Minute, "abort the whole run after this long, builds included")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	cfg.transitions = map[string]int{"hot-swap": hot, "hot-swap-socket": hot, "re-exec": reexecs, "cold": restarts}
	cfg.modes = strings.Split(modes, ",")
	if cfg.clients < 1 || cfg.clients > 500 || cfg.duration <= 0 || cfg.duration > 5*time.Minute {
		return errors.New("-clients must be 1-500 and -duration at most 5m: the benchmark is bounded")
	}
	if cfg.maxTotal <= 0 || cfg.maxTotal > time.Hour {
		return errors.New("-max-total must be positive and at most 1h: the benchmark is bounded")
	}
	n, agent := 0, false
	seen := map[string]bool{}
	for _, m := range cfg.modes {
		if newMode(m) == nil {
			return fmt.Errorf("unknown mode %q; choose from %s", m, strings.Join(modeNames, ", "))
		}
		if seen[m] {
			return fmt.Errorf("mode %q given twice", m)
		}
		seen[m] = true
		if t := cfg.transitions[m]; t < 1 || t > 50 {
			return fmt.Errorf("%s: transitions must be 1-50", m)
		}
		n = max(n, cfg.transitions[m])
		agent = agent || m == "hot-swap"
	}

	ctx, cancel := context.WithTimeout(ctx, cfg.maxTotal)
	defer cancel()

	if cfg.work == "" {
		dir, err := os.MkdirTemp("", "splice-bench-")
		if err != nil {
			return err
		}
		cfg.work = dir
		if !cfg.keep {
			defer os.RemoveAll(dir)
		}
	}
	root, err := greeterbuild.FindModuleRoot()
	if err != nil {
		return err
	}
	b := &greeterbuild.Builder{Root: root, Out: filepath.Join(cfg.work, "build")}
	cfg.logf("building the greeter host and %d plugin builds (unique plugin paths) into %s", n+1, b.Out)
	t0 := time.Now()
	if cfg.hostBin, err = b.Host(ctx); err != nil {
		return err
	}
	pool, err := buildPool(ctx, b, n+1)
	if err != nil {
		return err
	}
	cfg.logf("built in %.1fs", time.Since(t0).Seconds())

	if agent {
		reg, err := loopreg.Start()
		if err != nil {
			return err
		}
		defer reg.Close()
		t0 := time.Now()
		if err := pushPool(ctx, root, reg, pool[:cfg.transitions["hot-swap"]+1]); err != nil {
			return err
		}
		cfg.logf("pushed %d builds to the in-process registry at %s/%s in %.1fs", cfg.transitions["hot-swap"]+1, reg.Host, benchRepo, time.Since(t0).Seconds())
	}

	var results []*result
	for _, name := range cfg.modes {
		r := runMode(ctx, cfg, newMode(name), pool[:cfg.transitions[name]+1])
		results = append(results, r)
		if ctx.Err() != nil {
			break
		}
	}
	report(cfg, results)
	for _, r := range results {
		if r.err != nil {
			return fmt.Errorf("%s: %w", r.mode, r.err)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("stopped early: %w", err)
	}
	return nil
}

// buildPool builds n plugins alternating the v1 and v2 sources, each with its own nonce.
func buildPool(ctx context.Context, b *greeterbuild.Builder, n int) ([]*build, error) {
	pool := make([]*build, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 2)
	done := make(chan int)
	for i := 0; i < n; i++ {
		go func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			src := []string{"v1", "v2"}[i%2]
			var a *greeterbuild.Artifact
			a, errs[i] = b.Plugin(ctx, src, fmt.Sprintf("bench%d-%02d", os.Getpid(), i))
			pool[i] = &build{Artifact: a}
			done <- i
		}()
	}
	for k := 0; k < n; k++ {
		<-done
	}
	return pool, errors.Join(errs...)
}

func runMode(ctx context.Context, cfg *config, m mode, pool []*build) *result {
	r := &result{mode: m.name()}
	bn := &bench{cfg: cfg, dir: filepath.Join(cfg.work, m.name())}
	bn.shared = filepath.Join(bn.dir, "shared")
	bn.client = control.NewClient(filepath.Join(bn.shared, control.SocketName))
	startPath, startDigest, err := m.setup(ctx, bn, pool)
	if err != nil {
		r.err = err
		return r
	}
	cfg.logf("%s: starting host on %s", m.name(), filepath.Base(pool[0].Path))
	h, err := startHost(ctx, cfg.hostBin, bn.shared, "127.0.0.1:0", startPath, startDigest, filepath.Join(bn.dir, "host.log"))
	if err != nil {
		r.err = err
		return r
	}
	bn.host = h
	defer func() { bn.host.stop() }()
	r.rssBefore = rss(h.PID())

	g := startLoad(h.Addr(), cfg.clients, cfg.keepAlive)
	start := time.Now()
	progressDone := make(chan struct{})
	progressExited := make(chan struct{})
	go func() { progress(m.name(), cfg, g, start, &r.transitions, progressDone); close(progressExited) }()
	interval := cfg.duration / time.Duration(len(pool))
	for i := 1; i < len(pool) && ctx.Err() == nil; i++ {
		waitUntil(ctx, start.Add(time.Duration(i)*interval))
		art := pool[i]
		signalled := time.Now()
		st, err := m.transition(ctx, bn, art)
		if err != nil {
			r.err = fmt.Errorf("transition %d: %w", i, err)
			break
		}
		seen, ok := waitSeen(ctx, g, st.digest, 60*time.Second)
		if !ok {
			r.err = fmt.Errorf("transition %d: %s never answered", i, filepath.Base(art.Path))
			break
		}
		r.toNew = append(r.toNew, seen.Sub(signalled))
		if st.note != "" {
			r.notes = append(r.notes, st.note)
		}
		if st.agent != nil {
			r.agent = append(r.agent, st.agent)
		}
		r.transitions.Store(int64(i))
	}
	if m.name() == "re-exec" && r.err == nil {
		if st, err := bn.client.Status(ctx); err == nil && st.Handoff != nil {
			r.notes = append(r.notes, fmt.Sprintf("last hand-off: drain %.1f ms, exec to serving %.1f ms", 1000*st.Handoff.DrainSeconds, 1000*st.Handoff.ExecToServeSeconds))
		}
	}
	waitUntil(ctx, start.Add(cfg.duration))
	g.finish()
	close(progressDone)
	<-progressExited
	r.rssAfter = rss(bn.host.PID())
	r.requests, r.failed, r.errs = g.total.Load(), g.failed.Load(), g.errs
	r.lat = percentiles(g.latencies)
	return r
}

func waitUntil(ctx context.Context, t time.Time) {
	select {
	case <-ctx.Done():
	case <-time.After(time.Until(t)):
	}
}

func waitSeen(ctx context.Context, g *loadGen, digest string, timeout time.Duration) (time.Time, bool) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if t, ok := g.seen(digest); ok {
			return t, true
		}
		time.Sleep(200 * time.Microsecond)
	}
	return time.Time{}, false
}

// progress prints a status line every second: rewritten in place on a terminal, one line per
// second otherwise (logs, CI).
func progress(name string, cfg *config, g *loadGen, start time.Time, transitions *atomic.Int64, done <-chan struct{}) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	lead, end := "\r", ""
	if f, ok := cfg.stderr.(*os.File); !ok || !isTerminal(f) {
		lead, end = "", "\n"
	}
	for {
		select {
		case <-done:
			if lead != "" {
				fmt.Fprintln(cfg.stderr)
			}
			return
		case <-tick.C:
			fmt.Fprintf(cfg.stderr, "%s  %-15s %4.1fs/%s  requests %7d  failed %5d  transitions %d/%d %s",
				lead, name, time.Since(start).Seconds(), cfg.duration, g.total.Load(), g.failed.Load(), transitions.Load(), cfg.transitions[name], end)
		}
	}
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// Headings of the report's sections (the test finds the tables by them).
const (
	agentHeading = "through the agent, per transition"
)

func report(cfg *config, results []*result) {
	out := cfg.stdout
	conn := "a fresh connection per request"
	if cfg.keepAlive {
		conn = "keep-alive connections"
	}
	fmt.Fprintf(out, "\nsplice-bench: %d clients, POST /greet on %s, %s per mode, 127.0.0.1\n\n", cfg.clients, conn, cfg.duration)
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "mode\ttransitions\trequests\tfailed\tp50\tp99\tmax\tto new version p50\tp99\tmax\tRSS before\tRSS after\t")
	for _, r := range results {
		tn := percentiles(r.toNew)
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.mode, r.transitions.Load(), r.requests, r.failed,
			ms(r.lat.p50), ms(r.lat.p99), ms(r.lat.max), ms(tn.p50), ms(tn.p99), ms(tn.max), mib(r.rssBefore), mib(r.rssAfter))
	}
	w.Flush()
	fmt.Fprintln(out)
	for _, r := range results {
		if r.err != nil {
			fmt.Fprintf(out, "%s: ERROR %v\n", r.mode, r.err)
		}
		if len(r.errs) > 0 {
			keys := make([]string, 0, len(r.errs))
			for k := range r.errs {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var parts []string
			for _, k := range keys {
				parts = append(parts, fmt.Sprintf("%s ×%d", k, r.errs[k]))
			}
			fmt.Fprintf(out, "%s failures: %s\n", r.mode, strings.Join(parts, ", "))
		}
		if len(r.notes) > 0 {
			fmt.Fprintf(out, "%s: %s\n", r.mode, strings.Join(compact(r.notes), "; "))
		}
	}
	for _, r := range results {
		if len(r.agent) > 0 {
			agentReport(out, r)
		}
	}
	fmt.Fprintln(out, "\n(to new version: from sending the swap / re-exec request / SIGTERM to the first answer from the new build;")
	fmt.Fprintf(out, " clients pause %v after a failed request)\n", failurePause)
}

// agentReport prints what the agent's pipeline measured for every transition of a mode, and
// the median and maximum of each step.
func agentReport(out io.Writer, r *result) {
	fmt.Fprintf(out, "\n%s %s (agent-measured, but host load+swap: the host's own record):\n\n", r.mode, agentHeading)
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "#\tto\tpull\tpreflight\tload+swap\thost load+swap\tto new version\t")
	var pull, pre, ls, hs []time.Duration
	for i, a := range r.agent {
		tn := time.Duration(0)
		if i < len(r.toNew) {
			tn = r.toNew[i]
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t\n", i+1, a.to, ms(a.pull), ms(a.preflight), ms(a.loadSwap), ms(a.hostSwap), ms(tn))
		pull, pre, ls, hs = append(pull, a.pull), append(pre, a.preflight), append(ls, a.loadSwap), append(hs, a.hostSwap)
	}
	tn := percentiles(r.toNew)
	p := percentiles
	fmt.Fprintf(w, "p50\t\t%s\t%s\t%s\t%s\t%s\t\n", ms(p(pull).p50), ms(p(pre).p50), ms(p(ls).p50), ms(p(hs).p50), ms(tn.p50))
	fmt.Fprintf(w, "max\t\t%s\t%s\t%s\t%s\t%s\t\n", ms(p(pull).max), ms(p(pre).max), ms(p(ls).max), ms(p(hs).max), ms(tn.max))
	w.Flush()
	fmt.Fprintln(out, "\n(pull: registry to shared directory, digest verified; preflight: host facts, facts of every plugin")
	fmt.Fprintln(out, " the host tried, and the check; load+swap: the agent's load-and-swap control request, round trip)")
}

// compact keeps notes short: at most the first three and the last.
func compact(notes []string) []string {
	if len(notes) <= 4 {
		return notes
	}
	return append(slices.Clone(notes[:3]), "...", notes[len(notes)-1])
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }

func mib(b uint64) string { return fmt.Sprintf("%.1fMiB", float64(b)/(1<<20)) }

func (c *config) logf(format string, args ...any) { fmt.Fprintf(c.stderr, format+"\n", args...) }
