package controllers

import (
	"fmt"
	"slices"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

// planRollingPatch swaps in place in batches of maxUnavailable: a pod joins only when fewer than
// a batch are still swapping, so each batch is Ready before the next starts. It refuses an
// artifact whose plugin API differs from the stable one in major version (that needs Strict).
// A failed swap (Failed, RolledBack or Crashed, or a host that cannot load the artifact) does
// what onFailure says, as for Canary: Rollback (the default) returns every pod to the stable
// artifact (phase RolledBack, until a retry or a new artifact); Pause halts where the rollout
// stands, the failed pods serving their old version, until a retry or an abort.
func planRollingPatch(in *rolloutInput, pl *rolloutPlan) *rolloutPlan {
	if in.stable != nil && in.stable.APIVersion != "" && in.artifact.APIVersion != "" &&
		major(in.stable.APIVersion) != major(in.artifact.APIVersion) {
		msg := fmt.Sprintf("RollingPatch refuses plugin API %s over the stable %s: a major version change needs spec.strategy.type Strict",
			in.artifact.APIVersion, in.stable.APIVersion)
		pl.targets = everyPod(in, toStable(in))
		pl.phase = splicev1.PhaseDegraded
		pl.message = msg
		pl.progressing = cond(splicev1.ConditionProgressing, false, splicev1.ReasonMajorAPIChange, msg)
		pl.degr = cond(splicev1.ConditionDegraded, true, splicev1.ReasonMajorAPIChange, msg)
		return pl
	}
	onNew := func(p podState) bool { return p.onArtifact(in.artifact) }
	failed, incompatible := failedPods(in, onNew)
	if bad := slices.Concat(failed, incompatible); len(bad) > 0 {
		if in.strategy.RollingPatch.OnFailureOrDefault() == splicev1.FailureRollback {
			return rollBack(in, pl, splicev1.ReasonSwapFailed, fmt.Sprintf("RollingPatch: the swap of %s failed on %s", in.artifact.Digest, failedSummary(in, bad)))
		}
		msg := fmt.Sprintf("RollingPatch halted (onFailure: Pause): the swap of %s failed on %s; annotate %s to try again or %s to roll back",
			in.artifact.Digest, failedSummary(in, bad), splicev1.AnnotationRetry, splicev1.AnnotationAbort)
		return halt(in, pl, splicev1.ReasonSwapFailed, msg)
	}
	batch := batchSize(in.strategy.RollingPatch.MaxUnavailableOrDefault(), len(in.pods))
	inFlight, done := 0, 0
	for _, p := range in.pods {
		switch {
		case p.done(in.artifact, nil):
			done++
		case onNew(p):
			inFlight++
		}
	}
	if len(in.pods) > 0 && done == len(in.pods) {
		return complete(in, pl)
	}
	members := pickMembers(in, done+inFlight+max(batch-inFlight, 0))
	pl.targets = map[string]splicev1.DesiredState{}
	for _, p := range in.pods {
		if members[p.name] {
			pl.targets[p.name] = splicev1.DesiredState{Artifact: in.artifact.Ref}
		} else {
			pl.targets[p.name] = toStable(in)
		}
	}
	pl.phase = splicev1.PhaseProgressing
	pl.message = fmt.Sprintf("RollingPatch: %d of %d pods run %s, %d swapping (batch %d)", done, len(in.pods), in.artifact.Digest,
		len(members)-done, batch)
	pl.progressing = cond(splicev1.ConditionProgressing, true, splicev1.ReasonSwapping, pl.message)
	return pl
}
