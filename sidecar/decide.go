package sidecar

import (
	"fmt"
	"strings"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/host/control"
)

// action is what the agent does about its pod, decided by decide.
type action int

const (
	// actKeep: an outcome already reported for this very target stands (Incompatible,
	// Failed, RolledBack); only the host's figures in the report are refreshed. A version the
	// host refused or rolled back is never tried again: the rollout controller must name
	// another artifact.
	actKeep action = iota
	// actReady: the host serves the target; report Ready (no host request).
	actReady
	// actRolledBack: the target served, and the host no longer serves it.
	actRolledBack
	// actApply: run the pipeline (it does only what is missing).
	actApply
)

// decide is the agent's whole policy, as a pure function of what it observes: the target from
// the pod's annotations, the host's status, and the last report written for the pod. Keeping
// it pure is what makes the agent idempotent across restarts: a new agent observes the same
// three things and reaches the same decision, so a swap already done is never redone.
func decide(t Target, st *control.Status, last *splicev1.PodReport) (act action, reason, message string) {
	same := sameTarget(t, last)
	if same && failedOutcome(last.State) {
		return actKeep, "", ""
	}
	if Satisfied(t, st) {
		return actReady, "", ""
	}
	if reason, message := lostTarget(t, st, same && last.State == splicev1.SwapReady); reason != "" {
		return actRolledBack, reason, message
	}
	return actApply, "", ""
}

// failedOutcome reports whether a state is an outcome that stands for its target: the host or
// the preflight refused it, or the host rolled it back.
func failedOutcome(s splicev1.SwapState) bool {
	return s == splicev1.SwapIncompatible || s == splicev1.SwapFailed || s == splicev1.SwapRolledBack
}

// lostTarget says why the host, which has t's version loaded, does not serve it as desired
// although it did: the host backed out of it on its own (its record of the last swap says so),
// or, when reportedReady (this target's last report was Ready), something else moved routing.
// It returns an empty reason when the version is not loaded (never was, still loading, or
// failed) or was never reported serving.
func lostTarget(t Target, st *control.Status, reportedReady bool) (reason, message string) {
	if v := st.Version(t.Digest); v == nil || v.State == control.StateFailed || v.LoadedAt.IsZero() {
		return "", ""
	}
	if ls := st.LastSwap; ls != nil && ls.Op == control.OpAutoRollback && ls.Error == "" &&
		(ls.From == t.Digest || strings.Contains(ls.Reason, t.Digest)) {
		return ReasonHostRolledBack, fmt.Sprintf("the host rolled %s back on its own: %s", t.Digest, ls.Reason)
	}
	if reportedReady {
		return ReasonRoutedAway, fmt.Sprintf("%s served as desired, then the host's routing changed (current %s, canary %q at %d%%) without this agent; it is not swapped in again",
			t.Digest, st.Current, st.Canary, st.CanaryPercent)
	}
	return "", ""
}

// sameTarget reports whether a report is about exactly this target.
func sameTarget(t Target, r *splicev1.PodReport) bool {
	if r == nil || r.Artifact != t.Ref || r.Digest != t.Digest {
		return false
	}
	a, b := r.TrafficPercent, t.trafficPercent()
	return (a == nil && b == nil) || (a != nil && b != nil && *a == *b)
}
