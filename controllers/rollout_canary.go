package controllers

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

// planCanary runs the steps in order. A step moves setWeight percent of the pods (picked by a
// stable hash, and never taken back while the rollout holds) to the artifact, optionally with
// only trafficPercent of their requests routed to it while the stable version stays loaded;
// when every member serves it, the analysis runs over the members' reports, then the pause
// (timed, or until promoted), then the next step. After the last step every pod moves, and the
// artifact becomes stable. A failed analysis rolls back or pauses, as onFailure says; promote
// goes on to the next step from wherever the rollout stands, a failed-and-paused analysis
// included.
func planCanary(in *rolloutInput, pl *rolloutPlan) *rolloutPlan {
	var steps []splicev1.CanaryStep
	onFailure := splicev1.FailureRollback
	if c := in.strategy.Canary; c != nil {
		steps = c.Steps
		if c.OnFailure != "" {
			onFailure = c.OnFailure
		}
	}
	idx := int32(0)
	if pl.step != nil {
		idx = *pl.step
	}
	if in.controls.promoteFull {
		idx = int32(len(steps))
	}
	now := metav1.NewTime(in.now)
	advance := func() *rolloutPlan {
		next := idx + 1
		pl.step, pl.stepStart, pl.pauseStart = &next, &now, nil
		// Plan the next step in the same pass; the promotion is spent.
		again := *in
		again.controls.promote, again.controls.promoteFull = false, false
		// A Prometheus result belongs to the step it was run for.
		again.prom = nil
		return planCanary(&again, pl)
	}
	if in.controls.promote && int(idx) < len(steps) {
		return advance()
	}
	pl.step = &idx

	// After the last step: everyone, all traffic.
	if int(idx) >= len(steps) {
		pl.targets = everyPod(in, podTarget{Artifact: in.artifact.Ref})
		done := countDone(in, anyPod, nil)
		if failed, incompatible := failedPods(in, anyPod); len(failed)+len(incompatible) > 0 {
			return canaryFailed(in, pl, onFailure, ReasonSwapFailed,
				fmt.Sprintf("final step: the swap failed on %s", failureSummary(in, append(failed, incompatible...))))
		}
		if len(in.pods) > 0 && done == len(in.pods) {
			return complete(in, pl)
		}
		pl.phase = splicev1.PhaseProgressing
		pl.message = fmt.Sprintf("Canary final step: %d of %d pods run %s", done, len(in.pods), in.artifact.Digest)
		pl.progressing = cond(splicev1.ConditionProgressing, true, ReasonSwapping, pl.message)
		return pl
	}

	step := steps[idx]
	members := pickMembers(in, weightCount(step.SetWeight, len(in.pods)))
	memberTarget := podTarget{Artifact: in.artifact.Ref}
	if t := step.TrafficPercent; t != nil && *t < 100 && in.stable != nil {
		traffic := *t
		memberTarget.Stable, memberTarget.Traffic = in.stable.Ref, &traffic
	}
	if a := step.Analysis; a != nil && a.MaxErrorRatePercent != nil {
		memberTarget.CountersInterval = analysedCountersInterval.String()
	}
	pl.targets = map[string]podTarget{}
	for _, p := range in.pods {
		if members[p.name] {
			pl.targets[p.name] = memberTarget
		} else {
			pl.targets[p.name] = toStable(in)
		}
	}
	stepName := fmt.Sprintf("Canary step %d/%d (setWeight %d%%)", idx+1, len(steps), step.SetWeight)

	reason, msg, pending := analyse(in, step.Analysis, members)
	if reason != "" {
		return canaryFailed(in, pl, onFailure, reason, stepName+": "+msg)
	}
	isMember := func(p podState) bool { return members[p.name] }
	done := countDone(in, isMember, memberTarget.Traffic)
	if done < len(members) {
		pl.phase = splicev1.PhaseProgressing
		pl.message = fmt.Sprintf("%s: %d of %d canary pods run %s", stepName, done, len(members), in.artifact.Digest)
		pl.progressing = cond(splicev1.ConditionProgressing, true, ReasonSwapping, pl.message)
		return pl
	}
	// The Prometheus analysis judges the step once all its pods run the artifact.
	if a := step.Analysis; a != nil && a.Prometheus != nil {
		fail, wait, msg := promVerdict(a.Prometheus, in.prom)
		switch {
		case fail:
			return canaryFailed(in, pl, onFailure, ReasonAnalysisFailed, stepName+": "+msg)
		case wait:
			pl.phase = splicev1.PhaseProgressing
			pl.requeueAfter = promRetry
			pl.message = stepName + ": " + msg
			pl.progressing = cond(splicev1.ConditionProgressing, true, ReasonAnalysisPending, pl.message)
			return pl
		}
	}
	if p := step.Pause; p != nil {
		if pl.pauseStart == nil {
			pl.pauseStart = &now
		}
		if p.Duration == nil {
			pl.phase = splicev1.PhasePaused
			pl.message = fmt.Sprintf("%s: %d canary pods run %s; waiting for promotion (annotate %s)", stepName, done,
				in.artifact.Digest, splicev1.AnnotationPromote)
			pl.paused = cond(splicev1.ConditionPaused, true, ReasonAwaitingPromotion, pl.message)
			pl.progressing = cond(splicev1.ConditionProgressing, true, ReasonAwaitingPromotion, pl.message)
			return pl
		}
		if end := pl.pauseStart.Add(p.Duration.Duration); in.now.Before(end) {
			pl.phase = splicev1.PhasePaused
			pl.requeueAfter = end.Sub(in.now)
			pl.message = fmt.Sprintf("%s: paused for %s, until %s", stepName, p.Duration.Duration, end.UTC().Format(time.RFC3339))
			pl.paused = cond(splicev1.ConditionPaused, true, ReasonPauseStep, pl.message)
			pl.progressing = cond(splicev1.ConditionProgressing, true, ReasonPauseStep, pl.message)
			return pl
		}
	}
	// The error rate is not judged yet: too few calls. A pause still ran (and was shown); the
	// step does not advance past it until the rate is judged.
	if pending != "" {
		pl.phase = splicev1.PhaseProgressing
		pl.message = stepName + ": " + pending
		pl.progressing = cond(splicev1.ConditionProgressing, true, ReasonAnalysisPending, pl.message)
		return pl
	}
	return advance()
}

// analyse checks a step's members against its analysis. Without an analysis, no failed swap is
// tolerated. It returns a reason and message when the step fails, and pending, saying why,
// while the error rate cannot be judged yet (fewer than minCalls calls).
func analyse(in *rolloutInput, a *splicev1.CanaryAnalysis, members map[string]bool) (reason, msg, pending string) {
	isMember := func(p podState) bool { return members[p.name] }
	failed, incompatible := failedPods(in, isMember)
	maxFailed := 0
	if a != nil && a.MaxFailedSwaps != nil {
		maxFailed = int(*a.MaxFailedSwaps)
	}
	if bad := append(failed, incompatible...); len(bad) > maxFailed {
		return ReasonSwapFailed, fmt.Sprintf("%d failed swaps (%s), more than maxFailedSwaps %d", len(bad), failureSummary(in, bad), maxFailed), ""
	}
	if a == nil {
		return "", "", ""
	}
	var calls, errs uint64
	for _, p := range in.pods {
		r := p.report
		if !members[p.name] || r == nil || r.Digest != in.artifact.Digest || !r.CountsDigest() {
			continue
		}
		calls += r.Calls
		errs += r.Errors + r.Panics
		if a.MaxSwapLatency != nil && r.SwapLatencySeconds > a.MaxSwapLatency.Seconds() {
			return ReasonAnalysisFailed, fmt.Sprintf("pod %s swapped in %.3fs, more than maxSwapLatency %s", p.name,
				r.SwapLatencySeconds, a.MaxSwapLatency.Duration), ""
		}
	}
	if a.MaxErrorRatePercent == nil {
		return "", "", ""
	}
	minCalls := uint64(a.MinCallsOrDefault())
	switch {
	case calls < minCalls:
		return "", "", fmt.Sprintf("judging the error rate after %d plugin calls on the new version, %d reported so far (send traffic, lower analysis.minCalls, or annotate %s)",
			minCalls, calls, splicev1.AnnotationPromote)
	case calls == 0:
		return "", "", "" // minCalls 0: nothing to judge
	}
	if rate := float64(errs) * 100 / float64(calls); rate > float64(*a.MaxErrorRatePercent) {
		return ReasonAnalysisFailed, fmt.Sprintf("plugin error rate %.2f%% (%d of %d calls), more than maxErrorRatePercent %d%%",
			rate, errs, calls, *a.MaxErrorRatePercent), ""
	}
	return "", "", ""
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
	pl.paused = cond(splicev1.ConditionPaused, true, ReasonAnalysisFailed, msg)
	pl.progressing = cond(splicev1.ConditionProgressing, false, reason, msg)
	pl.degr = cond(splicev1.ConditionDegraded, true, reason, msg)
	return pl
}
