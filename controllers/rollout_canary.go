package controllers

import (
	"fmt"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

// planCanary runs the steps in order. A step moves setWeight percent of the pods (picked by a
// stable hash, and never taken back while the rollout holds) to the artifact, optionally with
// only trafficPercent of their requests routed to it while the stable version stays loaded;
// its gates (rollout_canary_gates.go) then judge it, and a step they all let through is done.
// A done step moves to the next one in the same pass, so a pass goes as far as the pods allow.
// After the last step every pod moves, and the artifact becomes stable. A failed gate rolls
// back or pauses, as onFailure says; promote goes on to the next step from wherever the
// rollout stands, a failed-and-paused analysis included.
func planCanary(in *rolloutInput, pl *rolloutPlan) *rolloutPlan {
	steps, onFailure := canaryPolicy(in)
	idx := int32(0)
	if pl.step != nil {
		idx = *pl.step
	}
	if in.controls.promoteFull {
		idx = int32(len(steps))
	}
	// A promotion skips the gates of the step the rollout stands on, and only of that one.
	promoted := in.controls.promote
	for ; int(idx) < len(steps); idx++ {
		if !promoted {
			s := newCanaryStep(in, pl, steps, idx)
			pl.step, pl.targets = ptrTo(idx), s.targets()
			if v := s.judge(); v != nil {
				return s.decide(pl, onFailure, v)
			}
		}
		promoted = false
		now := metav1.NewTime(in.now)
		pl.step, pl.stepStart, pl.pauseStart = ptrTo(idx+1), &now, nil
	}
	pl.step = ptrTo(idx)
	return planCanaryFinal(in, pl, onFailure)
}

// canaryPolicy returns the canary's steps and what a failed step does (Rollback unless set).
func canaryPolicy(in *rolloutInput) ([]splicev1.CanaryStep, splicev1.FailurePolicy) {
	c := in.strategy.Canary
	if c == nil {
		return nil, c.OnFailureOrDefault()
	}
	return c.Steps, c.OnFailureOrDefault()
}

func ptrTo(i int32) *int32 { return &i }

// planCanaryFinal is after the last step: every pod runs the artifact, with all its calls.
func planCanaryFinal(in *rolloutInput, pl *rolloutPlan, onFailure splicev1.FailurePolicy) *rolloutPlan {
	pl.targets = everyPod(in, splicev1.DesiredState{Artifact: in.artifact.Ref})
	if failed, incompatible := failedPods(in, anyPod); len(failed)+len(incompatible) > 0 {
		return canaryFailed(in, pl, onFailure, splicev1.ReasonSwapFailed,
			fmt.Sprintf("final step: the swap of %s failed on %s", in.artifact.Digest, failedSummary(in, slices.Concat(failed, incompatible))))
	}
	done := countDone(in, anyPod, nil)
	if len(in.pods) > 0 && done == len(in.pods) {
		return complete(in, pl)
	}
	pl.phase = splicev1.PhaseProgressing
	pl.message = fmt.Sprintf("Canary final step: %d of %d pods run %s", done, len(in.pods), in.artifact.Digest)
	pl.progressing = cond(splicev1.ConditionProgressing, true, splicev1.ReasonSwapping, pl.message)
	return pl
}

// canaryStep is one step as a pass of the plan sees it: what its gates judge.
type canaryStep struct {
	in    *rolloutInput
	index int32
	spec  splicev1.CanaryStep
	// name names the step in messages.
	name string
	// members are the pods that run the artifact in this step, and target what they are told.
	members map[string]bool
	target  splicev1.DesiredState
	// prom is the Prometheus result run for this step; nil when none was.
	prom *promResult
	// pauseStart is when the step's pause began: as recorded, or now for a step with a pause
	// none was recorded for yet. It is recorded once the step reaches its pause.
	pauseStart *metav1.Time
}

func newCanaryStep(in *rolloutInput, pl *rolloutPlan, steps []splicev1.CanaryStep, idx int32) *canaryStep {
	spec := steps[idx]
	s := &canaryStep{
		in: in, index: idx, spec: spec,
		name:       fmt.Sprintf("Canary step %d/%d (setWeight %d%%)", idx+1, len(steps), spec.SetWeight),
		members:    pickMembers(in, weightCount(spec.SetWeight, len(in.pods))),
		target:     memberTarget(in, spec),
		pauseStart: pl.pauseStart,
	}
	// A result answers the query of the step it was run for, not of a step reached later.
	if in.prom != nil && in.prom.step == idx {
		s.prom = in.prom
	}
	if s.pauseStart == nil && spec.Pause != nil {
		now := metav1.NewTime(in.now)
		s.pauseStart = &now
	}
	return s
}

// memberTarget is what a step's members are told: the artifact, beside the stable one for a
// share of the calls below 100%, and fresher counters when the step judges their error rate.
func memberTarget(in *rolloutInput, spec splicev1.CanaryStep) splicev1.DesiredState {
	t := splicev1.DesiredState{Artifact: in.artifact.Ref}
	if p := spec.TrafficPercent; p != nil && *p < 100 && in.stable != nil {
		traffic := *p
		t.Stable, t.TrafficPercent = in.stable.Ref, &traffic
	}
	if a := spec.Analysis; a != nil && a.MaxErrorRatePercent != nil {
		t.CountersInterval = analysedCountersInterval
	}
	return t
}

func (s *canaryStep) isMember(p podState) bool { return s.members[p.name] }

// targets tells the members to run the artifact and every other pod the stable one.
func (s *canaryStep) targets() map[string]splicev1.DesiredState {
	out := make(map[string]splicev1.DesiredState, len(s.in.pods))
	for _, p := range s.in.pods {
		if s.members[p.name] {
			out[p.name] = s.target
		} else {
			out[p.name] = toStable(s.in)
		}
	}
	return out
}

// decide records the verdict a gate reached on the step.
func (s *canaryStep) decide(pl *rolloutPlan, onFailure splicev1.FailurePolicy, v *verdict) *rolloutPlan {
	if v.pauseStart != nil {
		pl.pauseStart = v.pauseStart
	}
	pl.promWanted = v.awaits
	msg := s.name + ": " + v.msg
	switch v.kind {
	case verdictFail:
		return canaryFailed(s.in, pl, onFailure, v.reason, msg)
	case verdictHold:
		pl.phase = splicev1.PhasePaused
		pl.paused = cond(splicev1.ConditionPaused, true, v.reason, msg)
	default:
		pl.phase = splicev1.PhaseProgressing
	}
	pl.requeueAfter = v.requeueAfter
	pl.message = msg
	pl.progressing = cond(splicev1.ConditionProgressing, true, v.reason, msg)
	return pl
}

// canaryFailed applies onFailure: roll back, or freeze where the rollout stands.
func canaryFailed(in *rolloutInput, pl *rolloutPlan, onFailure splicev1.FailurePolicy, reason, msg string) *rolloutPlan {
	if onFailure == splicev1.FailureRollback {
		return rollBack(in, pl, reason, msg)
	}
	msg += fmt.Sprintf("; paused (onFailure: Pause): annotate %s to go on or %s to roll back", splicev1.AnnotationPromote, splicev1.AnnotationAbort)
	pl.targets = frozen(in)
	pl.phase = splicev1.PhasePaused
	pl.message = msg
	pl.paused = cond(splicev1.ConditionPaused, true, splicev1.ReasonAnalysisFailed, msg)
	pl.progressing = cond(splicev1.ConditionProgressing, false, reason, msg)
	pl.degr = cond(splicev1.ConditionDegraded, true, reason, msg)
	return pl
}
