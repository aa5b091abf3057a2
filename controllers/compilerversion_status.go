package controllers

import (
	"fmt"
	"sort"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

// podState is what one targeted pod says about itself, decoded once.
type podState struct {
	name string
	// target is what the pod's rollout annotations say now.
	target podTarget
	// ready is the pod's splice.dev/plugin-ready condition.
	ready bool
	// report is the agent's decoded report; nil when absent.
	report *splicev1.PodReport
	// reportErr is why a present report was refused.
	reportErr error
}

// observePod reads the pod protocol off a pod. A malformed report is kept as an error rather
// than dropped, so status can say which pod sends garbage.
func observePod(pod *corev1.Pod) podState {
	s := podState{name: pod.Name, target: podTarget{
		Artifact:         pod.Annotations[splicev1.AnnotationDesiredArtifact],
		Stable:           pod.Annotations[splicev1.AnnotationStableArtifact],
		CountersInterval: pod.Annotations[splicev1.AnnotationCountersInterval],
	}}
	if v, ok := pod.Annotations[splicev1.AnnotationTrafficPercent]; ok {
		if n, err := strconv.ParseInt(v, 10, 32); err == nil {
			t := int32(n)
			s.target.Traffic = &t
		}
	}
	s.ready = pluginReady(pod)
	if raw, ok := pod.Annotations[splicev1.AnnotationReport]; ok {
		s.report, s.reportErr = splicev1.DecodeReport(raw)
	}
	return s
}

// pluginReady reports the pod's splice.dev/plugin-ready condition (the last one, should a
// writer have appended a duplicate).
func pluginReady(pod *corev1.Pod) bool {
	ready := false
	for _, c := range pod.Status.Conditions {
		if c.Type == splicev1.PodConditionPluginReady {
			ready = c.Status == corev1.ConditionTrue
		}
	}
	return ready
}

// targetable reports whether a pod counts as a target: running or about to, and not going away.
func targetable(pod *corev1.Pod) bool {
	if pod.DeletionTimestamp != nil {
		return false
	}
	return pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed
}

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
		switch p.report.State {
		case splicev1.SwapReady:
			// A canary member serving the artifact to its share of calls counts as updated.
			if p.report.Running == artifact.Digest || p.report.TrafficPercent != nil {
				c.updated++
			}
		case splicev1.SwapFailed, splicev1.SwapRolledBack:
			c.failed++
		case splicev1.SwapIncompatible:
			c.incompatible++
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
				Message: truncate(p.reportErr.Error(), 1024), Time: &now})
		case p.report != nil && (p.report.State == splicev1.SwapFailed || p.report.State == splicev1.SwapRolledBack || p.report.State == splicev1.SwapIncompatible):
			t := p.report.ObservedAt
			if t.IsZero() {
				t = now
			}
			add(splicev1.PodFailure{Pod: p.name, Digest: p.report.Digest, State: p.report.State,
				Reason: p.report.Reason, Message: truncate(p.report.Error, 1024), Time: &t})
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

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
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
	if pl != nil {
		st.Phase, st.CurrentStepIndex, st.StepStartTime, st.PauseStartTime = pl.phase, pl.step, pl.stepStart, pl.pauseStart
		st.RolloutDigest, st.StableArtifact = pl.rolloutDigest, pl.stable
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

// availableCondition is True when every targeted pod passes its plugin readiness, whatever
// artifact it serves.
func availableCondition(pods []podState) metav1.Condition {
	ready := 0
	for _, p := range pods {
		if p.ready {
			ready++
		}
	}
	c := metav1.Condition{Type: splicev1.ConditionAvailable, Status: metav1.ConditionFalse, Reason: "PodsNotReady",
		Message: fmt.Sprintf("%d of %d targeted pods pass plugin readiness", ready, len(pods))}
	if len(pods) > 0 && ready == len(pods) {
		c.Status, c.Reason = metav1.ConditionTrue, "AllPodsReady"
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
