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
// reason. It says whether the host serves correctly: True while the report's host serves a
// version (Running), whatever became of the target — Ready, still being brought in (Pending,
// Pulling, Swapping), or refused (Incompatible, Failed, Crashed) or rolled back, which the
// message then says ("the host serves X; Y was refused: reason: error"). False only when the
// host serves no plugin (or did not answer), with what went wrong as the message. See
// splicev1.PodConditionPluginReady for why a refused artifact must not take the pod out of its
// Services.
func conditionFor(r *splicev1.PodReport) corev1.PodCondition {
	c := corev1.PodCondition{Type: splicev1.PodConditionPluginReady, Status: corev1.ConditionFalse, Reason: string(r.State)}
	if r.Running != "" {
		c.Status = corev1.ConditionTrue
	}
	switch {
	case r.State == splicev1.SwapReady && r.TrafficPercent != nil:
		c.Message = fmt.Sprintf("%s receives %d%% of calls, the stable version the rest", r.Digest, *r.TrafficPercent)
	case r.State == splicev1.SwapReady:
		c.Message = "the host serves " + r.Digest
	case r.Running == "" && r.Reason == ReasonHostUnavailable:
		c.Message = fmt.Sprintf("the host does not answer; %s %s: %s", r.Artifact, r.State, r.Error)
	case r.Running == "" && r.Error != "":
		c.Message = fmt.Sprintf("the host serves no plugin; %s %s: %s: %s", r.Artifact, r.State, r.Reason, r.Error)
	case r.Running == "":
		c.Message = fmt.Sprintf("the host serves no plugin; %s %s", r.Artifact, r.State)
	case !r.State.Terminal():
		c.Message = fmt.Sprintf("the host serves %s while %s is brought in", r.Running, subject(r))
	default:
		c.Message = fmt.Sprintf("the host serves %s; %s %s: %s: %s", r.Running, subject(r), refusedVerb(r.State), r.Reason, r.Error)
	}
	c.Message = control.Truncate(c.Message, maxConditionMessage)
	return c
}

// subject names what a report is about: its digest, else the artifact as the annotation named
// it (a reference without a digest).
func subject(r *splicev1.PodReport) string {
	if r.Digest != "" {
		return r.Digest
	}
	return r.Artifact
}

// refusedVerb says what became of a refused target.
func refusedVerb(s splicev1.SwapState) string {
	if s == splicev1.SwapRolledBack {
		return "was rolled back"
	}
	return "was refused"
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
