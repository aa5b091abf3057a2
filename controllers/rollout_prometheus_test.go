package controllers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

func TestPlanCanaryPrometheus(t *testing.T) {
	prom := &splicev1.PrometheusAnalysis{Address: "http://p:9090", Query: "q", MaxValue: "0.01"}
	st := canary(splicev1.FailureRollback,
		splicev1.CanaryStep{SetWeight: 50, Analysis: &splicev1.CanaryAnalysis{Prometheus: prom}},
		splicev1.CanaryStep{SetWeight: 100})
	start := func() *rolloutInput {
		in := baseInput(st, fleet(4))
		pl := plan(in)
		return carry(in, pl, applyPlan(in.pods, pl, nil), t0)
	}
	tests := []struct {
		name      string
		prom      *promResult
		wantPhase splicev1.Phase
		wantStep  int32
		wantWhy   string
	}{
		{name: "not run yet: wait", prom: nil, wantPhase: splicev1.PhaseProgressing, wantStep: 0, wantWhy: splicev1.ReasonAnalysisPending},
		{name: "query failed: wait and retry", prom: &promResult{err: errors.New("connection refused")}, wantPhase: splicev1.PhaseProgressing,
			wantStep: 0, wantWhy: splicev1.ReasonAnalysisPending},
		{name: "under the bound: next step", prom: &promResult{value: 0.005}, wantPhase: splicev1.PhaseProgressing, wantStep: 1,
			wantWhy: splicev1.ReasonSwapping},
		{name: "at the bound passes", prom: &promResult{value: 0.01}, wantPhase: splicev1.PhaseProgressing, wantStep: 1, wantWhy: splicev1.ReasonSwapping},
		{name: "over the bound: roll back", prom: &promResult{value: 0.2}, wantPhase: splicev1.PhaseRolledBack, wantStep: 0,
			wantWhy: splicev1.ReasonAnalysisFailed},
		{name: "a result run for another step: wait", prom: &promResult{step: 1, value: 0.2}, wantPhase: splicev1.PhaseProgressing,
			wantStep: 0, wantWhy: splicev1.ReasonAnalysisPending},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := start()
			in.prom = tt.prom
			pl := plan(in)
			if pl.phase != tt.wantPhase || *pl.step != tt.wantStep || pl.progressing.Reason != tt.wantWhy {
				t.Fatalf("phase %s step %d reason %s (%s); want %s step %d reason %s", pl.phase, *pl.step, pl.progressing.Reason,
					pl.message, tt.wantPhase, tt.wantStep, tt.wantWhy)
			}
			if tt.wantWhy == splicev1.ReasonAnalysisPending && pl.requeueAfter != promRetry {
				t.Fatalf("a pending analysis must be retried, requeueAfter = %s", pl.requeueAfter)
			}
		})
	}
}

func TestPromVerdict(t *testing.T) {
	prom := &splicev1.PrometheusAnalysis{Address: "http://p:9090", Query: "q", MaxValue: "0.01"}
	tests := []struct {
		name     string
		maxValue string
		res      *promResult
		want     *wantVerdict
	}{
		{name: "no result", res: nil,
			want: &wantVerdict{kind: verdictWait, reason: splicev1.ReasonAnalysisPending, requeue: promRetry, msg: "waiting for the Prometheus analysis"}},
		{name: "the query failed", res: &promResult{err: errors.New("connection refused")},
			want: &wantVerdict{kind: verdictWait, reason: splicev1.ReasonAnalysisPending, requeue: promRetry, msg: "could not run (retrying): connection refused"}},
		{name: "maxValue is no number", maxValue: "lots", res: &promResult{value: 0},
			want: &wantVerdict{kind: verdictFail, reason: splicev1.ReasonAnalysisFailed, msg: `prometheus.maxValue "lots" is not a number`}},
		{name: "over", res: &promResult{value: 0.02},
			want: &wantVerdict{kind: verdictFail, reason: splicev1.ReasonAnalysisFailed, msg: `Prometheus query "q" returned 0.02, more than maxValue 0.01`}},
		{name: "at the bound", res: &promResult{value: 0.01}},
		{name: "under", res: &promResult{value: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := *prom
			if tt.maxValue != "" {
				a.MaxValue = tt.maxValue
			}
			checkVerdict(t, promVerdict(&a, tt.res), tt.want)
		})
	}
}

// The controller runs a step's query exactly when the plan reaches its Prometheus gate: every
// member serving the share the step plans, nothing failed, nothing paused, and for the step the
// plan is on in this pass.
func TestPrometheusDue(t *testing.T) {
	promA := &splicev1.PrometheusAnalysis{Address: "http://a:9090", Query: "a", MaxValue: "1"}
	promB := &splicev1.PrometheusAnalysis{Address: "http://b:9090", Query: "b", MaxValue: "1"}
	tests := []struct {
		name     string
		in       func() *rolloutInput
		wantStep int32
		want     *splicev1.PrometheusAnalysis // nil: no query
	}{
		{name: "the members serve the share the step plans", in: func() *rolloutInput { return atShareStep(promB, true) },
			wantStep: 1, want: promB},
		{name: "the members still serve the share of the step before, as their annotations say",
			in: func() *rolloutInput { return atShareStep(promB, false) }},
		{name: "a member still swaps", in: func() *rolloutInput {
			in := atShareStep(promB, true)
			in.pods[memberIndex(in)].report.State = splicev1.SwapSwapping
			return in
		}},
		{name: "a member's swap failed", in: func() *rolloutInput {
			in := atShareStep(promB, true)
			in.pods[memberIndex(in)].report.State = splicev1.SwapFailed
			return in
		}},
		{name: "paused by annotation", in: func() *rolloutInput { in := atShareStep(promB, true); in.controls.paused = true; return in }},
		{name: "aborted", in: func() *rolloutInput { in := atShareStep(promB, true); in.controls.aborted = true; return in }},
		{name: "an input that carries a result already", in: func() *rolloutInput {
			in := atShareStep(promB, true)
			in.prom = &promResult{step: 1, value: 0}
			return in
		}, wantStep: 1, want: promB},
		{name: "a step without a query", in: func() *rolloutInput { return atShareStep(nil, true) }},
		{name: "promoted past the step", in: func() *rolloutInput { in := atShareStep(promB, true); in.controls.promote = true; return in }},
		{name: "a retry from a later step: the first step's query", in: func() *rolloutInput { return retried(promA, promB) },
			wantStep: 0, want: promA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := prometheusDue(tt.in())
			switch {
			case tt.want == nil && got != nil:
				t.Fatalf("query %+v for step %d, want none", *got.analysis, got.step)
			case tt.want != nil && (got == nil || got.step != tt.wantStep || got.analysis != tt.want):
				t.Fatalf("query %+v, want step %d's %+v", got, tt.wantStep, *tt.want)
			}
		})
	}
}

// atShareStep is a canary at its second step, which sends 50% of its members' calls to the
// artifact (10% in the first) and has analysis prom. The members serve 50% when swapped is
// true; otherwise they, and their annotations, still say 10% (the step was just planned).
func atShareStep(prom *splicev1.PrometheusAnalysis, swapped bool) *rolloutInput {
	var analysis *splicev1.CanaryAnalysis
	if prom != nil {
		analysis = &splicev1.CanaryAnalysis{Prometheus: prom}
	}
	in := baseInput(canary(splicev1.FailureRollback,
		splicev1.CanaryStep{SetWeight: 50, TrafficPercent: ptr.To[int32](10)},
		splicev1.CanaryStep{SetWeight: 50, TrafficPercent: ptr.To[int32](50), Analysis: analysis},
		splicev1.CanaryStep{SetWeight: 100, Pause: &splicev1.CanaryPause{}},
	), fleet(4))
	pl := plan(in)
	in = carry(in, pl, applyPlan(in.pods, pl, nil), t0.Add(time.Second))
	pl = plan(in)
	if *pl.step != 1 {
		panic(fmt.Sprintf("setup: at step %d, want 1: %s", *pl.step, pl.message))
	}
	if !swapped {
		return carry(in, pl, in.pods, t0.Add(2*time.Second))
	}
	return carry(in, pl, applyPlan(in.pods, pl, nil), t0.Add(2*time.Second))
}

func memberIndex(in *rolloutInput) int {
	for i, p := range in.pods {
		if p.onArtifact(in.artifact) {
			return i
		}
	}
	panic("no member")
}

// retried is a canary whose steps have queries a and b, at its second step with its members
// swapped, and told to retry: the rollout starts over at the first step, with the same members.
func retried(a, b *splicev1.PrometheusAnalysis) *rolloutInput {
	in := baseInput(canary(splicev1.FailureRollback,
		splicev1.CanaryStep{SetWeight: 50, Analysis: &splicev1.CanaryAnalysis{Prometheus: a}},
		splicev1.CanaryStep{SetWeight: 50, Analysis: &splicev1.CanaryAnalysis{Prometheus: b}},
	), fleet(4))
	pl := plan(in)
	in = carry(in, pl, applyPlan(in.pods, pl, nil), t0.Add(time.Second))
	in.status.CurrentStepIndex = ptr.To[int32](1)
	in.controls.retry = true
	return in
}

func TestExpandQuery(t *testing.T) {
	cv := &splicev1.CompilerVersion{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "greeter"}}
	got := expandQuery(`rate(errors{digest="{{digest}}",ns="{{namespace}}",cv="{{name}}"}[1m])`, cv, digestA)
	if want := `rate(errors{digest="` + digestA + `",ns="shop",cv="greeter"}[1m])`; got != want {
		t.Fatalf("got %s", got)
	}
}

// TestQueryPrometheus runs the analysis query against a real Prometheus server (Debian's
// prometheus package; .ci/run installs it) that scrapes a metric this test serves.
func TestQueryPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Prometheus server")
	}
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("prometheus is not installed: .ci/run must install it (apt-get install prometheus)")
		}
		t.Skip("prometheus is not installed (apt-get install prometheus)")
	}
	target := serveMetrics(t, "# TYPE greeter_error_ratio gauge\ngreeter_error_ratio{digest=\""+digestA+"\"} 0.05\n"+
		"greeter_error_ratio{digest=\""+digestB+"\"} 0.001\n")
	addr := startPrometheus(t, bin, target)

	ctx := context.Background()
	query := func(q string) (float64, error) { return queryPrometheus(ctx, addr, q, time.Now()) }
	waitForSeries(t, query, `greeter_error_ratio{digest="`+digestA+`"}`)
	for _, tt := range []struct {
		q       string
		want    float64
		wantErr string
	}{
		{q: `greeter_error_ratio{digest="` + digestA + `"}`, want: 0.05},
		{q: `greeter_error_ratio{digest="` + digestB + `"}`, want: 0.001},
		{q: `scalar(greeter_error_ratio{digest="` + digestA + `"}) * 2`, want: 0.1},
		{q: `greeter_error_ratio`, wantErr: "returned 2 series"},
		{q: `greeter_error_ratio{digest="none"}`, wantErr: "returned 0 series"},
		{q: `greeter_error_ratio[1m]`, wantErr: "must return a scalar or a one-element vector"},
		{q: `sum(`, wantErr: "query"},
	} {
		got, err := query(tt.q)
		switch {
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: error %v, want it to mention %q", tt.q, err, tt.wantErr)
		case tt.wantErr == "" && (err != nil || fmt.Sprintf("%.4f", got) != fmt.Sprintf("%.4f", tt.want)):
			t.Errorf("%s = %v, %v; want %v", tt.q, got, err, tt.want)
		}
	}
	if _, err := queryPrometheus(ctx, "http://127.0.0.1:1", "up", time.Now()); err == nil {
		t.Error("a Prometheus that does not answer must be an error")
	}
}

// waitForSeries waits for the first scrape: until q returns a number.
func waitForSeries(t *testing.T, query func(string) (float64, error), q string) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		_, err := query(q)
		if err == nil {
			return
		}
		select {
		case <-deadline:
			t.Fatalf("Prometheus never returned the scraped series: %v", err)
		case <-tick.C:
		}
	}
}

func serveMetrics(t *testing.T, body string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprint(w, body)
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func startPrometheus(t *testing.T, bin, target string) string {
	dir := t.TempDir()
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: greeter\n    static_configs:\n      - targets: [%q]\n", target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+listen, "--log.level=warn")
	out, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return "http://" + listen
}

// TestQueriesPrometheus: only a canary with a Prometheus analysis in one of its steps plans a
// second time to find its query (prometheusDue).
func TestQueriesPrometheus(t *testing.T) {
	prom := &splicev1.CanaryAnalysis{Prometheus: &splicev1.PrometheusAnalysis{Address: "http://127.0.0.1:9090", Query: "up", MaxValue: "1"}}
	errRate := &splicev1.CanaryAnalysis{MaxErrorRatePercent: ptr.To[int32](1)}
	canary := func(steps ...splicev1.CanaryStep) splicev1.RolloutStrategy {
		return splicev1.RolloutStrategy{Type: splicev1.StrategyCanary, Canary: &splicev1.CanaryStrategy{Steps: steps}}
	}
	tests := []struct {
		name string
		st   splicev1.RolloutStrategy
		want bool
	}{
		{"Strict", splicev1.RolloutStrategy{Type: splicev1.StrategyStrict}, false},
		{"a canary without steps", splicev1.RolloutStrategy{Type: splicev1.StrategyCanary}, false},
		{"a canary without analysis", canary(splicev1.CanaryStep{SetWeight: 50}), false},
		{"an error-rate analysis only", canary(splicev1.CanaryStep{SetWeight: 50, Analysis: errRate}), false},
		{"Prometheus in a later step", canary(splicev1.CanaryStep{SetWeight: 10}, splicev1.CanaryStep{SetWeight: 50, Analysis: prom}), true},
	}
	for _, tt := range tests {
		if got := queriesPrometheus(tt.st); got != tt.want {
			t.Errorf("%s: queriesPrometheus = %v, want %v", tt.name, got, tt.want)
		}
	}
}
