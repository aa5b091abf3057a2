package controllers

import (
	"fmt"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

// A canary step is judged by a chain of gates, each a small pure check of the step as the pass
// sees it (after cert-manager's readiness policy chain): a gate returns nil when it has nothing
// to decide, and the step goes on to the next gate, or a verdict, which is the step's. A step
// every gate lets through is done.

// verdictKind is what a gate decided about its step.
type verdictKind int

const (
	// verdictFail: the step failed; onFailure says whether the rollout rolls back or pauses.
	verdictFail verdictKind = iota + 1
	// verdictWait: the step is under way (phase Progressing).
	verdictWait
	// verdictHold: the step holds at its pause (phase Paused).
	verdictHold
)

// verdict is a gate's decision on its step.
type verdict struct {
	kind   verdictKind
	reason string
	// msg says why, for a person, after the step's name.
	msg string
	// requeueAfter asks for a reconcile when the verdict may change with time alone.
	requeueAfter time.Duration
	// pauseStart is set by the gates from the pause on, so that the pause's start is recorded
	// and a timed pause is not restarted by the next pass.
	pauseStart *metav1.Time
	// awaits is the Prometheus query the step waits for, when no result was run for it.
	awaits *promQuery
}

// stepGates are a step's gates in the order they decide. The failures come first, so a step
// fails as soon as its pods show it, even while some still swap or during its pause. Each
// later gate assumes what the ones before it let through: Prometheus judges only once every
// member serves the artifact at the step's share, and the wait for enough calls comes last,
// holding a step past its pause rather than keeping the pause from starting.
var stepGates = []func(*canaryStep) *verdict{
	swapFailuresGate,
	swapLatencyGate,
	errorRateGate,
	membersSwappedGate,
	prometheusGate,
	pauseGate,
	minCallsGate,
}

// judge returns the first verdict of the step's gates, or nil when the step is done.
func (s *canaryStep) judge() *verdict {
	for _, gate := range stepGates {
		if v := gate(s); v != nil {
			return v
		}
	}
	return nil
}

// swapFailuresGate fails the step when more members failed to swap the artifact (a host that
// crashed running it included), or cannot load it, than analysis.maxFailedSwaps allows; without
// an analysis, none may.
func swapFailuresGate(s *canaryStep) *verdict {
	failed, incompatible := failedPods(s.in, s.isMember)
	bad := slices.Concat(failed, incompatible)
	maxFailed := 0
	if a := s.spec.Analysis; a != nil && a.MaxFailedSwaps != nil {
		maxFailed = int(*a.MaxFailedSwaps)
	}
	if len(bad) <= maxFailed {
		return nil
	}
	return &verdict{kind: verdictFail, reason: splicev1.ReasonSwapFailed,
		msg: fmt.Sprintf("%d failed swaps (%s), more than maxFailedSwaps %d", len(bad), failedSummary(s.in, bad), maxFailed)}
}

// swapLatencyGate fails the step on the first member (in pod order) whose swap of the artifact
// took longer than analysis.maxSwapLatency.
func swapLatencyGate(s *canaryStep) *verdict {
	a := s.spec.Analysis
	if a == nil || a.MaxSwapLatency == nil {
		return nil
	}
	for _, p := range s.in.pods {
		if r := s.countedReport(p); r != nil && r.SwapLatencySeconds > a.MaxSwapLatency.Seconds() {
			return &verdict{kind: verdictFail, reason: splicev1.ReasonAnalysisFailed, msg: fmt.Sprintf(
				"pod %s swapped in %.3fs, more than maxSwapLatency %s", p.name, r.SwapLatencySeconds, a.MaxSwapLatency.Duration)}
		}
	}
	return nil
}

// errorRateGate fails the step when the members' calls on the artifact err or panic more often
// than analysis.maxErrorRatePercent. It judges only at least minCalls calls, and at least one
// (minCallsGate waits for fewer).
func errorRateGate(s *canaryStep) *verdict {
	a := s.spec.Analysis
	if a == nil || a.MaxErrorRatePercent == nil {
		return nil
	}
	calls, errs := s.calls()
	if calls == 0 || calls < uint64(a.MinCallsOrDefault()) {
		return nil
	}
	if rate := float64(errs) * 100 / float64(calls); rate > float64(*a.MaxErrorRatePercent) {
		return &verdict{kind: verdictFail, reason: splicev1.ReasonAnalysisFailed, msg: fmt.Sprintf(
			"plugin error rate %.2f%% (%d of %d calls), more than maxErrorRatePercent %d%%", rate, errs, calls, *a.MaxErrorRatePercent)}
	}
	return nil
}

// membersSwappedGate waits while some member does not yet serve the artifact, ready, at the
// share of calls this step plans (not the share its annotation still names from the step
// before).
func membersSwappedGate(s *canaryStep) *verdict {
	if done := countDone(s.in, s.isMember, s.target.TrafficPercent); done < len(s.members) {
		return &verdict{kind: verdictWait, reason: splicev1.ReasonSwapping,
			msg: fmt.Sprintf("%d of %d canary pods run %s", done, len(s.members), s.in.artifact.Digest)}
	}
	return nil
}

// prometheusGate judges analysis.prometheus by the result run for this step (promVerdict): it
// fails the step or waits for the result. The controller runs the query exactly when the
// plan reaches this gate (prometheusDue).
func prometheusGate(s *canaryStep) *verdict {
	a := s.spec.Analysis
	if a == nil || a.Prometheus == nil {
		return nil
	}
	v := promVerdict(a.Prometheus, s.prom)
	if v != nil && s.prom == nil {
		v.awaits = &promQuery{step: s.index, analysis: a.Prometheus}
	}
	return v
}

// pauseGate holds the step at its pause: until promoted when it has no duration, else until
// the duration has passed since the pause began. A step without a pause, or whose pause is
// over, goes on.
func pauseGate(s *canaryStep) *verdict {
	p := s.spec.Pause
	if p == nil {
		return nil
	}
	if p.Duration == nil {
		return &verdict{kind: verdictHold, reason: splicev1.ReasonAwaitingPromotion, pauseStart: s.pauseStart,
			msg: fmt.Sprintf("%d canary pods run %s; waiting for promotion (annotate %s)", len(s.members),
				s.in.artifact.Digest, splicev1.AnnotationPromote)}
	}
	end := s.pauseStart.Add(p.Duration.Duration)
	if !s.in.now.Before(end) {
		return nil
	}
	return &verdict{kind: verdictHold, reason: splicev1.ReasonPauseStep, pauseStart: s.pauseStart, requeueAfter: end.Sub(s.in.now),
		msg: fmt.Sprintf("paused for %s, until %s", p.Duration.Duration, end.UTC().Format(time.RFC3339))}
}

// minCallsGate waits while the members have reported fewer than analysis.minCalls calls on the
// artifact: the error rate is not judged yet, either way, and the step does not advance past
// its pause until it is.
func minCallsGate(s *canaryStep) *verdict {
	a := s.spec.Analysis
	if a == nil || a.MaxErrorRatePercent == nil {
		return nil
	}
	minCalls := uint64(a.MinCallsOrDefault())
	if calls, _ := s.calls(); calls < minCalls {
		return &verdict{kind: verdictWait, reason: splicev1.ReasonAnalysisPending, pauseStart: s.pauseStart, msg: fmt.Sprintf(
			"judging the error rate after %d plugin calls on the new version, %d reported so far (send traffic, lower analysis.minCalls, or annotate %s)",
			minCalls, calls, splicev1.AnnotationPromote)}
	}
	return nil
}

// countedReport returns a member's report when its counters and swap latency are the
// artifact's (PodReport.CountsDigest), and nil for any other pod.
func (s *canaryStep) countedReport(p podState) *splicev1.PodReport {
	r := p.report
	if !s.members[p.name] || r == nil || r.Digest != s.in.artifact.Digest || !r.CountsDigest() {
		return nil
	}
	return r
}

// calls sums the members' calls on the artifact, and those that erred or panicked.
func (s *canaryStep) calls() (calls, errs uint64) {
	for _, p := range s.in.pods {
		if r := s.countedReport(p); r != nil {
			calls += r.Calls
			errs += r.Errors + r.Panics
		}
	}
	return calls, errs
}
