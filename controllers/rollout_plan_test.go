package controllers

import (
	"fmt"
	"slices"
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
		pods[i] = podState{name: fmt.Sprintf("p%02d", i), ready: true, target: splicev1.DesiredState{Artifact: oldArt.Ref},
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
				p.report = &splicev1.PodReport{Digest: d, Running: d, State: splicev1.SwapReady, SwapLatencySeconds: 0.01, TrafficPercent: t.TrafficPercent}
				if t.TrafficPercent != nil {
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
		PauseStartTime: pl.pauseStart, RolloutDigest: pl.rolloutDigest,
		Conditions: []metav1.Condition{pl.progressing, pl.paused, pl.degr}, IncompatibleEvictions: pl.evictions}
	next.stable = pl.stable
	next.evictions = pl.evictions
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
		if pl.phase != splicev1.PhaseDegraded || pl.progressing.Reason != splicev1.ReasonMajorAPIChange || countOn(pl, digestA) != 0 {
			t.Fatalf("phase %s reason %s, %d pods moved", pl.phase, pl.progressing.Reason, countOn(pl, digestA))
		}
	})
	t.Run("failed swap halts and freezes with onFailure Pause", func(t *testing.T) {
		in := baseInput(splicev1.RolloutStrategy{Type: splicev1.StrategyRollingPatch,
			RollingPatch: &splicev1.RollingPatchStrategy{OnFailure: splicev1.FailurePause}}, fleet(8))
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

func TestPlanControls(t *testing.T) {
	st := canary(splicev1.FailureRollback, splicev1.CanaryStep{SetWeight: 50})
	t.Run("pause freezes the pods' annotations", func(t *testing.T) {
		in := baseInput(st, fleet(4))
		pl := plan(in)
		in = carry(in, pl, applyTargetsOnly(in.pods, pl), t0)
		in.controls.paused = true
		expect(t, "paused", plan(in), phaseIs(splicev1.PhasePaused), pausedBy(splicev1.ReasonPausedByUser), sameMembers(pl))
	})
	t.Run("abort returns every pod to stable", func(t *testing.T) {
		in := baseInput(st, fleet(4))
		pl := plan(in)
		in = carry(in, pl, applyPlan(in.pods, pl, nil), t0)
		in.controls.aborted = true
		expect(t, "aborted", plan(in), phaseIs(splicev1.PhaseRolledBack), progressingBy(splicev1.ReasonAborted), onStable(4))
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

func TestPlanBetweenRollouts(t *testing.T) {
	st := canary(splicev1.FailureRollback, splicev1.CanaryStep{SetWeight: 50})
	t.Run("no artifact: pods stay on stable, new pods get it", func(t *testing.T) {
		in := baseInput(st, append(fleet(2), podState{name: "fresh"}))
		in.artifact = nil
		expect(t, "no artifact", plan(in), toldToRun("fresh", oldArt.Ref), progressingBy(splicev1.ReasonWaitingForBuild))
	})
	t.Run("completed rollout keeps new pods on the artifact", func(t *testing.T) {
		in := baseInput(st, append(fleet(2), podState{name: "fresh"}))
		in.stable = newArt
		in.status.RolloutDigest = digestA
		in.status.Phase = splicev1.PhaseCompleted
		expect(t, "completed", plan(in), phaseIs(splicev1.PhaseCompleted), toldToRun("fresh", newArt.Ref))
	})
	t.Run("a new artifact restarts at the first step", func(t *testing.T) {
		in := baseInput(st, fleet(4))
		in.status = splicev1.CompilerVersionStatus{Phase: splicev1.PhaseRolledBack, RolloutDigest: "sha256:" + fmt.Sprintf("%064d", 7),
			CurrentStepIndex: ptr.To[int32](3)}
		expect(t, "new artifact", plan(in), phaseIs(splicev1.PhaseProgressing), atStep(0), rollingOut(digestA))
	})
}

// failureSummary is given the list a plan goes on to use (planStrict evicts it): it must name
// at most five, in order, and leave the list, its spare capacity included, as it was.
func TestFailureSummary(t *testing.T) {
	names := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("p%02d", n-1-i) // reverse order
		}
		return out
	}
	tests := []struct {
		names []string
		want  string
	}{
		{names: nil, want: ""},
		{names: names(1), want: "p00"},
		{names: names(5), want: "p00, p01, p02, p03, p04"},
		{names: names(6), want: "p00, p01, p02, p03, p04, and 1 more"},
		{names: names(50), want: "p00, p01, p02, p03, p04, and 45 more"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(len(tt.names)), func(t *testing.T) {
			backing := append(slices.Clone(tt.names), "spare", "capacity")
			list := backing[:len(tt.names)]
			if got := failureSummary(list); got != tt.want {
				t.Errorf("failureSummary = %q, want %q", got, tt.want)
			}
			if want := append(slices.Clone(tt.names), "spare", "capacity"); !slices.Equal(backing, want) {
				t.Errorf("failureSummary changed its argument: %v, was %v", backing, want)
			}
		})
	}
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

// check is one expectation about a plan: whether it holds, and what the plan says instead.
type check func(pl *rolloutPlan) (ok bool, got string)

// expect stops the test unless every check holds, saying which did not and what the plan says.
func expect(t *testing.T, what string, pl *rolloutPlan, checks ...check) {
	t.Helper()
	var failed []string
	for _, c := range checks {
		if ok, got := c(pl); !ok {
			failed = append(failed, got)
		}
	}
	if len(failed) > 0 {
		t.Fatalf("%s: %s (phase %s: %s)", what, strings.Join(failed, "; "), pl.phase, pl.message)
	}
}

func phaseIs(want splicev1.Phase) check {
	return func(pl *rolloutPlan) (bool, string) {
		return pl.phase == want, fmt.Sprintf("phase %s, want %s", pl.phase, want)
	}
}

func phaseIsNot(unwanted splicev1.Phase) check {
	return func(pl *rolloutPlan) (bool, string) { return pl.phase != unwanted, fmt.Sprintf("phase %s", pl.phase) }
}

func atStep(want int32) check {
	return func(pl *rolloutPlan) (bool, string) {
		if pl.step == nil {
			return false, fmt.Sprintf("no step, want step %d", want)
		}
		return *pl.step == want, fmt.Sprintf("step %d, want %d", *pl.step, want)
	}
}

// onNew and onStable count the pods told to run the new and the stable artifact.
func onNew(want int) check { return countTold(digestA, want) }

func onStable(want int) check { return countTold(digestB, want) }

func countTold(digest string, want int) check {
	return func(pl *rolloutPlan) (bool, string) {
		n := countOn(pl, digest)
		return n == want, fmt.Sprintf("%d pods told to run %s, want %d", n, digest[:13], want)
	}
}

func progressingBy(reason string) check {
	return condReason("Progressing", reason, func(pl *rolloutPlan) metav1.Condition { return pl.progressing })
}

func pausedBy(reason string) check {
	return condReason("Paused", reason, func(pl *rolloutPlan) metav1.Condition { return pl.paused })
}

func degradedBy(reason string) check {
	return condReason("Degraded", reason, func(pl *rolloutPlan) metav1.Condition { return pl.degr })
}

func condReason(name, want string, of func(*rolloutPlan) metav1.Condition) check {
	return func(pl *rolloutPlan) (bool, string) {
		got := of(pl).Reason
		return got == want, fmt.Sprintf("%s reason %s, want %s", name, got, want)
	}
}

func isDegraded() check {
	return func(pl *rolloutPlan) (bool, string) {
		return pl.degr.Status == metav1.ConditionTrue, fmt.Sprintf("Degraded %s, want True", pl.degr.Status)
	}
}

func requeues(want time.Duration) check {
	return func(pl *rolloutPlan) (bool, string) {
		return pl.requeueAfter == want, fmt.Sprintf("requeueAfter %s, want %s", pl.requeueAfter, want)
	}
}

// stableIs is the stable artifact the plan records.
func stableIs(digest string) check {
	return func(pl *rolloutPlan) (bool, string) {
		if pl.stable == nil {
			return false, "no stable artifact, want " + digest
		}
		return pl.stable.Digest == digest, "stable artifact " + pl.stable.Digest + ", want " + digest
	}
}

func rollingOut(digest string) check {
	return func(pl *rolloutPlan) (bool, string) {
		return pl.rolloutDigest == digest, "rolling out " + pl.rolloutDigest + ", want " + digest
	}
}

// toldToRun is the artifact ref a pod's target names.
func toldToRun(pod, ref string) check {
	return func(pl *rolloutPlan) (bool, string) {
		return pl.targets[pod].Artifact == ref, fmt.Sprintf("pod %s target %+v, want %s", pod, pl.targets[pod], ref)
	}
}

func sameMembers(before *rolloutPlan) check {
	return func(pl *rolloutPlan) (bool, string) {
		return slices.Equal(members(pl), members(before)), fmt.Sprintf("members %v, were %v", members(pl), members(before))
	}
}

func says(part string) check {
	return func(pl *rolloutPlan) (bool, string) {
		return strings.Contains(pl.message, part), fmt.Sprintf("message does not say %q", part)
	}
}
