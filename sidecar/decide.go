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
	// Failed, RolledBack, Crashed); only the host's figures in the report are refreshed. A
	// version the host refused, rolled back or died running is never tried again: the rollout
	// controller must name another artifact. The one exception is a refusal for the lack of
	// consent to a minor API change, which the consent undoes.
	actKeep action = iota
	// actReady: the host serves the target; report Ready (no host request).
	actReady
	// actRolledBack: the target served, and the host no longer serves it.
	actRolledBack
	// actApply: run the pipeline (it does only what is missing).
	actApply
	// actCrashed: the target's version crashed this pod's host before (Swapper.CrashOf):
	// report Crashed, from the crash's record, and never ask the host for it again.
	actCrashed
)

// decide is the agent's whole policy, as a pure function of what it observes: the target from
// the pod's annotations, the host's status, the last report written for the pod, and whether
// the target's version crashed this pod's host before (the crash record the Swapper keeps in
// the shared directory). Keeping it pure is what makes the agent idempotent across restarts: a
// new agent observes the same things and reaches the same decision, so a swap already done is
// never redone.
func decide(t Target, st *control.Status, last *splicev1.PodReport, crashed bool) (act action, reason, message string) {
	same := sameTarget(t, last)
	if same && standing(t, last) && !(crashed && last.State == splicev1.SwapCrashed) {
		return actKeep, "", ""
	}
	if Satisfied(t, st) {
		// The host serves it on its own (its image starts it): that is the truth to report.
		return actReady, "", ""
	}
	if crashed {
		return actCrashed, ReasonHostCrashed, fmt.Sprintf("%s crashed this pod's host before; it is not loaded again", t.Digest)
	}
	if reason, message := lostTarget(t, st, same && last.State == splicev1.SwapReady); reason != "" {
		return actRolledBack, reason, message
	}
	return actApply, "", ""
}

// standing reports whether the last report, about target t, is an outcome that stands: the
// host or the agent refused the version, the host rolled it back, or died running it. A refusal
// for the lack of consent to a minor API change stands only while the target still lacks it.
func standing(t Target, last *splicev1.PodReport) bool {
	if last.State == splicev1.SwapIncompatible && last.Reason == ReasonMinorAPIChangeNotAllowed && t.AllowMinor {
		return false
	}
	return last.State.Failure()
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
