package controllers

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"k8s.io/utils/ptr"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

// What a failed swap does under each policy: a host that crashed running the artifact is a
// failed swap like any other, RollingPatch rolls back or halts as its onFailure says, and the
// first rollout, with nothing to roll back to, stops.

func rollingPatch(onFailure splicev1.FailurePolicy) splicev1.RolloutStrategy {
	return splicev1.RolloutStrategy{Type: splicev1.StrategyRollingPatch, RollingPatch: &splicev1.RollingPatchStrategy{OnFailure: onFailure}}
}

// degradedSays checks the Degraded condition's message.
func degradedSays(part string) check {
	return func(pl *rolloutPlan) (bool, string) {
		return strings.Contains(pl.degr.Message, part), fmt.Sprintf("Degraded message %q does not say %q", pl.degr.Message, part)
	}
}

var crashNote = "the host crashed running " + digestA

// A pod whose host died running the artifact (Crashed) fails the swap under every policy:
// Strict rolls every pod back, RollingPatch and Canary roll back or pause as onFailure says,
// and the message, which is the Event's note, names the pod and says its host crashed.
func TestPlanCrashedIsAFailedSwap(t *testing.T) {
	pause := &splicev1.CanaryPause{}
	tests := []struct {
		name     string
		strategy splicev1.RolloutStrategy
		want     []check
	}{
		{name: "Strict rolls every pod back", strategy: strict(false),
			want: []check{phaseIs(splicev1.PhaseRolledBack), onStable(4), degradedBy(splicev1.ReasonSwapFailed)}},
		{name: "Strict with recreateIncompatible rolls back too: a crash is no incompatibility", strategy: strict(true),
			want: []check{phaseIs(splicev1.PhaseRolledBack), onStable(4), evicts()}},
		{name: "RollingPatch rolls back by default", strategy: splicev1.RolloutStrategy{Type: splicev1.StrategyRollingPatch},
			want: []check{phaseIs(splicev1.PhaseRolledBack), onStable(4), degradedBy(splicev1.ReasonSwapFailed)}},
		{name: "RollingPatch onFailure Rollback", strategy: rollingPatch(splicev1.FailureRollback),
			want: []check{phaseIs(splicev1.PhaseRolledBack), onStable(4)}},
		{name: "RollingPatch onFailure Pause halts", strategy: rollingPatch(splicev1.FailurePause),
			want: []check{phaseIs(splicev1.PhaseDegraded), progressingBy(splicev1.ReasonSwapFailed), onNew(1)}},
		{name: "Canary rolls back", strategy: canary(splicev1.FailureRollback, splicev1.CanaryStep{SetWeight: 50, Pause: pause}),
			want: []check{phaseIs(splicev1.PhaseRolledBack), onStable(4), degradedBy(splicev1.ReasonSwapFailed)}},
		{name: "Canary pauses", strategy: canary(splicev1.FailurePause, splicev1.CanaryStep{SetWeight: 50, Pause: pause}),
			want: []check{phaseIs(splicev1.PhasePaused), pausedBy(splicev1.ReasonAnalysisFailed), onNew(2)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := baseInput(tt.strategy, fleet(4))
			pl := plan(in)
			crashed := members(pl)[0]
			in = carry(in, pl, applyPlan(in.pods, pl, map[string]splicev1.SwapState{crashed: splicev1.SwapCrashed}), t0)
			expect(t, tt.name, plan(in), append(tt.want, says(crashed), says(crashNote))...)
		})
	}
	t.Run("a canary step's maxFailedSwaps counts a crash", func(t *testing.T) {
		step := splicev1.CanaryStep{SetWeight: 50, Pause: pause, Analysis: &splicev1.CanaryAnalysis{MaxFailedSwaps: ptr.To[int32](1)}}
		in := baseInput(canary(splicev1.FailureRollback, step), fleet(4))
		pl := plan(in)
		m := members(pl)
		in = carry(in, pl, applyPlan(in.pods, pl, map[string]splicev1.SwapState{m[0]: splicev1.SwapCrashed}), t0)
		pl = plan(in)
		expect(t, "one crash, one allowed", pl, phaseIsNot(splicev1.PhaseRolledBack), phaseIsNot(splicev1.PhasePaused))
		in = carry(in, pl, applyPlan(in.pods, pl, map[string]splicev1.SwapState{m[0]: splicev1.SwapCrashed, m[1]: splicev1.SwapCrashed}), t0)
		expect(t, "two crashes, one allowed", plan(in), phaseIs(splicev1.PhaseRolledBack), says(crashNote))
	})
}

func TestPlanRollingPatchOnFailure(t *testing.T) {
	t.Run("Rollback, the default: every pod returns to the stable artifact, and stays", func(t *testing.T) {
		in := baseInput(splicev1.RolloutStrategy{Type: splicev1.StrategyRollingPatch}, fleet(8))
		pl := plan(in)
		first := members(pl)
		in = carry(in, pl, applyPlan(in.pods, pl, map[string]splicev1.SwapState{first[0]: splicev1.SwapFailed}), t0)
		pl = plan(in)
		expect(t, "failed swap", pl, phaseIs(splicev1.PhaseRolledBack), onStable(8), stableIs(digestB),
			degradedBy(splicev1.ReasonSwapFailed), says(first[0]), says("every pod returns to the stable artifact"))
		// The failed pod swaps back and reports Ready on the stable artifact: still rolled back.
		in = carry(in, pl, applyPlan(in.pods, pl, nil), t0)
		pl = plan(in)
		expect(t, "next pass", pl, phaseIs(splicev1.PhaseRolledBack), onStable(8), degradedBy(splicev1.ReasonSwapFailed))
		in = carry(in, pl, in.pods, t0)
		in.controls.retry = true
		expect(t, "retry", plan(in), phaseIs(splicev1.PhaseProgressing), onNew(2))
	})
	t.Run("an incompatible pod fails the swap too", func(t *testing.T) {
		in := baseInput(rollingPatch(splicev1.FailureRollback), fleet(4))
		pl := plan(in)
		in = carry(in, pl, applyPlan(in.pods, pl, map[string]splicev1.SwapState{members(pl)[0]: splicev1.SwapIncompatible}), t0)
		expect(t, "incompatible", plan(in), phaseIs(splicev1.PhaseRolledBack), onStable(4))
	})
	t.Run("Pause halts where the rollout stands", func(t *testing.T) {
		in := baseInput(rollingPatch(splicev1.FailurePause), fleet(8))
		pl := plan(in)
		first := members(pl)
		in = carry(in, pl, applyPlan(in.pods, pl, map[string]splicev1.SwapState{first[0]: splicev1.SwapRolledBack}), t0)
		expect(t, "rolled back by its host", plan(in), phaseIs(splicev1.PhaseDegraded), sameMembers(pl),
			progressingBy(splicev1.ReasonSwapFailed), says("onFailure: Pause"), says(splicev1.AnnotationAbort))
	})
}

// The first rollout has no stable artifact to return to: a failed swap stops it, whatever the
// policy. Every pod keeps what it was told (and what its host serves), no pod that was not told
// the artifact is told it, and it stays so after the failed pod is gone, until a retry.
func TestPlanFirstRolloutStops(t *testing.T) {
	pause := &splicev1.CanaryPause{}
	strategies := map[string]splicev1.RolloutStrategy{
		"Strict": strict(false), "Strict recreating": strict(true),
		"RollingPatch": {Type: splicev1.StrategyRollingPatch}, "RollingPatch Pause": rollingPatch(splicev1.FailurePause),
		"Canary":       canary(splicev1.FailureRollback, splicev1.CanaryStep{SetWeight: 25, Pause: pause}),
		"Canary Pause": canary(splicev1.FailurePause, splicev1.CanaryStep{SetWeight: 25, Pause: pause}),
	}
	for name, st := range strategies {
		for _, failure := range []splicev1.SwapState{splicev1.SwapCrashed, splicev1.SwapFailed, splicev1.SwapRolledBack} {
			t.Run(name+" "+string(failure), func(t *testing.T) {
				in := baseInput(st, fleet(4))
				in.stable = nil
				pl := plan(in)
				expect(t, "first pass", pl, onNew(4))
				in = carry(in, pl, applyPlan(in.pods, pl, map[string]splicev1.SwapState{"p01": failure}), t0)
				in.pods = append(in.pods, podState{name: "fresh", ready: true})
				pl = plan(in)
				stopped := []check{phaseIs(splicev1.PhaseDegraded), progressingBy(splicev1.ReasonRolloutStopped),
					degradedBy(splicev1.ReasonSwapFailed), degradedSays("p01"), degradedSays("no stable artifact"),
					toldToRun("p00", newArt.Ref), toldToRun("p01", newArt.Ref), toldToRun("fresh", ""), evicts()}
				expect(t, "a failed swap", pl, append(stopped, says("p01"), says("no other pod is told"))...)
				if failure == splicev1.SwapCrashed {
					expect(t, "a crash", pl, says(crashNote), degradedSays(crashNote))
				}
				// The failed pod goes away: the rollout stays stopped.
				pods := slices.DeleteFunc(slices.Clone(in.pods), func(p podState) bool { return p.name == "p01" })
				in = carry(in, pl, pods, t0)
				expect(t, "failed pod gone", plan(in), slices.Delete(stopped, 6, 7)...)
				// A retry starts over: every pod is told.
				in = carry(in, plan(in), pods, t0)
				in.controls.retry = true
				expect(t, "retry", plan(in), phaseIs(splicev1.PhaseProgressing), toldToRun("fresh", newArt.Ref), onNew(4))
			})
		}
	}
}

// In the first rollout an incompatible pod stops RollingPatch and Canary, for which it is a
// failed swap; under Strict it is what it always is there: evicted with recreateIncompatible,
// reported otherwise, and the other pods go on.
func TestPlanFirstRolloutIncompatible(t *testing.T) {
	first := func(st splicev1.RolloutStrategy) *rolloutPlan {
		in := baseInput(st, fleet(3))
		in.stable = nil
		pl := plan(in)
		in = carry(in, pl, applyPlan(in.pods, pl, map[string]splicev1.SwapState{"p01": splicev1.SwapIncompatible}), t0)
		return plan(in)
	}
	expect(t, "Strict recreating", first(strict(true)), phaseIs(splicev1.PhaseProgressing), evicts("p01"),
		degradedBy(splicev1.ReasonIncompatiblePods), onNew(3))
	expect(t, "Strict", first(strict(false)), phaseIs(splicev1.PhaseDegraded), evicts(),
		degradedBy(splicev1.ReasonIncompatiblePods), onNew(3))
	expect(t, "RollingPatch", first(splicev1.RolloutStrategy{Type: splicev1.StrategyRollingPatch}), phaseIs(splicev1.PhaseDegraded),
		progressingBy(splicev1.ReasonRolloutStopped), evicts())
	expect(t, "Canary", first(canary(splicev1.FailureRollback, splicev1.CanaryStep{SetWeight: 50})), phaseIs(splicev1.PhaseDegraded),
		progressingBy(splicev1.ReasonRolloutStopped))
}

// checkHostPolicy fails unless every target that names an artifact carries the consent and the
// bound, and no other target carries either.
func checkHostPolicy(t *testing.T, what string, pl *rolloutPlan, allowMinor bool, maxLoaded int32) {
	t.Helper()
	if len(pl.targets) == 0 {
		t.Fatalf("%s: the plan has no targets", what)
	}
	for name, tgt := range pl.targets {
		want := tgt
		want.AllowMinorAPIChange, want.MaxLoadedVersions = allowMinor, maxLoaded
		if tgt.Artifact == "" {
			want.AllowMinorAPIChange, want.MaxLoadedVersions = false, 0
		}
		if tgt.AllowMinorAPIChange != want.AllowMinorAPIChange || tgt.MaxLoadedVersions != want.MaxLoadedVersions {
			t.Errorf("%s: pod %s is told %+v; want allowMinorAPIChange %t and maxLoadedVersions %d", what, name, tgt,
				want.AllowMinorAPIChange, want.MaxLoadedVersions)
		}
		if err := tgt.Validate(); err != nil {
			t.Errorf("%s: pod %s is told what its agent would refuse: %v", what, name, err)
		}
	}
}

// Every pod the plan tells an artifact is told the CompilerVersion's consent to a minor API
// change and its bound on loaded versions, whichever policy, phase or control decided it.
func TestPlanTargetsCarryConsentAndBound(t *testing.T) {
	strategies := map[string]splicev1.RolloutStrategy{
		"Strict": strict(true), "RollingPatch": {Type: splicev1.StrategyRollingPatch},
		"Canary": canary(splicev1.FailureRollback, splicev1.CanaryStep{SetWeight: 50, TrafficPercent: ptr.To[int32](10)}),
	}
	for name, st := range strategies {
		for _, allow := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s allowMinor %t", name, allow), func(t *testing.T) {
				run := func(in *rolloutInput) *rolloutPlan {
					in.allowMinor, in.maxLoaded = allow, 5
					pl := plan(in)
					checkHostPolicy(t, fmt.Sprintf("phase %s", pl.phase), pl, allow, 5)
					return pl
				}
				in := baseInput(st, fleet(4))
				pl := run(in)
				in = carry(in, pl, applyPlan(in.pods, pl, nil), t0)
				pl = run(in)
				// A failure rolls back, a retry restarts.
				in = carry(in, pl, applyPlan(in.pods, pl, map[string]splicev1.SwapState{members(pl)[0]: splicev1.SwapFailed}), t0)
				pl = run(in)
				in = carry(in, pl, in.pods, t0)
				in.controls.retry = true
				pl = run(in)
				// Paused by a person and aborted: targets copied from the pods get them too.
				in = carry(in, pl, fleet(4), t0)
				in.controls.paused = true
				run(in)
				in.controls.paused, in.controls.aborted = false, true
				run(in)
				// No artifact yet, with and without a stable one; the first rollout.
				in = baseInput(st, fleet(4))
				in.artifact = nil
				run(in)
				in = baseInput(st, append(fleet(2), podState{name: "fresh"}))
				in.artifact, in.stable = nil, nil
				run(in)
				in = baseInput(st, fleet(4))
				in.stable = nil
				run(in)
			})
		}
	}
}

// Under Strict, a pod whose host refuses the artifact for a major plugin API change is
// recreated from its template (recreateIncompatible), and the message says what the image must
// carry; a refused minor change needs consent in the spec, which no recreation gives.
func TestPlanStrictAPIChanges(t *testing.T) {
	major := *newArt
	major.APIVersion = "2.0.0"
	pods := func(reason string) []podState {
		ps, _ := reportingFleet(1, 0)
		for i := range ps {
			if ps[i].report.State == splicev1.SwapIncompatible {
				ps[i].report.Reason = reason
			}
		}
		return ps
	}
	run := func(st splicev1.RolloutStrategy, reason string) *rolloutPlan {
		in := baseInput(st, pods(reason))
		in.artifact = &major
		in.status.RolloutDigest = digestA
		return plan(in)
	}
	image := "its image must carry a host built against plugin API 2.x"
	expect(t, "major, recreating", run(strict(true), splicev1.ReasonMajorAPIChange), evicts("inc00"),
		degradedBy(splicev1.ReasonIncompatiblePods), says(image), degradedSays(image), phaseIs(splicev1.PhaseProgressing))
	expect(t, "major, not recreating", run(strict(false), splicev1.ReasonMajorAPIChange), evicts(), phaseIs(splicev1.PhaseDegraded),
		degradedSays(image), degradedSays("recreateIncompatible"))
	expect(t, "minor without consent", run(strict(true), splicev1.ReasonMinorAPIChangeNotAllowed), evicts(),
		phaseIs(splicev1.PhaseDegraded), degradedSays("spec.plugin.allowMinorAPIChange"), degradedSays("inc00"))
}

// A rollout can complete before its version has failed: a host rolls it back on its own once
// enough calls panic, after every pod had reported Ready. The CompilerVersion must not go on
// saying Completed and healthy while hosts serve their previous version.
func TestPlanCompletedThenRolledBackByHosts(t *testing.T) {
	for _, failure := range []splicev1.SwapState{splicev1.SwapRolledBack, splicev1.SwapCrashed} {
		t.Run(string(failure), func(t *testing.T) {
			in := baseInput(rollingPatch(splicev1.FailureRollback), fleet(3))
			pl := plan(in)
			for i := 0; i < 10 && pl.phase != splicev1.PhaseCompleted; i++ {
				in = carry(in, pl, applyPlan(in.pods, pl, nil), t0)
				pl = plan(in)
			}
			expect(t, "completed", pl, phaseIs(splicev1.PhaseCompleted), stableIs(newArt.Digest))
			in = carry(in, pl, applyPlan(in.pods, pl, map[string]splicev1.SwapState{"p01": failure}), t0)
			expect(t, "a host backs out of it after the rollout completed", plan(in), phaseIs(splicev1.PhaseDegraded),
				degradedBy(splicev1.ReasonSwapFailed), degradedSays("p01"), says("after its rollout completed"), says("roll out another artifact"))
		})
	}
}
