package controllers

import (
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

// podState is what one targeted pod says about itself, decoded once.
type podState struct {
	name string
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
	s := podState{name: pod.Name}
	for _, c := range pod.Status.Conditions {
		if c.Type == splicev1.PodConditionPluginReady {
			s.ready = c.Status == corev1.ConditionTrue
		}
	}
	if raw, ok := pod.Annotations[splicev1.AnnotationReport]; ok {
		s.report, s.reportErr = splicev1.DecodeReport(raw)
	}
	return s
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
			if p.report.Running == artifact.Digest {
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
func computeStatus(cv *splicev1.CompilerVersion, pods []podState, selectorErr error, now metav1.Time) splicev1.CompilerVersionStatus {
	st := *cv.Status.DeepCopy()
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
