package sidecar

import (
	"encoding/json"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/host/control"
)

// maxReportError is the longest error a report may carry (PodReport.Validate's bound).
const maxReportError = 4096

// The longest artifact reference and host Go version a report repeats: what the pod's
// annotation and the host said, which may be anything.
const (
	maxReportArtifact  = 1024
	maxReportGoVersion = 64
)

// fitReport shortens the free text a report carries about the world (the error, the artifact
// reference as the pod's annotation named it, the host's Go version) until the report encodes
// within MaxReportBytes: an annotation may name an artifact of any length, and JSON escaping
// makes some errors several times longer than they are. A report that cannot be encoded would
// leave the pod saying nothing at all. The digest, the state and the reason are never touched.
func fitReport(r *splicev1.PodReport) {
	r.Artifact = control.Truncate(r.Artifact, maxReportArtifact)
	r.HostGoVersion = control.Truncate(r.HostGoVersion, maxReportGoVersion)
	for {
		b, err := json.Marshal(r)
		switch {
		case err != nil || len(b) <= splicev1.MaxReportBytes:
			return
		case r.Error != "":
			r.Error = control.Truncate(r.Error, len(r.Error)/2)
		case r.Artifact != "":
			r.Artifact = control.Truncate(r.Artifact, len(r.Artifact)/2)
		default:
			return
		}
	}
}

// newReport starts a report about t in the given state, with the host's figures from st
// (which may be nil when the host did not answer).
func newReport(t Target, state splicev1.SwapState, reason string, err error, st *control.Status) *splicev1.PodReport {
	r := &splicev1.PodReport{Artifact: t.Ref, Digest: t.Digest, State: state, Reason: reason, TrafficPercent: t.trafficPercent()}
	if err != nil {
		r.Error = control.Truncate(err.Error(), maxReportError)
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
