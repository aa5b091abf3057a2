package sidecar

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/host/control"
)

// The plugin-ready condition (splicev1.PodConditionPluginReady) that backs the pod's readiness
// gate, as the agent writes it next to each report.

// maxConditionMessage bounds the plugin-ready condition's message: it is read in `kubectl
// describe pod`, and the full error is in the report.
const maxConditionMessage = 1024

// Condition reasons besides the report states (which are used as reasons as they are).
const (
	// ConditionNoDesiredArtifact: the pod names no desired artifact; the condition is True
	// while the host serves whatever it started with, so that opting a pod in does not make
	// it unready before any rollout.
	ConditionNoDesiredArtifact = "NoDesiredArtifact"
	// ConditionNothingServing: no desired artifact and the host serves no plugin at all.
	ConditionNothingServing = "NothingServing"
)

// conditionFor is the plugin-ready condition that goes with a report, with the state as its
// reason: True in state Ready, and while a new target is still being brought in (Pending,
// Pulling, Swapping) and the host goes on serving what it had; False when the host serves
// nothing or the target ended Incompatible, Failed or RolledBack, with what to fix as the
// message. See splicev1.PodConditionPluginReady for why a swap in progress stays True.
func conditionFor(r *splicev1.PodReport) corev1.PodCondition {
	c := corev1.PodCondition{Type: splicev1.PodConditionPluginReady, Status: corev1.ConditionFalse, Reason: string(r.State)}
	switch {
	case r.State == splicev1.SwapReady && r.TrafficPercent != nil:
		c.Status = corev1.ConditionTrue
		c.Message = fmt.Sprintf("%s receives %d%% of calls, the stable version the rest", r.Digest, *r.TrafficPercent)
	case r.State == splicev1.SwapReady:
		c.Status = corev1.ConditionTrue
		c.Message = "the host serves " + r.Digest
	case !r.State.Terminal() && r.Running != "":
		c.Status = corev1.ConditionTrue
		c.Message = fmt.Sprintf("the host serves %s while %s is brought in", r.Running, r.Digest)
	case r.Error != "":
		c.Message = control.Truncate(r.Reason+": "+r.Error, maxConditionMessage)
	default:
		c.Message = fmt.Sprintf("%s %s", r.State, r.Artifact)
	}
	return c
}

// conditionNoDesired is the condition for a pod that names no desired artifact.
func conditionNoDesired(st *control.Status) corev1.PodCondition {
	if st.Current == "" {
		return corev1.PodCondition{Type: splicev1.PodConditionPluginReady, Status: corev1.ConditionFalse, Reason: ConditionNothingServing,
			Message: "no desired artifact, and the host serves no plugin"}
	}
	return corev1.PodCondition{Type: splicev1.PodConditionPluginReady, Status: corev1.ConditionTrue, Reason: ConditionNoDesiredArtifact,
		Message: "no desired artifact; the host serves " + st.Current}
}
