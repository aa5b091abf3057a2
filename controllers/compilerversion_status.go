package controllers

import (
	"context"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/host/control"
)

// podCounts are the status counters.
type podCounts struct {
	targeted, updated, ready, failed, incompatible int32
}

// countPods aggregates pod states against the artifact the spec currently asks for (nil when
// none is known yet, in which case nothing counts as updated, failed or incompatible).
func countPods(pods []podState, artifact *splicev1.ArtifactStatus) podCounts {
	var c podCounts
	for _, p := range pods {
		c.targeted++
		if p.ready {
			c.ready++
		}
		if artifact == nil || p.report == nil || p.report.Digest != artifact.Digest {
			continue
		}
		switch s := p.report.State; {
		case s == splicev1.SwapReady:
			// A canary member serving the artifact to its share of calls counts as updated.
			if p.report.Running == artifact.Digest || p.report.TrafficPercent != nil {
				c.updated++
			}
		case s == splicev1.SwapIncompatible:
			c.incompatible++
		case s.Failure():
			// Failed, RolledBack, Crashed.
			c.failed++
		}
	}
	return c
}

// mergeFailures folds the failures pods report now into the ones already in status: newest
// first, one entry per pod and digest, at most MaxRecentFailures, so a failure stays visible
// after its pod is gone. Malformed reports count as failures of their own.
func mergeFailures(existing []splicev1.PodFailure, pods []podState, now metav1.Time) []splicev1.PodFailure {
	type key struct{ pod, digest, state string }
	seen := map[key]int{}
	var out []splicev1.PodFailure
	add := func(f splicev1.PodFailure) {
		k := key{f.Pod, f.Digest, string(f.State)}
		if i, ok := seen[k]; ok {
			// Keep the first time it was seen; refresh the message.
			out[i].Reason, out[i].Message = f.Reason, f.Message
			return
		}
		seen[k] = len(out)
		out = append(out, f)
	}
	for _, f := range existing {
		add(*f.DeepCopy())
	}
	for _, p := range pods {
		switch {
		case p.reportErr != nil:
			add(splicev1.PodFailure{Pod: p.name, State: splicev1.SwapFailed, Reason: "MalformedReport",
				Message: control.Truncate(p.reportErr.Error(), 1024), Time: &now})
		case p.report != nil && p.report.State.Failure():
			add(reportedFailure(p, now))
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		return out[j].Time.Before(out[i].Time)
	})
	if len(out) > splicev1.MaxRecentFailures {
		out = out[:splicev1.MaxRecentFailures]
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// reportedFailure is the recent failure a pod's report of a failed swap records: the agent's
// error, after "the host crashed running <digest>" when its host died running it.
func reportedFailure(p podState, now metav1.Time) splicev1.PodFailure {
	r := p.report
	t := r.ObservedAt
	if t.IsZero() {
		t = now
	}
	msg := r.Error
	if r.State == splicev1.SwapCrashed {
		msg = "the host crashed running " + r.Digest
		if r.Error != "" {
			msg += ": " + r.Error
		}
	}
	return splicev1.PodFailure{Pod: p.name, Digest: r.Digest, State: r.State, Reason: r.Reason, Message: control.Truncate(msg, 1024), Time: &t}
}

// readyCondition decides the Ready condition from what was observed.
func readyCondition(c podCounts, artifact *splicev1.ArtifactStatus, selectorErr error, generation int64) metav1.Condition {
	cond := metav1.Condition{Type: splicev1.ConditionReady, Status: metav1.ConditionFalse, ObservedGeneration: generation}
	switch {
	case selectorErr != nil:
		cond.Reason = splicev1.ReasonInvalidSelector
		cond.Message = fmt.Sprintf("spec.selector cannot be used: %v", selectorErr)
	case c.targeted == 0:
		cond.Reason = splicev1.ReasonNoTargetPods
		cond.Message = "spec.selector matches no running pod in this namespace"
	case artifact == nil:
		cond.Reason = splicev1.ReasonAwaitingArtifact
		cond.Message = fmt.Sprintf("%d pods targeted; no artifact has been built or resolved for this spec yet", c.targeted)
	case c.updated < c.targeted || c.ready < c.targeted:
		cond.Reason = splicev1.ReasonPodsNotUpdated
		cond.Message = fmt.Sprintf("%d of %d targeted pods run %s, %d ready", c.updated, c.targeted, artifact.Digest, c.ready)
	default:
		cond.Status = metav1.ConditionTrue
		cond.Reason = splicev1.ReasonAllPodsReady
		cond.Message = fmt.Sprintf("all %d targeted pods run %s", c.targeted, artifact.Digest)
	}
	return cond
}

// computeStatus returns the status this reconcile should leave, derived from the current status
// (what earlier passes and other controllers recorded), the targeted pods and the time. It does
// not touch the input.
func computeStatus(cv *splicev1.CompilerVersion, pods []podState, selectorErr error, pl *rolloutPlan, now metav1.Time) splicev1.CompilerVersionStatus {
	st := *cv.Status.DeepCopy()
	st.Phase = buildPhase(cv)
	if pl != nil {
		st.Phase, st.CurrentStepIndex, st.StepStartTime, st.PauseStartTime = pl.phase, pl.step, pl.stepStart, pl.pauseStart
		st.RolloutDigest, st.StableArtifact, st.IncompatibleEvictions = pl.rolloutDigest, pl.stable, pl.evictions
		st.ObservedControls = observedControls(cv)
		for _, c := range []metav1.Condition{pl.progressing, pl.paused, pl.degr, availableCondition(pods)} {
			c.ObservedGeneration, c.LastTransitionTime = cv.Generation, now
			meta.SetStatusCondition(&st.Conditions, c)
		}
		st.Pods = podSummaries(pods)
	}
	c := countPods(pods, st.Artifact)
	st.Targeted, st.Updated, st.Ready, st.Failed, st.Incompatible = c.targeted, c.updated, c.ready, c.failed, c.incompatible
	st.Progress = fmt.Sprintf("%d/%d", c.updated, c.targeted)
	st.RecentFailures = mergeFailures(st.RecentFailures, pods, now)
	if st.Phase == "" {
		st.Phase = splicev1.PhasePending
	}
	ready := readyCondition(c, st.Artifact, selectorErr, cv.Generation)
	ready.LastTransitionTime = now
	meta.SetStatusCondition(&st.Conditions, ready)
	st.ObservedGeneration = cv.Generation
	return st
}

// buildPhase is the phase a CompilerVersion shows for its build, derived from the Built
// condition (owned by the build reconciler) at the current generation; it is the only place
// that turns a build's state into status.phase. While the spec's build runs the phase is
// Building; when it failed for good (any False reason but Building and ArtifactUnavailable,
// which is retried) it is BuildFailed. Once the spec has an artifact, or its registry is only
// unreachable for now, a Building or BuildFailed phase gives way to Pending, and the rollout
// (the plan) says what comes next; any other phase is the rollout's and is kept. A Built
// condition of an earlier generation says nothing yet about this spec: the phase stays.
func buildPhase(cv *splicev1.CompilerVersion) splicev1.Phase {
	phase := cv.Status.Phase
	built := meta.FindStatusCondition(cv.Status.Conditions, splicev1.ConditionBuilt)
	if built == nil || built.ObservedGeneration != cv.Generation {
		return phase
	}
	switch {
	case built.Status == metav1.ConditionFalse && built.Reason == ReasonBuilding:
		return splicev1.PhaseBuilding
	case built.Status == metav1.ConditionFalse && built.Reason != ReasonArtifactUnavailable:
		return splicev1.PhaseBuildFailed
	case phase == splicev1.PhaseBuilding || phase == splicev1.PhaseBuildFailed:
		return splicev1.PhasePending
	}
	return phase
}

// availableCondition is True when every targeted pod passes its plugin readiness, whatever
// artifact it serves.
func availableCondition(pods []podState) metav1.Condition {
	ready := 0
	for _, p := range pods {
		if p.ready {
			ready++
		}
	}
	c := metav1.Condition{Type: splicev1.ConditionAvailable, Status: metav1.ConditionFalse, Reason: splicev1.ReasonPodsNotReady,
		Message: fmt.Sprintf("%d of %d targeted pods pass plugin readiness", ready, len(pods))}
	if len(pods) > 0 && ready == len(pods) {
		c.Status, c.Reason = metav1.ConditionTrue, splicev1.ReasonAllPodsReady
	}
	if len(pods) == 0 {
		c.Reason = splicev1.ReasonNoTargetPods
	}
	return c
}

// podSummaries turns the pods' latest reports into the bounded status.pods list, newest first.
func podSummaries(pods []podState) []splicev1.PodSwapSummary {
	var out []splicev1.PodSwapSummary
	for _, p := range pods {
		r := p.report
		if r == nil {
			continue
		}
		s := splicev1.PodSwapSummary{Pod: p.name, Digest: r.Digest, State: r.State, LoadedVersions: int32(r.LoadedVersions)}
		if r.SwapLatencySeconds > 0 {
			s.SwapLatency = &metav1.Duration{Duration: time.Duration(r.SwapLatencySeconds * float64(time.Second))}
		}
		if r.Before != nil && r.After != nil {
			s.GCCyclesDuringSwap = int64(r.After.GCCycles) - int64(r.Before.GCCycles)
			s.HeapLiveDeltaBytes = int64(r.After.HeapLiveBytes) - int64(r.Before.HeapLiveBytes)
			s.ScanGlobalsDeltaBytes = int64(r.After.ScanGlobalsBytes) - int64(r.Before.ScanGlobalsBytes)
		}
		if !r.ObservedAt.IsZero() {
			t := r.ObservedAt
			s.Time = &t
		}
		out = append(out, s)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Time.Equal(out[j].Time) {
			return out[j].Time.Before(out[i].Time)
		}
		return out[i].Pod < out[j].Pod
	})
	if len(out) > splicev1.MaxPodSummaries {
		out = out[:splicev1.MaxPodSummaries]
	}
	return out
}

// writeStatus patches status once, with optimistic locking so a concurrent writer causes a
// conflict (retried by the workqueue) instead of a lost update; an unchanged status is not
// written at all.
func (r *CompilerVersionReconciler) writeStatus(ctx context.Context, s *scope) error {
	now := metav1.NewTime(r.Clock.Now())
	next := computeStatus(s.cv, s.pods, s.selectorErr, s.plan, now)
	if equality.Semantic.DeepEqual(s.cv.Status, next) {
		recordRollout(s.cv)
		return nil
	}
	orig := s.cv.DeepCopy()
	prevReady := meta.FindStatusCondition(orig.Status.Conditions, splicev1.ConditionReady)
	prevPhase := orig.Status.Phase
	s.cv.Status = next
	if err := r.Status().Patch(ctx, s.cv, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("patch status: %w", err)
	}
	recordRollout(s.cv)
	if s.plan != nil && next.Phase != prevPhase && s.plan.message != "" {
		typ := corev1.EventTypeNormal
		if next.Phase == splicev1.PhaseRolledBack || next.Phase == splicev1.PhaseDegraded {
			typ = corev1.EventTypeWarning
		}
		r.Recorder.Eventf(s.cv, nil, typ, string(next.Phase), "Rollout", "%s", s.plan.message)
	}
	if cur := meta.FindStatusCondition(s.cv.Status.Conditions, splicev1.ConditionReady); cur != nil && (prevReady == nil || prevReady.Status != cur.Status || prevReady.Reason != cur.Reason) {
		r.Recorder.Eventf(s.cv, nil, eventType(cur), cur.Reason, "UpdateStatus", "%s", cur.Message)
	}
	logf.FromContext(ctx).V(1).Info("status written", "targeted", next.Targeted, "updated", next.Updated, "ready", next.Ready)
	return nil
}

func eventType(c *metav1.Condition) string {
	if c.Status == metav1.ConditionTrue || c.Reason == splicev1.ReasonAwaitingArtifact || c.Reason == splicev1.ReasonPodsNotUpdated {
		return corev1.EventTypeNormal
	}
	return corev1.EventTypeWarning
}
