package controllers

import (
	"fmt"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

// planStrict: every pod is told to run the artifact at once; the agent's preflight enforces the
// exact toolchain and package match and reports pods that cannot load it as Incompatible. Those
// are evicted when recreateIncompatible is set (their controller recreates them, presumably from
// an image built with the right toolchain), and otherwise only reported. Any failed swap rolls
// every pod back to the stable artifact.
func planStrict(in *rolloutInput, pl *rolloutPlan) *rolloutPlan {
	failed, incompatible := failedPods(in, anyPod)
	if len(failed) > 0 {
		return rollBack(in, pl, splicev1.ReasonSwapFailed, fmt.Sprintf("Strict: the swap failed on %s", failureSummary(failed)))
	}
	pl.targets = everyPod(in, splicev1.DesiredState{Artifact: in.artifact.Ref})
	done := countDone(in, anyPod, nil)
	if len(in.pods) > 0 && done == len(in.pods) {
		return complete(in, pl)
	}
	pl.phase = splicev1.PhaseProgressing
	pl.message = fmt.Sprintf("Strict: %d of %d pods run %s", done, len(in.pods), in.artifact.Digest)
	pl.progressing = cond(splicev1.ConditionProgressing, true, splicev1.ReasonSwapping, pl.message)
	if len(incompatible) > 0 {
		msg := fmt.Sprintf("Strict: the host of %s cannot load %s", failureSummary(incompatible), in.artifact.Digest)
		if recreateIncompatible(in) {
			pl.evict = incompatible
			msg += "; evicting them so they are recreated"
		} else {
			msg += "; they stay as they are (set spec.strategy.strict.recreateIncompatible to recreate them)"
			pl.phase = splicev1.PhaseDegraded
		}
		pl.degr = cond(splicev1.ConditionDegraded, true, splicev1.ReasonIncompatiblePods, msg)
		pl.message = msg
	}
	return pl
}

// recreateIncompatible reports whether the policy asks for incompatible pods to be evicted.
func recreateIncompatible(in *rolloutInput) bool {
	return in.strategy.Strict != nil && in.strategy.Strict.RecreateIncompatible
}
