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
		{name: "not run yet: wait", prom: nil, wantPhase: splicev1.PhaseProgressing, wantStep: 0, wantWhy: ReasonAnalysisPending},
		{name: "query failed: wait and retry", prom: &promResult{err: errors.New("connection refused")}, wantPhase: splicev1.PhaseProgressing,
			wantStep: 0, wantWhy: ReasonAnalysisPending},
		{name: "under the bound: next step", prom: &promResult{value: 0.005}, wantPhase: splicev1.PhaseProgressing, wantStep: 1,
			wantWhy: ReasonSwapping},
		{name: "at the bound passes", prom: &promResult{value: 0.01}, wantPhase: splicev1.PhaseProgressing, wantStep: 1, wantWhy: ReasonSwapping},
		{name: "over the bound: roll back", prom: &promResult{value: 0.2}, wantPhase: splicev1.PhaseRolledBack, wantStep: 0,
			wantWhy: ReasonAnalysisFailed},
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
			if tt.wantWhy == ReasonAnalysisPending && pl.requeueAfter != promRetry {
				t.Fatalf("a pending analysis must be retried, requeueAfter = %s", pl.requeueAfter)
			}
		})
	}
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
	// Wait for the first scrape.
	deadline := time.After(60 * time.Second)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		_, err := query(`greeter_error_ratio{digest="` + digestA + `"}`)
		if err == nil {
			break
		}
		select {
		case <-deadline:
			t.Fatalf("Prometheus never returned the scraped series: %v", err)
		case <-tick.C:
		}
	}
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
