package controllers

import (
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

func canary(onFailure splicev1.FailurePolicy, steps ...splicev1.CanaryStep) splicev1.RolloutStrategy {
	return splicev1.RolloutStrategy{Type: splicev1.StrategyCanary, Canary: &splicev1.CanaryStrategy{Steps: steps, OnFailure: onFailure}}
}

func TestPlanCanarySteps(t *testing.T) {
	in := baseInput(canary(splicev1.FailureRollback,
		splicev1.CanaryStep{SetWeight: 10, TrafficPercent: ptr.To[int32](5), Pause: &splicev1.CanaryPause{Duration: &metav1.Duration{Duration: time.Minute}}},
		splicev1.CanaryStep{SetWeight: 50, Pause: &splicev1.CanaryPause{}},
	), fleet(10))
	pl := plan(in)
	expect(t, "step 1", pl, atStep(0), onNew(1), phaseIs(splicev1.PhaseProgressing))
	m := members(pl)[0]
	expect(t, "canary target: 5% of its calls, the stable version kept", pl, splitsCalls(m, oldArt.Ref, 5))
	in = carry(in, pl, applyPlan(in.pods, pl, nil), t0.Add(time.Second))
	pl = plan(in)
	expect(t, "step 1 swapped", pl, phaseIs(splicev1.PhasePaused), pausedBy(splicev1.ReasonPauseStep), requeues(time.Minute))
	// Still paused half-way through.
	in = carry(in, pl, in.pods, t0.Add(31*time.Second))
	pl = plan(in)
	expect(t, "half-way", pl, phaseIs(splicev1.PhasePaused), requeues(30*time.Second))
	// The pause ends: step 2, five pods, the first member kept.
	in = carry(in, pl, in.pods, t0.Add(62*time.Second))
	pl = plan(in)
	expect(t, "step 2", pl, atStep(1), onNew(5), servesAllCalls(m, digestA))
	in = carry(in, pl, applyPlan(in.pods, pl, nil), t0.Add(70*time.Second))
	pl = plan(in)
	expect(t, "want an indefinite pause", pl, phaseIs(splicev1.PhasePaused), pausedBy(splicev1.ReasonAwaitingPromotion), requeues(0))
	in = carry(in, pl, in.pods, t0.Add(time.Hour))
	pl = plan(in)
	expect(t, "an indefinite pause ended by itself", pl, phaseIs(splicev1.PhasePaused))
	in = carry(in, pl, in.pods, t0.Add(time.Hour))
	in.controls.promote = true
	pl = plan(in)
	expect(t, "after promotion", pl, atStep(2), onNew(10), phaseIs(splicev1.PhaseProgressing))
	in = carry(in, pl, applyPlan(in.pods, pl, nil), t0.Add(time.Hour))
	expect(t, "final", plan(in), phaseIs(splicev1.PhaseCompleted), stableIs(digestA))
}

func TestPlanCanaryMembership(t *testing.T) {
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
}

func TestPlanCanaryAnalysisFailure(t *testing.T) {
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
		expect(t, "5% errors", plan(in), phaseIs(splicev1.PhaseRolledBack), degradedBy(splicev1.ReasonAnalysisFailed), onStable(4))
	})
	t.Run("analysis failure pauses when told, and promotion overrides it", func(t *testing.T) {
		in := baseInput(canary(splicev1.FailurePause,
			splicev1.CanaryStep{SetWeight: 50, Analysis: &splicev1.CanaryAnalysis{MaxSwapLatency: &metav1.Duration{Duration: time.Millisecond}}},
			splicev1.CanaryStep{SetWeight: 100}), fleet(4))
		pl := plan(in)
		in = carry(in, pl, applyPlan(in.pods, pl, nil), t0) // swaps take 10ms
		pl = plan(in)
		expect(t, "slow swaps", pl, phaseIs(splicev1.PhasePaused), pausedBy(splicev1.ReasonAnalysisFailed), onNew(2))
		in = carry(in, pl, in.pods, t0)
		in.controls.promote = true
		expect(t, "promote over a failed analysis", plan(in), atStep(1), onNew(4))
	})
	t.Run("failed swaps count against maxFailedSwaps", func(t *testing.T) {
		st := canary(splicev1.FailureRollback, splicev1.CanaryStep{SetWeight: 50, Analysis: &splicev1.CanaryAnalysis{MaxFailedSwaps: ptr.To[int32](1)}})
		in := baseInput(st, fleet(4))
		pl := plan(in)
		ms := members(pl)
		in = carry(in, pl, applyPlan(in.pods, pl, map[string]splicev1.SwapState{ms[0]: splicev1.SwapFailed}), t0)
		pl = plan(in)
		expect(t, "one failure is within maxFailedSwaps 1", pl, phaseIsNot(splicev1.PhaseRolledBack))
		in = carry(in, pl, applyPlan(in.pods, pl, map[string]splicev1.SwapState{ms[0]: splicev1.SwapFailed, ms[1]: splicev1.SwapRolledBack}), t0)
		expect(t, "two failures", plan(in), phaseIs(splicev1.PhaseRolledBack))
	})
}

func TestPlanCanaryPromotion(t *testing.T) {
	t.Run("promote-full skips every step", func(t *testing.T) {
		in := baseInput(canary(splicev1.FailureRollback, splicev1.CanaryStep{SetWeight: 10, Pause: &splicev1.CanaryPause{}},
			splicev1.CanaryStep{SetWeight: 50, Pause: &splicev1.CanaryPause{}}), fleet(6))
		in.controls.promoteFull = true
		expect(t, "promote-full", plan(in), onNew(6), atStep(2))
	})
	// A promotion skips the step the rollout stands on, not the gates of the step it reaches.
	t.Run("promote skips one step", func(t *testing.T) {
		in := baseInput(canary(splicev1.FailureRollback, splicev1.CanaryStep{SetWeight: 50, Pause: &splicev1.CanaryPause{}},
			splicev1.CanaryStep{SetWeight: 50, Pause: &splicev1.CanaryPause{}}), fleet(4))
		pl := plan(in)
		in = carry(in, pl, applyPlan(in.pods, pl, nil), t0.Add(time.Second))
		in.controls.promote = true
		expect(t, "promoted to a step its pods already run", plan(in), atStep(1), phaseIs(splicev1.PhasePaused),
			pausedBy(splicev1.ReasonAwaitingPromotion), pauseStartedAt(t0.Add(time.Second)))
	})
}

// A done step moves to the next in the same pass, as far as the pods allow.
func TestPlanCanaryPassesDoneSteps(t *testing.T) {
	in := baseInput(canary(splicev1.FailureRollback, splicev1.CanaryStep{SetWeight: 50}, splicev1.CanaryStep{SetWeight: 50},
		splicev1.CanaryStep{SetWeight: 50, Pause: &splicev1.CanaryPause{Duration: &metav1.Duration{Duration: time.Minute}}},
		splicev1.CanaryStep{SetWeight: 100}), fleet(4))
	pl := plan(in)
	expect(t, "step 1", pl, atStep(0), onNew(2), phaseIs(splicev1.PhaseProgressing), progressingBy(splicev1.ReasonSwapping))
	at := t0.Add(time.Second)
	in = carry(in, pl, applyPlan(in.pods, pl, nil), at)
	expect(t, "steps 1 and 2 done", plan(in), atStep(2), onNew(2), phaseIs(splicev1.PhasePaused), pausedBy(splicev1.ReasonPauseStep),
		requeues(time.Minute), stepStartedAt(at), pauseStartedAt(at))
}

// Each step's pause starts when that step reaches it, not when the step before paused.
func TestPlanCanaryEachPauseStartsAnew(t *testing.T) {
	pause := &splicev1.CanaryPause{Duration: &metav1.Duration{Duration: time.Minute}}
	in := baseInput(canary(splicev1.FailureRollback, splicev1.CanaryStep{SetWeight: 50, Pause: pause},
		splicev1.CanaryStep{SetWeight: 50, Pause: pause}, splicev1.CanaryStep{SetWeight: 100}), fleet(4))
	pl := plan(in)
	in = carry(in, pl, applyPlan(in.pods, pl, nil), t0.Add(time.Second))
	pl = plan(in)
	expect(t, "step 1 pauses", pl, atStep(0), pausedBy(splicev1.ReasonPauseStep), pauseStartedAt(t0.Add(time.Second)))
	in = carry(in, pl, in.pods, t0.Add(62*time.Second))
	expect(t, "step 2 pauses in the same pass", plan(in), atStep(1), pausedBy(splicev1.ReasonPauseStep), requeues(time.Minute),
		pauseStartedAt(t0.Add(62*time.Second)))
}

func splitsCalls(pod, stableRef string, percent int32) check {
	return func(pl *rolloutPlan) (bool, string) {
		tg := pl.targets[pod]
		return tg.Stable == stableRef && tg.TrafficPercent != nil && *tg.TrafficPercent == percent, fmt.Sprintf("pod %s target %+v", pod, tg)
	}
}

func servesAllCalls(pod, digest string) check {
	return func(pl *rolloutPlan) (bool, string) {
		tg := pl.targets[pod]
		return splicev1.DigestOf(tg.Artifact) == digest && tg.TrafficPercent == nil, fmt.Sprintf("pod %s target %+v", pod, tg)
	}
}

func stepStartedAt(at time.Time) check {
	return func(pl *rolloutPlan) (bool, string) {
		return pl.stepStart != nil && pl.stepStart.Time.Equal(at), fmt.Sprintf("step started %v, want %s", pl.stepStart, at)
	}
}

func pauseStartedAt(at time.Time) check {
	return func(pl *rolloutPlan) (bool, string) {
		return pl.pauseStart != nil && pl.pauseStart.Time.Equal(at), fmt.Sprintf("pause started %v, want %s", pl.pauseStart, at)
	}
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
		expect(t, "a member reporting 10% counted as done at 50%", pl, atStep(1), phaseIs(splicev1.PhaseProgressing))
		in = carry(in, pl, applyPlan(in.pods, pl, nil), t0.Add(2*time.Second))
		expect(t, "at 50%", plan(in), phaseIs(splicev1.PhasePaused), pausedBy(splicev1.ReasonAwaitingPromotion))
	})
	t.Run("the analysis judges the canary share's counters", func(t *testing.T) {
		in := baseInput(canary(splicev1.FailureRollback,
			splicev1.CanaryStep{SetWeight: 50, TrafficPercent: ptr.To[int32](20),
				Analysis: &splicev1.CanaryAnalysis{MaxErrorRatePercent: ptr.To[int32](5)}, Pause: &splicev1.CanaryPause{}},
		), fleet(2))
		pl := plan(in)
		in = carry(in, pl, applyPlan(in.pods, pl, nil), t0.Add(time.Second))
		pl = plan(in)
		expect(t, "no calls yet", pl, phaseIs(splicev1.PhasePaused))
		for i := range in.pods {
			if r := in.pods[i].report; r.Digest == digestA {
				if r.Running != digestB || !r.CountsDigest() {
					t.Fatalf("canary member's report %+v", r)
				}
				r.Calls, r.Errors = 100, 20
			}
		}
		in = carry(in, pl, in.pods, t0.Add(20*time.Second))
		expect(t, "20% errors on the canary share", plan(in), phaseIs(splicev1.PhaseRolledBack), onNew(0))
	})
}

// The error rate is judged on at least analysis.minCalls calls (default 100), either way.
func TestPlanCanaryMinCalls(t *testing.T) {
	step := func(minCalls *int32, pause time.Duration) *rolloutInput {
		return baseInput(canary(splicev1.FailureRollback,
			splicev1.CanaryStep{SetWeight: 50, Pause: &splicev1.CanaryPause{Duration: &metav1.Duration{Duration: pause}},
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
		in := swapped(step(nil, 10*time.Second), 40, 20, t0.Add(time.Second))
		pl := plan(in) // the pause starts
		in = carry(in, pl, in.pods, t0.Add(time.Minute))
		pl = plan(in)
		expect(t, "40 calls, 50% errors", pl, phaseIs(splicev1.PhaseProgressing), progressingBy(splicev1.ReasonAnalysisPending), atStep(0),
			says("after 100 plugin calls"), says("40 reported"))
		// Enough calls, few errors: the step advances.
		for i := range in.pods {
			if in.pods[i].report.Digest == digestA {
				in.pods[i].report.Calls, in.pods[i].report.Errors = 400, 4
			}
		}
		in = carry(in, pl, in.pods, t0.Add(2*time.Minute))
		expect(t, "400 calls, 1% errors", plan(in), atStep(1))
	})
	t.Run("enough calls, too many errors: rolled back", func(t *testing.T) {
		in := swapped(step(nil, 10*time.Second), 200, 20, t0.Add(time.Second))
		expect(t, "200 calls, 10% errors", plan(in), phaseIs(splicev1.PhaseRolledBack))
	})
	t.Run("minCalls 0 judges at once, and passes a step without calls", func(t *testing.T) {
		in := swapped(step(ptr.To[int32](0), 10*time.Second), 0, 0, t0.Add(time.Second))
		pl := plan(in)
		in = carry(in, pl, in.pods, t0.Add(time.Minute))
		expect(t, "minCalls 0, no calls", plan(in), atStep(1))
	})
	// The pause's start is recorded even when the pause is over at once, so that it is not
	// started again on every pass while the calls are awaited.
	t.Run("a pause over at once still records its start", func(t *testing.T) {
		at := t0.Add(time.Second)
		in := swapped(step(nil, 0), 40, 0, at)
		expect(t, "40 calls after a 0s pause", plan(in), progressingBy(splicev1.ReasonAnalysisPending), atStep(0), pauseStartedAt(at))
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
		case contains(members(pl), name) && tg.CountersInterval != 10*time.Second:
			t.Fatalf("canary member %s: %+v, want counters every 10s", name, tg)
		case !contains(members(pl), name) && tg.CountersInterval != 0:
			t.Fatalf("stable pod %s asked for counters: %+v", name, tg)
		case tg.CountersInterval != 0:
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
		if tg.CountersInterval != 0 {
			t.Fatalf("pod %s asked for counters in a step without an error-rate analysis: %+v", name, tg)
		}
	}
}
