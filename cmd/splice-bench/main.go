package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
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
}

type result struct {
	mode        string
	requests    int64
	failed      int64
	errs        map[string]int
	lat         latencyStats
	toNew       []time.Duration
	notes       []string
	rssBefore   uint64
	rssAfter    uint64
	transitions atomic.Int64
	err         error
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "splice-bench:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg := &config{transitions: map[string]int{}}
	var hot, reexecs, restarts int
	var modes string
	flag.IntVar(&cfg.clients, "clients", 50, "concurrent clients (1-500)")
	flag.DurationVar(&cfg.duration, "duration", 6*time.Second, "load duration per mode (at most 5m)")
	flag.IntVar(&hot, "hot-swaps", 10, "hot swaps during the hot-swap mode (at most 50)")
	flag.IntVar(&reexecs, "reexecs", 3, "re-execs during the re-exec mode (at most 50)")
	flag.IntVar(&restarts, "restarts", 3, "restarts during the cold mode (at most 50)")
	flag.BoolVar(&cfg.keepAlive, "keepalive", false, "reuse connections (default: every request on a fresh connection)")
	flag.StringVar(&modes, "modes", "hot-swap,re-exec,cold", "modes to run, in order")
	flag.StringVar(&cfg.work, "work", "", "work directory (default: a new temporary directory, removed afterwards)")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the work directory (host logs, builds)")
	flag.DurationVar(&cfg.maxTotal, "max-total", 15*time.Minute, "abort the whole run after this long, builds included")
	flag.Parse()
	cfg.transitions = map[string]int{"hot-swap": hot, "re-exec": reexecs, "cold": restarts}
	cfg.modes = strings.Split(modes, ",")
	if cfg.clients < 1 || cfg.clients > 500 || cfg.duration <= 0 || cfg.duration > 5*time.Minute {
		return errors.New("-clients must be 1-500 and -duration at most 5m: the benchmark is bounded")
	}
	all := map[string]mode{"hot-swap": hotSwap{swapper: controlSwapper{}}, "re-exec": reexec{}, "cold": cold{}}
	n := 0
	for _, m := range cfg.modes {
		if all[m] == nil {
			return fmt.Errorf("unknown mode %q; choose from hot-swap, re-exec, cold", m)
		}
		if t := cfg.transitions[m]; t < 1 || t > 50 {
			return fmt.Errorf("%s: transitions must be 1-50", m)
		}
		n = max(n, cfg.transitions[m])
	}

	ctx, cancel := context.WithTimeout(context.Background(), cfg.maxTotal)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

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
	logf("building the greeter host and %d plugin builds (unique plugin paths) into %s", n+1, b.Out)
	t0 := time.Now()
	if cfg.hostBin, err = b.Host(ctx); err != nil {
		return err
	}
	pool, err := buildPool(ctx, b, n+1)
	if err != nil {
		return err
	}
	logf("built in %.1fs", time.Since(t0).Seconds())

	var results []*result
	for _, name := range cfg.modes {
		r := runMode(ctx, cfg, all[name], pool[:cfg.transitions[name]+1])
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
	return nil
}

// buildPool builds n plugins alternating the v1 and v2 sources, each with its own nonce.
func buildPool(ctx context.Context, b *greeterbuild.Builder, n int) ([]*greeterbuild.Artifact, error) {
	pool := make([]*greeterbuild.Artifact, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 2)
	done := make(chan int)
	for i := 0; i < n; i++ {
		go func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			src := []string{"v1", "v2"}[i%2]
			pool[i], errs[i] = b.Plugin(ctx, src, fmt.Sprintf("bench%d-%02d", os.Getpid(), i))
			done <- i
		}()
	}
	for k := 0; k < n; k++ {
		<-done
	}
	return pool, errors.Join(errs...)
}

func runMode(ctx context.Context, cfg *config, m mode, pool []*greeterbuild.Artifact) *result {
	r := &result{mode: m.name()}
	bn := &bench{cfg: cfg, dir: filepath.Join(cfg.work, m.name())}
	bn.shared = filepath.Join(bn.dir, "shared")
	if r.err = linkPool(bn.shared, pool); r.err != nil {
		return r
	}
	logf("%s: starting host on %s", m.name(), filepath.Base(pool[0].Path))
	h, err := startHost(ctx, cfg.hostBin, bn.shared, "127.0.0.1:0", sharedPath(bn, pool[0]), pool[0].Digest, filepath.Join(bn.dir, "host.log"))
	if err != nil {
		r.err = err
		return r
	}
	bn.host = h
	defer func() { bn.host.stop() }()
	bn.client = control.NewClient(filepath.Join(bn.shared, control.SocketName))
	r.rssBefore = rss(h.pid)

	g := startLoad(h.addr, cfg.clients, cfg.keepAlive)
	start := time.Now()
	progressDone := make(chan struct{})
	go progress(m.name(), cfg, g, start, &r.transitions, progressDone)
	interval := cfg.duration / time.Duration(len(pool))
	for i := 1; i < len(pool) && ctx.Err() == nil; i++ {
		waitUntil(ctx, start.Add(time.Duration(i)*interval))
		art := pool[i]
		signalled := time.Now()
		note, err := m.transition(ctx, bn, art)
		if err != nil {
			r.err = fmt.Errorf("transition %d: %w", i, err)
			break
		}
		seen, ok := waitSeen(ctx, g, art.Digest, 60*time.Second)
		if !ok {
			r.err = fmt.Errorf("transition %d: %s never answered", i, filepath.Base(art.Path))
			break
		}
		r.toNew = append(r.toNew, seen.Sub(signalled))
		r.notes = append(r.notes, note)
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
	r.rssAfter = rss(bn.host.pid)
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
	if !isTerminal(os.Stderr) {
		lead, end = "", "\n"
	}
	for {
		select {
		case <-done:
			if lead != "" {
				fmt.Fprintln(os.Stderr)
			}
			return
		case <-tick.C:
			fmt.Fprintf(os.Stderr, "%s  %-8s %4.1fs/%s  requests %7d  failed %5d  transitions %d/%d %s",
				lead, name, time.Since(start).Seconds(), cfg.duration, g.total.Load(), g.failed.Load(), transitions.Load(), cfg.transitions[name], end)
		}
	}
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func report(cfg *config, results []*result) {
	conn := "a fresh connection per request"
	if cfg.keepAlive {
		conn = "keep-alive connections"
	}
	fmt.Printf("\nsplice-bench: %d clients, POST /greet on %s, %s per mode, 127.0.0.1\n\n", cfg.clients, conn, cfg.duration)
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "mode\ttransitions\trequests\tfailed\tp50\tp99\tmax\tto new version p50\tp99\tmax\tRSS before\tRSS after\t")
	for _, r := range results {
		tn := percentiles(r.toNew)
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.mode, r.transitions.Load(), r.requests, r.failed,
			ms(r.lat.p50), ms(r.lat.p99), ms(r.lat.max), ms(tn.p50), ms(tn.p99), ms(tn.max), mib(r.rssBefore), mib(r.rssAfter))
	}
	w.Flush()
	fmt.Println()
	for _, r := range results {
		if r.err != nil {
			fmt.Printf("%s: ERROR %v\n", r.mode, r.err)
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
			fmt.Printf("%s failures: %s\n", r.mode, strings.Join(parts, ", "))
		}
		if len(r.notes) > 0 {
			fmt.Printf("%s: %s\n", r.mode, strings.Join(compact(r.notes), "; "))
		}
	}
	fmt.Println("\n(to new version: from sending the swap / re-exec request / SIGTERM to the first answer from the new build;")
	fmt.Printf(" clients pause %v after a failed request)\n", failurePause)
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

func logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
