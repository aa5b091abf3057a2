package controllers

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

var (
	t0     = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	newArt = &splicev1.ArtifactStatus{Ref: "r.example.com/p@" + digestA, Digest: digestA, APIVersion: "1.3.0"}
	oldArt = &splicev1.ArtifactStatus{Ref: "r.example.com/p@" + digestB, Digest: digestB, APIVersion: "1.2.0"}
)

// fleet builds n pods named p00.. that run the stable artifact and are ready.
func fleet(n int) []podState {
	pods := make([]podState, n)
	for i := range pods {
		pods[i] = podState{name: fmt.Sprintf("p%02d", i), ready: true, target: podTarget{Artifact: oldArt.Ref},
			report: &splicev1.PodReport{Digest: digestB, Running: digestB, State: splicev1.SwapReady}}
	}
	return pods
}

// applyPlan plays the agents' part: every pod takes its target; pods in fail get the outcome
// instead of Ready. It returns the pods as the next reconcile would see them.
func applyPlan(pods []podState, pl *rolloutPlan, fail map[string]splicev1.SwapState) []podState {
	out := make([]podState, len(pods))
	for i, p := range pods {
		t, ok := pl.targets[p.name]
		if !ok {
			panic("plan has no target for " + p.name)
		}
		p.target = t
		d := splicev1.DigestOf(t.Artifact)
		if d != "" {
			if s, bad := fail[p.name]; bad && d == digestA {
				running := digestB
				p.report = &splicev1.PodReport{Digest: d, Running: running, State: s, Reason: "LoadFailed"}
				p.ready = false
			} else {
				p.report = &splicev1.PodReport{Digest: d, Running: d, State: splicev1.SwapReady, SwapLatencySeconds: 0.01, TrafficPercent: t.Traffic}
				if t.Traffic != nil {
					// A request-level canary: the host keeps serving the stable artifact as
					// Running and routes the share to the new one, as the real agent reports.
					p.report.Running = splicev1.DigestOf(t.Stable)
				}
				p.ready = true
			}
		}
		out[i] = p
	}
	return out
}

func countOn(pl *rolloutPlan, digest string) int {
	n := 0
	for _, t := range pl.targets {
		if splicev1.DigestOf(t.Artifact) == digest {
			n++
		}
	}
	return n
}

func baseInput(strategy splicev1.RolloutStrategy, pods []podState) *rolloutInput {
	return &rolloutInput{key: "uid-1", strategy: strategy, artifact: newArt, stable: oldArt, pods: pods, now: t0}
}

// carry moves a plan's recorded state into the next input, as the status write does.
func carry(in *rolloutInput, pl *rolloutPlan, pods []podState, now time.Time) *rolloutInput {
	next := *in
	next.pods = pods
	next.now = now
	next.controls = controls{}
	next.status = splicev1.CompilerVersionStatus{Phase: pl.phase, CurrentStepIndex: pl.step, StepStartTime: pl.stepStart,
		PauseStartTime: pl.pauseStart, RolloutDigest: pl.rolloutDigest}
	next.stable = pl.stable
	return &next
}

func TestPlanRollingPatchBatches(t *testing.T) {
	tests := []struct {
		name           string
		pods           int
		maxUnavailable *intstr.IntOrString
		wantBatches    []int // pods on the new artifact after each pass
	}{
		{name: "25% of 8", pods: 8, wantBatches: []int{2, 4, 6, 8}},
		{name: "25% of 3 rounds up to 1", pods: 3, wantBatches: []int{1, 2, 3}},
		{name: "2 at a time of 5", pods: 5, maxUnavailable: ptr.To(intstr.FromInt32(2)), wantBatches: []int{2, 4, 5}},
		{name: "100%", pods: 4, maxUnavailable: ptr.To(intstr.FromString("100%")), wantBatches: []int{4}},
		{name: "single pod", pods: 1, wantBatches: []int{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := baseInput(splicev1.RolloutStrategy{Type: splicev1.StrategyRollingPatch,
				RollingPatch: &splicev1.RollingPatchStrategy{MaxUnavailable: tt.maxUnavailable}}, fleet(tt.pods))
			var got []int
			for pass := 0; pass < 20; pass++ {
				pl := plan(in)
				if pl.phase == splicev1.PhaseCompleted {
					if pl.stable.Digest != digestA || countOn(pl, digestA) != tt.pods {
						t.Fatalf("completed without moving everyone: %+v", pl)
					}
					break
				}
				if pl.phase != splicev1.PhaseProgressing {
					t.Fatalf("pass %d: phase %s (%s)", pass, pl.phase, pl.message)
				}
				got = append(got, countOn(pl, digestA))
				in = carry(in, pl, applyPlan(in.pods, pl, nil), t0.Add(time.Duration(pass)*time.Second))
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.wantBatches) {
				t.Fatalf("batches = %v, want %v", got, tt.wantBatches)
			}
		})
	}
}

func TestPlanRollingPatchWaitsForBatch(t *testing.T) {
	in := baseInput(splicev1.RolloutStrategy{Type: splicev1.StrategyRollingPatch}, fleet(8))
	pl := plan(in)
	// Agents have not answered yet: the same two pods stay in flight, no one else joins.
	in2 := carry(in, pl, applyTargetsOnly(in.pods, pl), t0.Add(time.Second))
	pl2 := plan(in2)
	if countOn(pl2, digestA) != 2 || fmt.Sprint(members(pl)) != fmt.Sprint(members(pl2)) {
		t.Fatalf("batch changed while in flight: %v -> %v", members(pl), members(pl2))
	}
}

func TestPlanRollingPatchRefusals(t *testing.T) {
	t.Run("major API change", func(t *testing.T) {
		in := baseInput(splicev1.RolloutStrategy{Type: splicev1.StrategyRollingPatch}, fleet(4))
		art := *newArt
		art.APIVersion = "2.0.0"
		in.artifact = &art
		pl := plan(in)
		if pl.phase != splicev1.PhaseDegraded || pl.progressing.Reason != ReasonMajorAPIChange || countOn(pl, digestA) != 0 {
			t.Fatalf("phase %s reason %s, %d pods moved", pl.phase, pl.progressing.Reason, countOn(pl, digestA))
		}
	})
	t.Run("failed swap halts and freezes", func(t *testing.T) {
		in := baseInput(splicev1.RolloutStrategy{Type: splicev1.StrategyRollingPatch}, fleet(8))
		pl := plan(in)
		first := members(pl)
		in = carry(in, pl, applyPlan(in.pods, pl, map[string]splicev1.SwapState{first[0]: splicev1.SwapFailed}), t0)
		pl = plan(in)
		if pl.phase != splicev1.PhaseDegraded || pl.degr.Status != metav1.ConditionTrue || countOn(pl, digestA) != 2 {
			t.Fatalf("phase %s degraded %s, %d on new", pl.phase, pl.degr.Status, countOn(pl, digestA))
		}
		// A retry starts over; the failed pod is asked again (its report is about the
		// artifact, so the agent's own bookkeeping decides whether to re-pull).
		in = carry(in, pl, in.pods, t0)
		in.controls.retry = true
		if pl = plan(in); pl.phase != splicev1.PhaseDegraded {
			t.Fatalf("retry with the failure still reported should halt again, got %s", pl.phase)
		}
	})
}

func TestPlanStrict(t *testing.T) {
	strict := func(recreate bool) splicev1.RolloutStrategy {
		return splicev1.RolloutStrategy{Type: splicev1.StrategyStrict, Strict: &splicev1.StrictStrategy{RecreateIncompatible: recreate}}
	}
	t.Run("all at once, then complete", func(t *testing.T) {
		in := baseInput(strict(false), fleet(5))
		pl := plan(in)
		if countOn(pl, digestA) != 5 || pl.phase != splicev1.PhaseProgressing {
			t.Fatalf("want all 5 pods at once, got %d (%s)", countOn(pl, digestA), pl.phase)
		}
		in = carry(in, pl, applyPlan(in.pods, pl, nil), t0)
		if pl = plan(in); pl.phase != splicev1.PhaseCompleted || pl.stable.Digest != digestA {
			t.Fatalf("phase %s", pl.phase)
		}
	})
	t.Run("incompatible pods are evicted when asked", func(t *testing.T) {
		in := baseInput(strict(true), fleet(3))
		pl := plan(in)
		in = carry(in, pl, applyPlan(in.pods, pl, map[string]splicev1.SwapState{"p01": splicev1.SwapIncompatible}), t0)
		pl = plan(in)
		if fmt.Sprint(pl.evict) != "[p01]" || pl.degr.Reason != ReasonIncompatiblePods || pl.phase != splicev1.PhaseProgressing {
			t.Fatalf("evict %v, degraded %s, phase %s", pl.evict, pl.degr.Reason, pl.phase)
		}
		// Its replacement (a new name) is asked to run the artifact and the rollout completes.
		pods := append([]podState{}, in.pods[0], in.pods[2], podState{name: "p01-new", ready: true})
		in = carry(in, pl, pods, t0)
		pl = plan(in)
		in = carry(in, pl, applyPlan(in.pods, pl, nil), t0)
		if pl = plan(in); pl.phase != splicev1.PhaseCompleted {
			t.Fatalf("phase %s: %s", pl.phase, pl.message)
		}
	})
	t.Run("incompatible pods are only reported otherwise", func(t *testing.T) {
		in := baseInput(strict(false), fleet(3))
		pl := plan(in)
		in = carry(in, pl, applyPlan(in.pods, pl, map[string]splicev1.SwapState{"p01": splicev1.SwapIncompatible}), t0)
		pl = plan(in)
		if len(pl.evict) != 0 || pl.phase != splicev1.PhaseDegraded {
			t.Fatalf("evict %v phase %s", pl.evict, pl.phase)
		}
	})
	t.Run("one failed swap rolls every pod back", func(t *testing.T) {
		in := baseInput(strict(false), fleet(4))
		pl := plan(in)
		in = carry(in, pl, applyPlan(in.pods, pl, map[string]splicev1.SwapState{"p02": splicev1.SwapFailed}), t0)
		pl = plan(in)
		if pl.phase != splicev1.PhaseRolledBack || countOn(pl, digestB) != 4 || pl.stable.Digest != digestB {
			t.Fatalf("phase %s, %d on stable", pl.phase, countOn(pl, digestB))
		}
		// It stays rolled back on later passes, even once the failure report is gone.
		in = carry(in, pl, applyPlan(in.pods, pl, nil), t0)
		if pl = plan(in); pl.phase != splicev1.PhaseRolledBack || countOn(pl, digestB) != 4 {
			t.Fatalf("second pass: phase %s", pl.phase)
		}
		// A retry starts again.
		in = carry(in, pl, in.pods, t0)
		in.controls.retry = true
		if pl = plan(in); pl.phase != splicev1.PhaseProgressing || countOn(pl, digestA) != 4 {
			t.Fatalf("retry: phase %s, %d on new", pl.phase, countOn(pl, digestA))
		}
	})
	t.Run("first rollout without a stable artifact cannot roll back", func(t *testing.T) {
		in := baseInput(strict(false), fleet(2))
		in.stable = nil
		pl := plan(in)
		in = carry(in, pl, applyPlan(in.pods, pl, map[string]splicev1.SwapState{"p00": splicev1.SwapFailed}), t0)
		pl = plan(in)
		if pl.phase != splicev1.PhaseDegraded || pl.degr.Status != metav1.ConditionTrue || pl.targets["p00"].Artifact != newArt.Ref {
			t.Fatalf("phase %s, p00 target %+v", pl.phase, pl.targets["p00"])
		}
	})
	t.Run("first rollout moves every pod at once, whatever the policy", func(t *testing.T) {
		for _, st := range []splicev1.RolloutStrategy{strict(false), {Type: splicev1.StrategyRollingPatch},
			canary(splicev1.FailureRollback, splicev1.CanaryStep{SetWeight: 10, Pause: &splicev1.CanaryPause{}})} {
			in := baseInput(st, fleet(6))
			in.stable = nil
			pl := plan(in)
			if countOn(pl, digestA) != 6 {
				t.Fatalf("%s: %d of 6 pods moved", st.Type, countOn(pl, digestA))
			}
			in = carry(in, pl, applyPlan(in.pods, pl, nil), t0)
			if pl = plan(in); pl.phase != splicev1.PhaseCompleted || pl.stable.Digest != digestA {
				t.Fatalf("%s: phase %s", st.Type, pl.phase)
			}
		}
	})
}

func canary(onFailure splicev1.FailurePolicy, steps ...splicev1.CanaryStep) splicev1.RolloutStrategy {
	return splicev1.RolloutStrategy{Type: splicev1.StrategyCanary, Canary: &splicev1.CanaryStrategy{Steps: steps, OnFailure: onFailure}}
}

func TestPlanCanary(t *testing.T) {
	t.Run("steps, timed pause, promotion, completion", func(t *testing.T) {
		in := baseInput(canary(splicev1.FailureRollback,
			splicev1.CanaryStep{SetWeight: 10, TrafficPercent: ptr.To[int32](5), Pause: &splicev1.CanaryPause{Duration: &metav1.Duration{Duration: time.Minute}}},
			splicev1.CanaryStep{SetWeight: 50, Pause: &splicev1.CanaryPause{}},
		), fleet(10))
		pl := plan(in)
		if *pl.step != 0 || countOn(pl, digestA) != 1 || pl.phase != splicev1.PhaseProgressing {
			t.Fatalf("step %d, %d on new, %s", *pl.step, countOn(pl, digestA), pl.phase)
		}
		m := members(pl)[0]
		if tg := pl.targets[m]; tg.Stable != oldArt.Ref || tg.Traffic == nil || *tg.Traffic != 5 {
			t.Fatalf("canary target %+v, want 5%% traffic with the stable version kept", tg)
		}
		in = carry(in, pl, applyPlan(in.pods, pl, nil), t0.Add(time.Second))
		pl = plan(in)
		if pl.phase != splicev1.PhasePaused || pl.paused.Reason != ReasonPauseStep || pl.requeueAfter != time.Minute {
			t.Fatalf("phase %s reason %s requeue %s", pl.phase, pl.paused.Reason, pl.requeueAfter)
		}
		// Still paused half-way through.
		in = carry(in, pl, in.pods, t0.Add(31*time.Second))
		if pl = plan(in); pl.phase != splicev1.PhasePaused || pl.requeueAfter != 30*time.Second {
			t.Fatalf("half-way: phase %s requeue %s", pl.phase, pl.requeueAfter)
		}
		// The pause ends: step 2, five pods, the first member kept.
		in = carry(in, pl, in.pods, t0.Add(62*time.Second))
		pl = plan(in)
		if *pl.step != 1 || countOn(pl, digestA) != 5 || splicev1.DigestOf(pl.targets[m].Artifact) != digestA || pl.targets[m].Traffic != nil {
			t.Fatalf("step %d, %d on new, first member %+v", *pl.step, countOn(pl, digestA), pl.targets[m])
		}
		in = carry(in, pl, applyPlan(in.pods, pl, nil), t0.Add(70*time.Second))
		pl = plan(in)
		if pl.phase != splicev1.PhasePaused || pl.paused.Reason != ReasonAwaitingPromotion || pl.requeueAfter != 0 {
			t.Fatalf("want an indefinite pause, got %s/%s", pl.phase, pl.paused.Reason)
		}
		in = carry(in, pl, in.pods, t0.Add(time.Hour))
		if pl = plan(in); pl.phase != splicev1.PhasePaused {
			t.Fatalf("an indefinite pause ended by itself: %s", pl.phase)
		}
		in = carry(in, pl, in.pods, t0.Add(time.Hour))
		in.controls.promote = true
		pl = plan(in)
		if *pl.step != 2 || countOn(pl, digestA) != 10 || pl.phase != splicev1.PhaseProgressing {
			t.Fatalf("after promotion: step %d, %d on new, %s", *pl.step, countOn(pl, digestA), pl.phase)
		}
		in = carry(in, pl, applyPlan(in.pods, pl, nil), t0.Add(time.Hour))
		if pl = plan(in); pl.phase != splicev1.PhaseCompleted || pl.stable.Digest != digestA {
			t.Fatalf("final: %s", pl.phase)
		}
	})
	t.Run("membership is stable and survives scale-up and a vanished pod", func(t *testing.T) {
		in := baseInput(canary(splicev1.FailureRollback, splicev1.CanaryStep{SetWeight: 20, Pause: &splicev1.CanaryPause{}}), fleet(10))
		pl := plan(in)
		first := members(pl)
		if len(first) != 2 {
			t.Fatalf("members %v", first)
		}
		// Scale up to 20 pods and lose one member: the other member stays, and the step tops
		// up to 4 pods.
		pods := applyPlan(in.pods, pl, nil)
		var kept []podState
		for _, p := range pods {
			if p.name != first[0] {
				kept = append(kept, p)
			}
		}
		for i := 10; i < 21; i++ {
			kept = append(kept, podState{name: fmt.Sprintf("p%02d", i), ready: true})
		}
		in = carry(in, pl, kept, t0)
		pl = plan(in)
		got := members(pl)
		if len(got) != 4 || !contains(got, first[1]) {
			t.Fatalf("members after scale-up %v, want 4 including %s", got, first[1])
		}
		// The same input always gives the same members (no randomness, restart-safe).
		if fmt.Sprint(members(plan(in))) != fmt.Sprint(got) {
			t.Fatal("membership is not deterministic")
		}
	})
	t.Run("analysis failure rolls back", func(t *testing.T) {
		in := baseInput(canary(splicev1.FailureRollback, splicev1.CanaryStep{SetWeight: 50,
			Analysis: &splicev1.CanaryAnalysis{MaxErrorRatePercent: ptr.To[int32](1)}}), fleet(4))
		pl := plan(in)
		pods := applyPlan(in.pods, pl, nil)
		for i := range pods {
			if pods[i].report.Running == digestA {
				pods[i].report.Calls, pods[i].report.Errors = 1000, 50
			}
		}
		in = carry(in, pl, pods, t0)
		pl = plan(in)
		if pl.phase != splicev1.PhaseRolledBack || pl.degr.Reason != ReasonAnalysisFailed || countOn(pl, digestB) != 4 {
			t.Fatalf("phase %s reason %s, %d on stable: %s", pl.phase, pl.degr.Reason, countOn(pl, digestB), pl.message)
		}
	})
	t.Run("analysis failure pauses when told, and promotion overrides it", func(t *testing.T) {
		in := baseInput(canary(splicev1.FailurePause,
			splicev1.CanaryStep{SetWeight: 50, Analysis: &splicev1.CanaryAnalysis{MaxSwapLatency: &metav1.Duration{Duration: time.Millisecond}}},
			splicev1.CanaryStep{SetWeight: 100}), fleet(4))
		pl := plan(in)
		in = carry(in, pl, applyPlan(in.pods, pl, nil), t0) // swaps take 10ms
		pl = plan(in)
		if pl.phase != splicev1.PhasePaused || pl.paused.Reason != ReasonAnalysisFailed || countOn(pl, digestA) != 2 {
			t.Fatalf("phase %s reason %s, %d on new", pl.phase, pl.paused.Reason, countOn(pl, digestA))
		}
		in = carry(in, pl, in.pods, t0)
		in.controls.promote = true
		if pl = plan(in); *pl.step != 1 || countOn(pl, digestA) != 4 {
			t.Fatalf("promote over a failed analysis: step %d, %d on new", *pl.step, countOn(pl, digestA))
		}
	})
	t.Run("failed swaps count against maxFailedSwaps", func(t *testing.T) {
		st := canary(splicev1.FailureRollback, splicev1.CanaryStep{SetWeight: 50, Analysis: &splicev1.CanaryAnalysis{MaxFailedSwaps: ptr.To[int32](1)}})
		in := baseInput(st, fleet(4))
		pl := plan(in)
		ms := members(pl)
		in = carry(in, pl, applyPlan(in.pods, pl, map[string]splicev1.SwapState{ms[0]: splicev1.SwapFailed}), t0)
		if pl = plan(in); pl.phase == splicev1.PhaseRolledBack {
			t.Fatalf("one failure is within maxFailedSwaps 1: %s", pl.message)
		}
		in = carry(in, pl, applyPlan(in.pods, pl, map[string]splicev1.SwapState{ms[0]: splicev1.SwapFailed, ms[1]: splicev1.SwapRolledBack}), t0)
		if pl = plan(in); pl.phase != splicev1.PhaseRolledBack {
			t.Fatalf("two failures: phase %s", pl.phase)
		}
	})
	t.Run("promote-full skips every step", func(t *testing.T) {
		in := baseInput(canary(splicev1.FailureRollback, splicev1.CanaryStep{SetWeight: 10, Pause: &splicev1.CanaryPause{}},
			splicev1.CanaryStep{SetWeight: 50, Pause: &splicev1.CanaryPause{}}), fleet(6))
		in.controls.promoteFull = true
		if pl := plan(in); countOn(pl, digestA) != 6 || *pl.step != 2 {
			t.Fatalf("%d on new, step %d", countOn(pl, digestA), *pl.step)
		}
	})
}

func TestPlanControls(t *testing.T) {
	st := canary(splicev1.FailureRollback, splicev1.CanaryStep{SetWeight: 50})
	t.Run("pause freezes the pods' annotations", func(t *testing.T) {
		in := baseInput(st, fleet(4))
		pl := plan(in)
		in = carry(in, pl, applyTargetsOnly(in.pods, pl), t0)
		in.controls.paused = true
		pl2 := plan(in)
		if pl2.phase != splicev1.PhasePaused || pl2.paused.Reason != ReasonPausedByUser || fmt.Sprint(members(pl2)) != fmt.Sprint(members(pl)) {
			t.Fatalf("phase %s, members %v -> %v", pl2.phase, members(pl), members(pl2))
		}
	})
	t.Run("abort returns every pod to stable", func(t *testing.T) {
		in := baseInput(st, fleet(4))
		pl := plan(in)
		in = carry(in, pl, applyPlan(in.pods, pl, nil), t0)
		in.controls.aborted = true
		pl = plan(in)
		if pl.phase != splicev1.PhaseRolledBack || pl.progressing.Reason != ReasonAborted || countOn(pl, digestB) != 4 {
			t.Fatalf("phase %s reason %s", pl.phase, pl.progressing.Reason)
		}
	})
	t.Run("no artifact: pods stay on stable, new pods get it", func(t *testing.T) {
		in := baseInput(st, append(fleet(2), podState{name: "fresh"}))
		in.artifact = nil
		pl := plan(in)
		if pl.targets["fresh"].Artifact != oldArt.Ref || pl.progressing.Reason != ReasonWaitingForBuild {
			t.Fatalf("fresh pod target %+v, reason %s", pl.targets["fresh"], pl.progressing.Reason)
		}
	})
	t.Run("completed rollout keeps new pods on the artifact", func(t *testing.T) {
		in := baseInput(st, append(fleet(2), podState{name: "fresh"}))
		in.stable = newArt
		in.status.RolloutDigest = digestA
		in.status.Phase = splicev1.PhaseCompleted
		if pl := plan(in); pl.phase != splicev1.PhaseCompleted || pl.targets["fresh"].Artifact != newArt.Ref {
			t.Fatalf("phase %s fresh %+v", pl.phase, pl.targets["fresh"])
		}
	})
	t.Run("a new artifact restarts at the first step", func(t *testing.T) {
		in := baseInput(st, fleet(4))
		in.status = splicev1.CompilerVersionStatus{Phase: splicev1.PhaseRolledBack, RolloutDigest: "sha256:" + fmt.Sprintf("%064d", 7),
			CurrentStepIndex: ptr.To[int32](3)}
		pl := plan(in)
		if pl.phase != splicev1.PhaseProgressing || *pl.step != 0 || pl.rolloutDigest != digestA {
			t.Fatalf("phase %s step %d digest %s", pl.phase, *pl.step, pl.rolloutDigest)
		}
	})
	t.Run("plan does not modify its input", func(t *testing.T) {
		in := baseInput(st, fleet(4))
		in.controls.promote = true
		before := fmt.Sprintf("%+v", *in)
		plan(in)
		if after := fmt.Sprintf("%+v", *in); after != before {
			t.Fatal("plan modified its input")
		}
	})
}

// applyTargetsOnly sets the pods' annotations without any agent answering.
func applyTargetsOnly(pods []podState, pl *rolloutPlan) []podState {
	out := make([]podState, len(pods))
	for i, p := range pods {
		p.target = pl.targets[p.name]
		out[i] = p
	}
	return out
}

func members(pl *rolloutPlan) []string {
	var out []string
	for name, t := range pl.targets {
		if splicev1.DigestOf(t.Artifact) == digestA {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// A request-level canary, as the real agent reports it: Running stays the stable artifact, the
// report carries the share, and the counters are the canary version's.
func TestPlanCanaryTrafficShares(t *testing.T) {
	t.Run("a step waits for the share it plans, not the previous step's", func(t *testing.T) {
		in := baseInput(canary(splicev1.FailureRollback,
			splicev1.CanaryStep{SetWeight: 50, TrafficPercent: ptr.To[int32](10)},
			splicev1.CanaryStep{SetWeight: 50, TrafficPercent: ptr.To[int32](50), Pause: &splicev1.CanaryPause{}},
		), fleet(2))
		pl := plan(in)
		in = carry(in, pl, applyPlan(in.pods, pl, nil), t0.Add(time.Second))
		// Step 1 is done at 10%; step 2 is planned in the same pass, and its member still
		// reports 10%: the step is not done, so it does not reach its pause.
		pl = plan(in)
		if *pl.step != 1 || pl.phase != splicev1.PhaseProgressing {
			t.Fatalf("step %d phase %s (%s): a member reporting 10%% counted as done at 50%%", *pl.step, pl.phase, pl.message)
		}
		in = carry(in, pl, applyPlan(in.pods, pl, nil), t0.Add(2*time.Second))
		if pl = plan(in); pl.phase != splicev1.PhasePaused || pl.paused.Reason != ReasonAwaitingPromotion {
			t.Fatalf("at 50%%: phase %s (%s)", pl.phase, pl.message)
		}
	})
	t.Run("the analysis judges the canary share's counters", func(t *testing.T) {
		in := baseInput(canary(splicev1.FailureRollback,
			splicev1.CanaryStep{SetWeight: 50, TrafficPercent: ptr.To[int32](20),
				Analysis: &splicev1.CanaryAnalysis{MaxErrorRatePercent: ptr.To[int32](5)}, Pause: &splicev1.CanaryPause{}},
		), fleet(2))
		pl := plan(in)
		in = carry(in, pl, applyPlan(in.pods, pl, nil), t0.Add(time.Second))
		if pl = plan(in); pl.phase != splicev1.PhasePaused {
			t.Fatalf("no calls yet: phase %s (%s)", pl.phase, pl.message)
		}
		for i := range in.pods {
			if r := in.pods[i].report; r.Digest == digestA {
				if r.Running != digestB || !r.CountsDigest() {
					t.Fatalf("canary member's report %+v", r)
				}
				r.Calls, r.Errors = 100, 20
			}
		}
		in = carry(in, pl, in.pods, t0.Add(20*time.Second))
		if pl = plan(in); pl.phase != splicev1.PhaseRolledBack || countOn(pl, digestA) != 0 {
			t.Fatalf("20%% errors on the canary share: phase %s (%s)", pl.phase, pl.message)
		}
	})
}

// The error rate is judged on at least analysis.minCalls calls (default 100), either way.
func TestPlanCanaryMinCalls(t *testing.T) {
	step := func(minCalls *int32) *rolloutInput {
		return baseInput(canary(splicev1.FailureRollback,
			splicev1.CanaryStep{SetWeight: 50, Pause: &splicev1.CanaryPause{Duration: &metav1.Duration{Duration: 10 * time.Second}},
				Analysis: &splicev1.CanaryAnalysis{MaxErrorRatePercent: ptr.To[int32](5), MinCalls: minCalls}},
			splicev1.CanaryStep{SetWeight: 100, Pause: &splicev1.CanaryPause{}},
		), fleet(2))
	}
	// swapped plays the agents, then sets the canary member's counters.
	swapped := func(in *rolloutInput, calls, errs uint64, at time.Time) *rolloutInput {
		pl := plan(in)
		pods := applyPlan(in.pods, pl, nil)
		for i := range pods {
			if pods[i].report.Digest == digestA {
				pods[i].report.Calls, pods[i].report.Errors = calls, errs
			}
		}
		return carry(in, pl, pods, at)
	}
	t.Run("too few calls: the step waits past its pause, whatever their error rate", func(t *testing.T) {
		in := swapped(step(nil), 40, 20, t0.Add(time.Second))
		pl := plan(in) // the pause starts
		in = carry(in, pl, in.pods, t0.Add(time.Minute))
		pl = plan(in)
		if pl.phase != splicev1.PhaseProgressing || pl.progressing.Reason != ReasonAnalysisPending || *pl.step != 0 ||
			!strings.Contains(pl.message, "after 100 plugin calls") || !strings.Contains(pl.message, "40 reported") {
			t.Fatalf("40 calls, 50%% errors: phase %s reason %s step %d: %s", pl.phase, pl.progressing.Reason, *pl.step, pl.message)
		}
		// Enough calls, few errors: the step advances.
		for i := range in.pods {
			if in.pods[i].report.Digest == digestA {
				in.pods[i].report.Calls, in.pods[i].report.Errors = 400, 4
			}
		}
		in = carry(in, pl, in.pods, t0.Add(2*time.Minute))
		if pl = plan(in); *pl.step != 1 {
			t.Fatalf("400 calls, 1%% errors: step %d phase %s: %s", *pl.step, pl.phase, pl.message)
		}
	})
	t.Run("enough calls, too many errors: rolled back", func(t *testing.T) {
		in := swapped(step(nil), 200, 20, t0.Add(time.Second))
		if pl := plan(in); pl.phase != splicev1.PhaseRolledBack {
			t.Fatalf("200 calls, 10%% errors: phase %s: %s", pl.phase, pl.message)
		}
	})
	t.Run("minCalls 0 judges at once, and passes a step without calls", func(t *testing.T) {
		in := swapped(step(ptr.To[int32](0)), 0, 0, t0.Add(time.Second))
		pl := plan(in)
		in = carry(in, pl, in.pods, t0.Add(time.Minute))
		if pl = plan(in); *pl.step != 1 {
			t.Fatalf("minCalls 0, no calls: step %d phase %s: %s", *pl.step, pl.phase, pl.message)
		}
	})
}

// The canary pods of a step that judges their error rate are asked for fresher counters; no
// other pod is.
func TestPlanCanaryAsksForCounters(t *testing.T) {
	in := baseInput(canary(splicev1.FailureRollback,
		splicev1.CanaryStep{SetWeight: 50, Analysis: &splicev1.CanaryAnalysis{MaxErrorRatePercent: ptr.To[int32](5)}, Pause: &splicev1.CanaryPause{}},
		splicev1.CanaryStep{SetWeight: 100, Analysis: &splicev1.CanaryAnalysis{MaxFailedSwaps: ptr.To[int32](0)}, Pause: &splicev1.CanaryPause{}},
	), fleet(4))
	pl := plan(in)
	asked := 0
	for name, tg := range pl.targets {
		switch {
		case contains(members(pl), name) && tg.CountersInterval != "10s":
			t.Fatalf("canary member %s: %+v, want counters every 10s", name, tg)
		case !contains(members(pl), name) && tg.CountersInterval != "":
			t.Fatalf("stable pod %s asked for counters: %+v", name, tg)
		case tg.CountersInterval != "":
			asked++
		}
	}
	if asked != 2 {
		t.Fatalf("%d pods asked for counters, want the 2 members", asked)
	}
	// The next step judges no error rate: nobody is asked.
	in = carry(in, pl, applyPlan(in.pods, pl, nil), t0.Add(time.Second))
	in.controls.promote = true
	for name, tg := range plan(in).targets {
		if tg.CountersInterval != "" {
			t.Fatalf("pod %s asked for counters in a step without an error-rate analysis: %+v", name, tg)
		}
	}
}
