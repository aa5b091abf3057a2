package controllers

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

func TestSwapCounterCountsEachReportOnce(t *testing.T) {
	var c swapCounter
	ns := "metrics-test"
	at := metav1.NewTime(t0)
	ready := &splicev1.PodReport{Digest: digestA, State: splicev1.SwapReady, SwapLatencySeconds: 0.008, ObservedAt: at}
	before := testutil.ToFloat64(swapResults.WithLabelValues(ns, "Ready"))
	c.observe(ns, "uid-1", ready)
	c.observe(ns, "uid-1", ready) // the same report seen on a later reconcile
	c.observe(ns, "uid-1", &splicev1.PodReport{Digest: digestA, State: splicev1.SwapPulling, ObservedAt: at})
	c.observe(ns, "uid-2", ready)
	if got := testutil.ToFloat64(swapResults.WithLabelValues(ns, "Ready")) - before; got != 2 {
		t.Fatalf("Ready swaps counted %v times, want 2 (one per pod)", got)
	}
	failed := &splicev1.PodReport{Digest: digestB, State: splicev1.SwapFailed, ObservedAt: metav1.NewTime(t0.Add(1))}
	c.observe(ns, "uid-1", failed)
	if got := testutil.ToFloat64(swapResults.WithLabelValues(ns, "Failed")); got != 1 {
		t.Fatalf("Failed counted %v", got)
	}
	if n := testutil.CollectAndCount(swapLatency); n == 0 {
		t.Fatal("no latency observed")
	}
}

func TestRecordRollout(t *testing.T) {
	cv := &splicev1.CompilerVersion{ObjectMeta: metav1.ObjectMeta{Namespace: "m", Name: "cv"},
		Status: splicev1.CompilerVersionStatus{Phase: splicev1.PhasePaused, Targeted: 5, Updated: 2}}
	recordRollout(cv)
	if v := testutil.ToFloat64(rolloutPhase.WithLabelValues("m", "cv", "Paused")); v != 1 {
		t.Fatalf("Paused = %v", v)
	}
	if v := testutil.ToFloat64(rolloutPhase.WithLabelValues("m", "cv", "Completed")); v != 0 {
		t.Fatalf("Completed = %v", v)
	}
	if v := testutil.ToFloat64(rolloutPods.WithLabelValues("m", "cv", "updated")); v != 2 {
		t.Fatalf("updated = %v", v)
	}
	before := testutil.CollectAndCount(rolloutPhase)
	forgetRollout("m", "cv")
	if after := testutil.CollectAndCount(rolloutPhase); before-after != len(allPhases) {
		t.Fatalf("forgetRollout removed %d series, want %d", before-after, len(allPhases))
	}
}

// A crashed host is counted under its own state, once, and observe says when it is new so that
// the reconciler's HostCrashed Event is emitted once per report.
func TestSwapCounterCountsCrashes(t *testing.T) {
	var c swapCounter
	ns := "metrics-crash-test"
	crashed := &splicev1.PodReport{Digest: digestA, State: splicev1.SwapCrashed, ObservedAt: metav1.NewTime(t0)}
	if !c.observe(ns, "uid-1", crashed) {
		t.Fatal("a new Crashed report was not reported new")
	}
	if c.observe(ns, "uid-1", crashed) {
		t.Fatal("the same Crashed report was reported new twice")
	}
	if got := testutil.ToFloat64(swapResults.WithLabelValues(ns, string(splicev1.SwapCrashed))); got != 1 {
		t.Fatalf("Crashed counted %v times, want 1", got)
	}
}
