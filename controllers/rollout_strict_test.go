package controllers

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

func strict(recreate bool) splicev1.RolloutStrategy {
	return splicev1.RolloutStrategy{Type: splicev1.StrategyStrict, Strict: &splicev1.StrictStrategy{RecreateIncompatible: recreate}}
}

func TestPlanStrict(t *testing.T) {
	t.Run("all at once, then complete", func(t *testing.T) {
		in := baseInput(strict(false), fleet(5))
		pl := plan(in)
		expect(t, "want all 5 pods at once", pl, onNew(5), phaseIs(splicev1.PhaseProgressing))
		in = carry(in, pl, applyPlan(in.pods, pl, nil), t0)
		expect(t, "once they run it", plan(in), phaseIs(splicev1.PhaseCompleted), stableIs(digestA))
	})
	t.Run("one failed swap rolls every pod back", func(t *testing.T) {
		in := baseInput(strict(false), fleet(4))
		pl := plan(in)
		in = carry(in, pl, applyPlan(in.pods, pl, map[string]splicev1.SwapState{"p02": splicev1.SwapFailed}), t0)
		pl = plan(in)
		expect(t, "failed swap", pl, phaseIs(splicev1.PhaseRolledBack), onStable(4), stableIs(digestB))
		// It stays rolled back on later passes, even once the failure report is gone.
		in = carry(in, pl, applyPlan(in.pods, pl, nil), t0)
		pl = plan(in)
		expect(t, "second pass", pl, phaseIs(splicev1.PhaseRolledBack), onStable(4))
		// A retry starts again.
		in = carry(in, pl, in.pods, t0)
		in.controls.retry = true
		expect(t, "retry", plan(in), phaseIs(splicev1.PhaseProgressing), onNew(4))
	})
}

func TestPlanStrictIncompatible(t *testing.T) {
	t.Run("incompatible pods are evicted when asked", func(t *testing.T) {
		in := baseInput(strict(true), fleet(3))
		pl := plan(in)
		in = carry(in, pl, applyPlan(in.pods, pl, map[string]splicev1.SwapState{"p01": splicev1.SwapIncompatible}), t0)
		pl = plan(in)
		expect(t, "incompatible p01", pl, evicts("p01"), degradedBy(splicev1.ReasonIncompatiblePods), phaseIs(splicev1.PhaseProgressing))
		// Its replacement (a new name) is asked to run the artifact and the rollout completes.
		pods := append([]podState{}, in.pods[0], in.pods[2], podState{name: "p01-new", ready: true})
		in = carry(in, pl, pods, t0)
		pl = plan(in)
		in = carry(in, pl, applyPlan(in.pods, pl, nil), t0)
		expect(t, "replaced", plan(in), phaseIs(splicev1.PhaseCompleted))
	})
	t.Run("incompatible pods are only reported otherwise", func(t *testing.T) {
		in := baseInput(strict(false), fleet(3))
		pl := plan(in)
		in = carry(in, pl, applyPlan(in.pods, pl, map[string]splicev1.SwapState{"p01": splicev1.SwapIncompatible}), t0)
		expect(t, "incompatible p01", plan(in), evicts(), phaseIs(splicev1.PhaseDegraded))
	})
}

func TestPlanFirstRollout(t *testing.T) {
	t.Run("first rollout without a stable artifact cannot roll back", func(t *testing.T) {
		in := baseInput(strict(false), fleet(2))
		in.stable = nil
		pl := plan(in)
		in = carry(in, pl, applyPlan(in.pods, pl, map[string]splicev1.SwapState{"p00": splicev1.SwapFailed}), t0)
		expect(t, "failed swap", plan(in), phaseIs(splicev1.PhaseDegraded), isDegraded(), toldToRun("p00", newArt.Ref))
	})
	t.Run("first rollout moves every pod at once, whatever the policy", func(t *testing.T) {
		for _, st := range []splicev1.RolloutStrategy{strict(false), {Type: splicev1.StrategyRollingPatch},
			canary(splicev1.FailureRollback, splicev1.CanaryStep{SetWeight: 10, Pause: &splicev1.CanaryPause{}})} {
			in := baseInput(st, fleet(6))
			in.stable = nil
			pl := plan(in)
			expect(t, string(st.Type), pl, onNew(6))
			in = carry(in, pl, applyPlan(in.pods, pl, nil), t0)
			expect(t, string(st.Type)+", once they run it", plan(in), phaseIs(splicev1.PhaseCompleted), stableIs(digestA))
		}
	})
}

// evicts is the plan's eviction list, in order.
func evicts(pods ...string) check {
	return func(pl *rolloutPlan) (bool, string) {
		return slices.Equal(pl.evict, pods), fmt.Sprintf("evict %q, want %q", pl.evict, pods)
	}
}

// reportingFleet builds pods told to run newArt: incompatible ones whose host cannot load it,
// failed ones whose swap failed, and two that run it. The pods come in reverse name order, so
// a plan that sorts nothing is caught.
func reportingFleet(incompatible, failed int) (pods []podState, incompatibleNames []string) {
	add := func(name string, state splicev1.SwapState) {
		p := podState{name: name, target: splicev1.DesiredState{Artifact: newArt.Ref},
			report: &splicev1.PodReport{Digest: digestA, Running: digestB, State: state}}
		if state == splicev1.SwapReady {
			p.ready, p.report.Running = true, digestA
		}
		pods = append(pods, p)
	}
	for i := range incompatible {
		name := fmt.Sprintf("inc%02d", i)
		incompatibleNames = append(incompatibleNames, name)
		add(name, splicev1.SwapIncompatible)
	}
	for i := range failed {
		add(fmt.Sprintf("fail%02d", i), splicev1.SwapFailed)
	}
	add("ok00", splicev1.SwapReady)
	add("ok01", splicev1.SwapReady)
	slices.Reverse(pods)
	return pods, incompatibleNames
}

// checkEvictions fails unless evict is exactly want, in name order, and names only pods.
func checkEvictions(t *testing.T, pods []podState, evict, want []string) {
	t.Helper()
	for _, name := range evict {
		if !slices.ContainsFunc(pods, func(p podState) bool { return p.name == name }) {
			t.Errorf("evict names %q, which is not a pod", name)
		}
	}
	if !slices.Equal(evict, want) {
		t.Errorf("evict = %v, want %v", evict, want)
	}
}

// checkSummary fails unless msg names at most five of the pods in names, and says how many
// more there are.
func checkSummary(t *testing.T, msg string, names []string) {
	t.Helper()
	listed := 0
	for _, name := range names {
		if strings.Contains(msg, name) {
			listed++
		}
	}
	if want := min(len(names), 5); listed != want {
		t.Errorf("message names %d pods, want %d: %s", listed, want, msg)
	}
	more := fmt.Sprintf("and %d more", len(names)-5)
	if len(names) > 5 && !strings.Contains(msg, more) {
		t.Errorf("message does not say %q: %s", more, msg)
	}
	if len(names) <= 5 && strings.Contains(msg, "more") {
		t.Errorf("message counts more pods than there are: %s", msg)
	}
}

// Strict evicts every incompatible pod (recreateIncompatible), and only them, however many.
func TestPlanStrictEvictsEveryIncompatiblePod(t *testing.T) {
	for _, n := range []int{1, 5, 6, 50} {
		t.Run(fmt.Sprintf("%d incompatible", n), func(t *testing.T) {
			pods, want := reportingFleet(n, 0)
			in := baseInput(strict(true), pods)
			in.status.RolloutDigest = digestA
			pl := plan(in)
			if pl.phase != splicev1.PhaseProgressing || pl.degr.Reason != splicev1.ReasonIncompatiblePods {
				t.Fatalf("phase %s degraded %s: %s", pl.phase, pl.degr.Reason, pl.message)
			}
			checkEvictions(t, pods, pl.evict, want)
			checkSummary(t, pl.message, want)
		})
	}
}

// The first rollout (no stable artifact) under Strict evicts the incompatible pods too, as
// planStrict does, while no swap failed; a failed swap stops it (planFirst): nothing is evicted
// then, and its message counts the failed and the incompatible pods.
func TestPlanFirstEvictsEveryIncompatiblePod(t *testing.T) {
	tests := []struct {
		incompatible, failed int
		recreate             bool
	}{
		{incompatible: 1, recreate: true},
		{incompatible: 5, recreate: true},
		{incompatible: 50, recreate: true},
		{incompatible: 6, recreate: false},
		{incompatible: 6, failed: 2, recreate: true},
		{incompatible: 50, failed: 3, recreate: true},
		{incompatible: 6, failed: 2, recreate: false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d incompatible %d failed recreate %t", tt.incompatible, tt.failed, tt.recreate), func(t *testing.T) {
			pods, want := reportingFleet(tt.incompatible, tt.failed)
			in := baseInput(strict(tt.recreate), pods)
			in.stable = nil
			in.status.RolloutDigest = digestA
			pl := plan(in)
			if tt.failed > 0 {
				if pl.phase != splicev1.PhaseDegraded || pl.degr.Reason != splicev1.ReasonSwapFailed || pl.progressing.Reason != splicev1.ReasonRolloutStopped {
					t.Fatalf("phase %s degraded %s progressing %s: %s", pl.phase, pl.degr.Reason, pl.progressing.Reason, pl.message)
				}
				checkEvictions(t, pods, pl.evict, nil)
				var bad []string
				for _, p := range pods {
					if p.report.State != splicev1.SwapReady {
						bad = append(bad, p.name)
					}
				}
				checkSummary(t, pl.message, bad)
				return
			}
			wantPhase := splicev1.PhaseProgressing
			if !tt.recreate {
				wantPhase = splicev1.PhaseDegraded
			}
			if pl.phase != wantPhase || pl.degr.Reason != splicev1.ReasonIncompatiblePods {
				t.Fatalf("phase %s degraded %s: %s", pl.phase, pl.degr.Reason, pl.message)
			}
			checkSummary(t, pl.message, want)
			if !tt.recreate {
				want = nil
			}
			checkEvictions(t, pods, pl.evict, want)
		})
	}
}
