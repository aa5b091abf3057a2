package controllers

import (
	"errors"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

// canaryPod is a pod told to run newArt, reporting state about it; a Ready one runs it, ready.
// edits adjust the pod after that.
func canaryPod(name string, state splicev1.SwapState, edits ...func(*podState)) podState {
	p := podState{name: name, target: splicev1.DesiredState{Artifact: newArt.Ref},
		report: &splicev1.PodReport{Digest: digestA, Running: digestB, State: state}}
	if state == splicev1.SwapReady {
		p.ready, p.report.Running = true, digestA
	}
	for _, edit := range edits {
		edit(&p)
	}
	return p
}

// counters sets what the pod reports having served on the artifact.
func counters(calls, errs, panics uint64) func(*podState) {
	return func(p *podState) { p.report.Calls, p.report.Errors, p.report.Panics = calls, errs, panics }
}

// share makes the pod serve the artifact to a share of its calls beside the stable one, as the
// agent reports it.
func share(percent int32) func(*podState) {
	return func(p *podState) {
		p.target.Stable, p.target.TrafficPercent = oldArt.Ref, ptr.To(percent)
		p.report.TrafficPercent, p.report.Running = ptr.To(percent), digestB
	}
}

func latency(seconds float64) func(*podState) {
	return func(p *podState) { p.report.SwapLatencySeconds = seconds }
}

// stablePod is a pod outside the step: told to run the stable artifact, whatever it reports.
func stablePod(name string, state splicev1.SwapState) podState {
	p := canaryPod(name, state)
	p.target = splicev1.DesiredState{Artifact: oldArt.Ref}
	return p
}

// gateStep is step 0 of a canary made of spec, over pods, as a pass at t0 judges it; pods told
// to run the artifact are its members.
func gateStep(spec splicev1.CanaryStep, pods ...podState) *canaryStep {
	in := baseInput(canary(splicev1.FailureRollback, spec), pods)
	in.status.RolloutDigest = digestA
	return newCanaryStep(in, newPlan(in), in.strategy.Canary.Steps, 0)
}

// wantVerdict is what a gate should decide; a nil *wantVerdict is "nothing to decide".
type wantVerdict struct {
	kind    verdictKind
	reason  string
	msg     string // a part of the message
	requeue time.Duration
}

func checkVerdict(t *testing.T, got *verdict, want *wantVerdict) {
	t.Helper()
	switch {
	case want == nil && got != nil:
		t.Fatalf("decided %+v, want nothing decided", *got)
	case want == nil:
		return
	case got == nil:
		t.Fatalf("decided nothing, want %+v", *want)
	}
	if got.kind != want.kind || got.reason != want.reason || got.requeueAfter != want.requeue || !strings.Contains(got.msg, want.msg) {
		t.Fatalf("verdict kind %d reason %s requeue %s msg %q; want kind %d reason %s requeue %s msg containing %q",
			got.kind, got.reason, got.requeueAfter, got.msg, want.kind, want.reason, want.requeue, want.msg)
	}
}

type gateCase struct {
	name string
	step *canaryStep
	want *wantVerdict
}

func runGate(t *testing.T, gate func(*canaryStep) *verdict, tests []gateCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkVerdict(t, gate(tt.step), tt.want) })
	}
}

func TestSwapFailuresGate(t *testing.T) {
	none := splicev1.CanaryStep{SetWeight: 100}
	one := splicev1.CanaryStep{SetWeight: 100, Analysis: &splicev1.CanaryAnalysis{MaxFailedSwaps: ptr.To[int32](1)}}
	half := splicev1.CanaryStep{SetWeight: 50}
	ok := canaryPod("p0", splicev1.SwapReady)
	runGate(t, swapFailuresGate, []gateCase{
		{name: "no failure", step: gateStep(none, ok)},
		{name: "without an analysis one failure fails the step", step: gateStep(none, ok, canaryPod("p1", splicev1.SwapFailed)),
			want: &wantVerdict{kind: verdictFail, reason: splicev1.ReasonSwapFailed, msg: "1 failed swaps (p1), more than maxFailedSwaps 0"}},
		{name: "within maxFailedSwaps", step: gateStep(one, ok, canaryPod("p1", splicev1.SwapRolledBack))},
		{name: "an incompatible pod counts as a failed swap",
			step: gateStep(one, canaryPod("p1", splicev1.SwapFailed), canaryPod("p2", splicev1.SwapIncompatible)),
			want: &wantVerdict{kind: verdictFail, reason: splicev1.ReasonSwapFailed, msg: "2 failed swaps (p1, p2), more than maxFailedSwaps 1"}},
		{name: "a pod outside the step does not count", step: gateStep(half, ok, stablePod("p1", splicev1.SwapFailed))},
	})
}

func TestSwapLatencyGate(t *testing.T) {
	step := splicev1.CanaryStep{SetWeight: 100, Analysis: &splicev1.CanaryAnalysis{MaxSwapLatency: &metav1.Duration{Duration: time.Second}}}
	runGate(t, swapLatencyGate, []gateCase{
		{name: "no bound", step: gateStep(splicev1.CanaryStep{SetWeight: 100}, canaryPod("p0", splicev1.SwapReady, latency(5)))},
		{name: "under the bound", step: gateStep(step, canaryPod("p0", splicev1.SwapReady, latency(0.5)))},
		{name: "at the bound", step: gateStep(step, canaryPod("p0", splicev1.SwapReady, latency(1)))},
		{name: "over the bound: the first such pod is named", step: gateStep(step, canaryPod("p0", splicev1.SwapReady, latency(0.5)),
			canaryPod("p1", splicev1.SwapReady, latency(2)), canaryPod("p2", splicev1.SwapReady, latency(3))),
			want: &wantVerdict{kind: verdictFail, reason: splicev1.ReasonAnalysisFailed, msg: "pod p1 swapped in 2.000s, more than maxSwapLatency 1s"}},
		{name: "a report that is not about serving the artifact", step: gateStep(step, canaryPod("p0", splicev1.SwapSwapping, latency(2)))},
	})
}

func TestErrorRateGate(t *testing.T) {
	rate := func(minCalls *int32) splicev1.CanaryStep {
		return splicev1.CanaryStep{SetWeight: 100, Analysis: &splicev1.CanaryAnalysis{MaxErrorRatePercent: ptr.To[int32](5), MinCalls: minCalls}}
	}
	ready := func(name string, calls, errs, panics uint64) podState {
		return canaryPod(name, splicev1.SwapReady, counters(calls, errs, panics))
	}
	runGate(t, errorRateGate, []gateCase{
		{name: "no bound", step: gateStep(splicev1.CanaryStep{SetWeight: 100}, ready("p0", 1000, 900, 0))},
		{name: "fewer calls than minCalls are not judged", step: gateStep(rate(nil), ready("p0", 99, 99, 0))},
		{name: "the members' calls add up to minCalls", step: gateStep(rate(nil), ready("p0", 60, 6, 0), ready("p1", 40, 4, 0)),
			want: &wantVerdict{kind: verdictFail, reason: splicev1.ReasonAnalysisFailed, msg: "plugin error rate 10.00% (10 of 100 calls)"}},
		{name: "at the bound passes", step: gateStep(rate(nil), ready("p0", 200, 10, 0))},
		{name: "panics are errors", step: gateStep(rate(nil), ready("p0", 200, 6, 6)),
			want: &wantVerdict{kind: verdictFail, reason: splicev1.ReasonAnalysisFailed, msg: "(12 of 200 calls), more than maxErrorRatePercent 5%"}},
		{name: "minCalls 0 and no calls: nothing to judge", step: gateStep(rate(ptr.To[int32](0)), ready("p0", 0, 0, 0))},
		{name: "counters of a pod not serving the artifact", step: gateStep(rate(nil), canaryPod("p0", splicev1.SwapSwapping, counters(500, 500, 0)))},
	})
}

func TestMembersSwappedGate(t *testing.T) {
	all := splicev1.CanaryStep{SetWeight: 100}
	fifty := splicev1.CanaryStep{SetWeight: 100, TrafficPercent: ptr.To[int32](50)}
	swapping := &wantVerdict{kind: verdictWait, reason: splicev1.ReasonSwapping, msg: "1 of 2 canary pods run " + digestA}
	runGate(t, membersSwappedGate, []gateCase{
		{name: "every member runs it", step: gateStep(all, canaryPod("p0", splicev1.SwapReady), canaryPod("p1", splicev1.SwapReady))},
		{name: "a member still swaps", step: gateStep(all, canaryPod("p0", splicev1.SwapReady), canaryPod("p1", splicev1.SwapSwapping)),
			want: swapping},
		{name: "a member runs it but fails its readiness",
			step: gateStep(all, canaryPod("p0", splicev1.SwapReady), canaryPod("p1", splicev1.SwapReady, func(p *podState) { p.ready = false })),
			want: swapping},
		{name: "every member serves the share the step plans",
			step: gateStep(fifty, canaryPod("p0", splicev1.SwapReady, share(50)), canaryPod("p1", splicev1.SwapReady, share(50)))},
		{name: "a member still serves the share of the step before, as its annotation says",
			step: gateStep(fifty, canaryPod("p0", splicev1.SwapReady, share(50)), canaryPod("p1", splicev1.SwapReady, share(10))),
			want: swapping},
		{name: "a member serves a share where the step plans all calls",
			step: gateStep(all, canaryPod("p0", splicev1.SwapReady), canaryPod("p1", splicev1.SwapReady, share(50))),
			want: swapping},
	})
}

func TestPrometheusGate(t *testing.T) {
	prom := &splicev1.PrometheusAnalysis{Address: "http://p:9090", Query: "q", MaxValue: "0.01"}
	step := splicev1.CanaryStep{SetWeight: 100, Analysis: &splicev1.CanaryAnalysis{Prometheus: prom}}
	with := func(res *promResult) *canaryStep {
		s := gateStep(step, canaryPod("p0", splicev1.SwapReady))
		s.prom = res
		return s
	}
	pending := &wantVerdict{kind: verdictWait, reason: splicev1.ReasonAnalysisPending, requeue: promRetry, msg: "waiting for the Prometheus analysis"}
	runGate(t, prometheusGate, []gateCase{
		{name: "no query", step: gateStep(splicev1.CanaryStep{SetWeight: 100}, canaryPod("p0", splicev1.SwapReady))},
		{name: "no result yet", step: with(nil), want: pending},
		{name: "the query could not run", step: with(&promResult{err: errors.New("refused")}),
			want: &wantVerdict{kind: verdictWait, reason: splicev1.ReasonAnalysisPending, requeue: promRetry, msg: "could not run (retrying): refused"}},
		{name: "over maxValue", step: with(&promResult{value: 0.5}),
			want: &wantVerdict{kind: verdictFail, reason: splicev1.ReasonAnalysisFailed, msg: `Prometheus query "q" returned 0.5, more than maxValue 0.01`}},
		{name: "under maxValue", step: with(&promResult{value: 0.001})},
	})
	// Only a missing result asks the controller for the query, naming its step.
	if v := prometheusGate(with(nil)); v.awaits == nil || v.awaits.step != 0 || v.awaits.analysis != prom {
		t.Fatalf("no result: awaits %+v, want step 0's query", v.awaits)
	}
	if v := prometheusGate(with(&promResult{err: errors.New("refused")})); v.awaits != nil {
		t.Fatalf("a failed query is a result: awaits %+v", v.awaits)
	}
}

func TestPauseGate(t *testing.T) {
	indefinite := splicev1.CanaryStep{SetWeight: 100, Pause: &splicev1.CanaryPause{}}
	timed := splicev1.CanaryStep{SetWeight: 100, Pause: &splicev1.CanaryPause{Duration: &metav1.Duration{Duration: time.Minute}}}
	startedAgo := func(spec splicev1.CanaryStep, ago time.Duration) *canaryStep {
		s := gateStep(spec, canaryPod("p0", splicev1.SwapReady))
		s.pauseStart = &metav1.Time{Time: t0.Add(-ago)}
		return s
	}
	runGate(t, pauseGate, []gateCase{
		{name: "no pause", step: gateStep(splicev1.CanaryStep{SetWeight: 100}, canaryPod("p0", splicev1.SwapReady))},
		{name: "until promoted", step: startedAgo(indefinite, time.Hour),
			want: &wantVerdict{kind: verdictHold, reason: splicev1.ReasonAwaitingPromotion, msg: "1 canary pods run " + digestA + "; waiting for promotion"}},
		{name: "a timed pause that starts now", step: gateStep(timed, canaryPod("p0", splicev1.SwapReady)),
			want: &wantVerdict{kind: verdictHold, reason: splicev1.ReasonPauseStep, requeue: time.Minute, msg: "paused for 1m0s, until 2026-11-25T12:01:00Z"}},
		{name: "half-way through", step: startedAgo(timed, 30*time.Second),
			want: &wantVerdict{kind: verdictHold, reason: splicev1.ReasonPauseStep, requeue: 30 * time.Second, msg: "until 2026-11-25T12:00:30Z"}},
		{name: "over exactly at its end", step: startedAgo(timed, time.Minute)},
	})
}

// The pause's start is now when none was recorded, and the recorded one otherwise; the
// verdict carries it so that the plan records it.
func TestPauseGateRecordsItsStart(t *testing.T) {
	spec := splicev1.CanaryStep{SetWeight: 100, Pause: &splicev1.CanaryPause{}}
	if v := pauseGate(gateStep(spec, canaryPod("p0", splicev1.SwapReady))); v.pauseStart == nil || !v.pauseStart.Time.Equal(t0) {
		t.Fatalf("a pause starting now: pauseStart %v, want %s", v.pauseStart, t0)
	}
	in := baseInput(canary(splicev1.FailureRollback, spec), []podState{canaryPod("p0", splicev1.SwapReady)})
	in.status.RolloutDigest = digestA
	recorded := metav1.NewTime(t0.Add(-time.Hour))
	in.status.PauseStartTime = &recorded
	if v := pauseGate(newCanaryStep(in, newPlan(in), in.strategy.Canary.Steps, 0)); v.pauseStart != &recorded {
		t.Fatalf("a pause under way: pauseStart %v, want the recorded %s", v.pauseStart, recorded)
	}
}

func TestMinCallsGate(t *testing.T) {
	rate := func(minCalls *int32) splicev1.CanaryStep {
		return splicev1.CanaryStep{SetWeight: 100, Analysis: &splicev1.CanaryAnalysis{MaxErrorRatePercent: ptr.To[int32](5), MinCalls: minCalls}}
	}
	runGate(t, minCallsGate, []gateCase{
		{name: "no error rate to judge", step: gateStep(splicev1.CanaryStep{SetWeight: 100}, canaryPod("p0", splicev1.SwapReady))},
		{name: "fewer than the default 100", step: gateStep(rate(nil), canaryPod("p0", splicev1.SwapReady, counters(40, 0, 0))),
			want: &wantVerdict{kind: verdictWait, reason: splicev1.ReasonAnalysisPending, msg: "after 100 plugin calls on the new version, 40 reported so far"}},
		{name: "enough", step: gateStep(rate(nil), canaryPod("p0", splicev1.SwapReady, counters(100, 50, 0)))},
		{name: "fewer than minCalls", step: gateStep(rate(ptr.To[int32](10)), canaryPod("p0", splicev1.SwapReady, counters(9, 0, 0))),
			want: &wantVerdict{kind: verdictWait, reason: splicev1.ReasonAnalysisPending, msg: "after 10 plugin calls"}},
		{name: "minCalls 0", step: gateStep(rate(ptr.To[int32](0)), canaryPod("p0", splicev1.SwapReady))},
	})
}

// The first gate that decides decides the step: failures before waits, the pause before the
// wait for calls.
func TestStepGatesOrder(t *testing.T) {
	analysed := splicev1.CanaryStep{SetWeight: 100, Pause: &splicev1.CanaryPause{},
		Analysis: &splicev1.CanaryAnalysis{MaxErrorRatePercent: ptr.To[int32](5), MinCalls: ptr.To[int32](100),
			Prometheus: &splicev1.PrometheusAnalysis{Address: "http://p:9090", Query: "q", MaxValue: "1"}}}
	runGate(t, (*canaryStep).judge, []gateCase{
		{name: "a failed swap fails the step while others still swap",
			step: gateStep(analysed, canaryPod("p0", splicev1.SwapFailed), canaryPod("p1", splicev1.SwapSwapping)),
			want: &wantVerdict{kind: verdictFail, reason: splicev1.ReasonSwapFailed}},
		{name: "the error rate fails the step while others still swap",
			step: gateStep(analysed, canaryPod("p0", splicev1.SwapReady, counters(200, 100, 0)), canaryPod("p1", splicev1.SwapSwapping)),
			want: &wantVerdict{kind: verdictFail, reason: splicev1.ReasonAnalysisFailed, msg: "error rate"}},
		{name: "swaps under way come before Prometheus",
			step: gateStep(analysed, canaryPod("p0", splicev1.SwapReady), canaryPod("p1", splicev1.SwapSwapping)),
			want: &wantVerdict{kind: verdictWait, reason: splicev1.ReasonSwapping}},
		{name: "Prometheus comes before the pause", step: gateStep(analysed, canaryPod("p0", splicev1.SwapReady)),
			want: &wantVerdict{kind: verdictWait, reason: splicev1.ReasonAnalysisPending, requeue: promRetry, msg: "Prometheus"}},
	})
	s := gateStep(analysed, canaryPod("p0", splicev1.SwapReady, counters(10, 0, 0)))
	s.prom = &promResult{value: 0.5}
	checkVerdict(t, s.judge(), &wantVerdict{kind: verdictHold, reason: splicev1.ReasonAwaitingPromotion})
	s.spec.Pause = nil
	checkVerdict(t, s.judge(), &wantVerdict{kind: verdictWait, reason: splicev1.ReasonAnalysisPending, msg: "10 reported so far"})
	s.in.pods[0].report.Calls = 100
	checkVerdict(t, s.judge(), nil)
}
