package controllers

import (
	"context"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

// The rollout's input: what the plan (rollout_plan.go) is decided from, read off the
// CompilerVersion and the pods observeTargets found.

// rolloutArtifact is the artifact the rollout may act on: status.artifact, but only once the
// Built condition vouches for it at the current generation, so a stale artifact from an earlier
// spec is never rolled out.
func rolloutArtifact(cv *splicev1.CompilerVersion) *splicev1.ArtifactStatus {
	if cv.Status.Artifact == nil {
		return nil
	}
	built := apimeta.FindStatusCondition(cv.Status.Conditions, splicev1.ConditionBuilt)
	if built == nil || built.Status != metav1.ConditionTrue || built.ObservedGeneration != cv.Generation {
		return nil
	}
	return cv.Status.Artifact
}

// readControls reads the control annotations against the nonces already handled (the API's
// rules: CompilerVersion.Aborted, Paused and the *Requested nonces).
func readControls(cv *splicev1.CompilerVersion) controls {
	return controls{
		promote: cv.PromoteRequested(), promoteFull: cv.PromoteFullRequested(), retry: cv.RetryRequested(),
		paused: cv.Paused(), aborted: cv.Aborted(),
	}
}

// observedControls records every control nonce present now as handled: each one takes effect
// in the pass that first sees it, whatever the rollout's state.
func observedControls(cv *splicev1.CompilerVersion) splicev1.ObservedControls {
	return splicev1.ObservedControls{
		Promote:     cv.Annotations[splicev1.AnnotationPromote],
		PromoteFull: cv.Annotations[splicev1.AnnotationPromoteFull],
		Retry:       cv.Annotations[splicev1.AnnotationRetry],
	}
}

// planRollout builds the input from what observeTargets saw and decides. The rollout state it
// starts from carries the phase buildPhase derives from the Built condition, so a build that
// runs or failed holds the rollout where it is, and one that just succeeded lets it go on. Pods
// another CompilerVersion owns are not in the input; that the selector matches them is added
// to the plan (withOverlap).
func (r *CompilerVersionReconciler) planRollout(ctx context.Context, s *scope) {
	cv := s.cv
	art := rolloutArtifact(cv)
	st := cv.Status
	st.Phase = buildPhase(cv)
	in := &rolloutInput{
		key: string(cv.UID), strategy: cv.Spec.Strategy, artifact: art, stable: cv.Status.StableArtifact,
		pods: s.pods, status: st, controls: readControls(cv), now: r.Clock.Now(),
		allowMinor: cv.Spec.Plugin.AllowMinorAPIChange, maxLoaded: cv.Spec.MaxLoadedVersionsOrDefault(),
		goVersion: cv.Spec.GoVersion, evictions: cv.Status.IncompatibleEvictions,
	}
	in.prom = r.runPrometheus(ctx, cv, in)
	s.plan = plan(in)
	withOverlap(s.plan, s.foreign)
}
