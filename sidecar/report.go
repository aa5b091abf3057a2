package sidecar

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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
	if same && (last.State == splicev1.SwapIncompatible || last.State == splicev1.SwapFailed || last.State == splicev1.SwapRolledBack) {
		return actKeep, "", ""
	}
	if Satisfied(t, st) {
		return actReady, "", ""
	}
	if v := st.Version(t.Digest); v != nil && v.State != control.StateFailed && !v.LoadedAt.IsZero() {
		// The version is loaded but not serving as desired. Either the host backed out of it
		// (its record says so), or it served as reported and something else moved routing.
		if ls := st.LastSwap; ls != nil && ls.Op == control.OpAutoRollback && ls.Error == "" &&
			(ls.From == t.Digest || strings.Contains(ls.Reason, t.Digest)) {
			return actRolledBack, ReasonHostRolledBack, fmt.Sprintf("the host rolled %s back on its own: %s", t.Digest, ls.Reason)
		}
		if same && last.State == splicev1.SwapReady {
			return actRolledBack, ReasonRoutedAway, fmt.Sprintf("%s served as desired, then the host's routing changed (current %s, canary %q at %d%%) without this agent; it is not swapped in again",
				t.Digest, st.Current, st.Canary, st.CanaryPercent)
		}
	}
	return actApply, "", ""
}

// sameTarget reports whether a report is about exactly this target.
func sameTarget(t Target, r *splicev1.PodReport) bool {
	if r == nil || r.Artifact != t.Ref || r.Digest != t.Digest {
		return false
	}
	a, b := r.TrafficPercent, t.trafficPercent()
	return (a == nil && b == nil) || (a != nil && b != nil && *a == *b)
}

// newReport starts a report about t in the given state, with the host's figures from st
// (which may be nil when the host did not answer).
func newReport(t Target, state splicev1.SwapState, reason string, err error, st *control.Status) *splicev1.PodReport {
	r := &splicev1.PodReport{Artifact: t.Ref, Digest: t.Digest, State: state, Reason: reason, TrafficPercent: t.trafficPercent()}
	if err != nil {
		r.Error = truncate(err.Error(), 4096)
	}
	hostFigures(r, st)
	return r
}

// hostFigures copies what the host says now: what runs, its toolchain, and the counters of the
// version the report is about when the host routes the canary share to it (the canary
// analysis judges those), else of the version it serves.
func hostFigures(r *splicev1.PodReport, st *control.Status) {
	if st == nil {
		return
	}
	r.Running = ""
	if control.ValidDigest(st.Current) {
		r.Running = st.Current
	}
	r.HostGoVersion = st.HostGoVersion
	r.LoadedVersions = st.LoadedVersions
	r.Calls, r.Errors, r.Panics = 0, 0, 0
	counted := st.Current
	if st.Canary != "" && st.Canary == r.Digest {
		counted = st.Canary
	}
	if v := st.Version(counted); v != nil {
		r.Calls, r.Errors, r.Panics = v.Calls, v.Errors, v.Panics
	}
}

// withSwap records a routing change: latency as the agent measured it (the host's own figure
// when the agent did not make the change), and the host's snapshots.
func withSwap(r *splicev1.PodReport, res *control.SwapResult, latency time.Duration) {
	if res == nil {
		return
	}
	r.SwapLatencySeconds = latency.Seconds()
	if latency <= 0 {
		r.SwapLatencySeconds = res.Seconds
	}
	r.Before, r.After = snapshot(res.Before), snapshot(res.After)
	r.GCDuringSwap = res.GCDuringSwap
}

// readyReport reports a target the host serves without this agent having just changed
// anything (a restart, a poll): the swap figures come from the last report about the same
// target, else from the host's record of the swap that made it serve.
func readyReport(t Target, st *control.Status, last *splicev1.PodReport) *splicev1.PodReport {
	r := newReport(t, splicev1.SwapReady, "", nil, st)
	switch ls := st.LastSwap; {
	case sameTarget(t, last) && last.State == splicev1.SwapReady:
		r.SwapLatencySeconds, r.Before, r.After, r.GCDuringSwap = last.SwapLatencySeconds, last.Before, last.After, last.GCDuringSwap
	case ls != nil && ls.Error == "" && ((!t.Canary() && ls.To == t.Digest) || (t.Canary() && ls.Canary == t.Digest)):
		withSwap(r, ls, 0)
	}
	return r
}

// outcomeReport reports what Apply did.
func outcomeReport(out *Outcome) *splicev1.PodReport {
	r := newReport(out.Target, out.State, out.Reason, out.Err, out.Status)
	if out.State == splicev1.SwapReady {
		if out.HostSwap != nil {
			withSwap(r, out.HostSwap, out.SwapLatency)
		} else {
			return readyReport(out.Target, out.Status, nil)
		}
	}
	return r
}

// keptReport refreshes a standing outcome with the host's current figures.
func keptReport(last *splicev1.PodReport, st *control.Status) *splicev1.PodReport {
	r := *last
	hostFigures(&r, st)
	return &r
}

func snapshot(s *control.Snapshot) *splicev1.RuntimeSnapshot {
	if s == nil {
		return nil
	}
	return &splicev1.RuntimeSnapshot{
		GCCycles: s.GCCycles, HeapLiveBytes: s.HeapLiveBytes, HeapGoalBytes: s.HeapGoalBytes, ScanGlobalsBytes: s.ScanGlobalsBytes,
		Goroutines: s.Goroutines, GCPauses: s.GCPauses, GCPauseP99Seconds: s.GCPauseP99Seconds, RSSBytes: s.RSSBytes,
	}
}

// sameReport compares two reports as the agent decides whether to write: ObservedAt never
// counts, and the call counters count only when withCounters (they change with every request,
// and each write wakes the rollout controller).
func sameReport(a, b *splicev1.PodReport, withCounters bool) bool {
	x, y := *a, *b
	x.ObservedAt, y.ObservedAt = metav1.Time{}, metav1.Time{}
	if !withCounters {
		x.Calls, x.Errors, x.Panics = 0, 0, 0
		y.Calls, y.Errors, y.Panics = 0, 0, 0
	}
	ex, err1 := x.Encode()
	ey, err2 := y.Encode()
	return err1 == nil && err2 == nil && ex == ey
}

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
		c.Message = truncate(r.Reason+": "+r.Error, 1024)
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

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}
