package controllers

import (
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

// The rollout engine is a pure function from what was observed (rolloutInput) to what should be
// (rolloutPlan). The reconciler reads the world into an input, calls plan, and applies the
// difference: pod annotations, evictions, status. Each policy lives in its own file with its own
// table test; this file holds what they share.

// analysedCountersInterval is how often the canary pods of a step that judges their error rate
// write their call counters (the agents' default is once a minute; they read their host every
// 10s).
const analysedCountersInterval = 10 * time.Second

// controls are the people's requests, read from the CompilerVersion's annotations.
type controls struct {
	// promote, promoteFull and retry are true when their nonce is new (not yet acted on).
	promote, promoteFull, retry bool
	// paused and aborted are level-triggered.
	paused, aborted bool
}

// rolloutInput is everything a plan depends on.
type rolloutInput struct {
	// key seeds the stable hash that picks canary members (the CompilerVersion's UID).
	key      string
	strategy splicev1.RolloutStrategy
	// artifact is the artifact to roll out; nil when none is built for the current spec.
	artifact *splicev1.ArtifactStatus
	// stable is the last artifact that completed a rollout; nil before the first.
	stable *splicev1.ArtifactStatus
	// pods are the targeted pods, with their current annotations and reports.
	pods []podState
	// status carries the rollout state recorded so far (phase, step, times, rolloutDigest).
	status   splicev1.CompilerVersionStatus
	controls controls
	now      time.Time
	// prom is the current step's Prometheus analysis result, when it has one and it was run.
	prom *promResult
	// allowMinor and maxLoaded are spec.plugin.allowMinorAPIChange and
	// spec.maxLoadedVersions (defaulted): every target that names an artifact carries them.
	allowMinor bool
	maxLoaded  int32
	// goVersion is spec.goVersion ("1.26.8"), for messages that say what an image must be.
	goVersion string
	// evictions is the record of Strict's evictions (status.incompatibleEvictions).
	evictions *splicev1.IncompatibleEvictions
}

// rolloutPlan is what should be.
type rolloutPlan struct {
	// targets holds the wanted annotations of every targeted pod.
	targets map[string]splicev1.DesiredState
	// evict lists pods to evict (Strict's incompatible pods), through the Eviction API.
	evict []string
	// evictions is the record of Strict's evictions to keep in status: every pod in evict is
	// in it, so it is recorded before any is evicted.
	evictions *splicev1.IncompatibleEvictions
	// phase, step and times are the rollout state to record.
	phase                     splicev1.Phase
	step                      *int32
	stepStart, pauseStart     *metav1.Time
	rolloutDigest             string
	stable                    *splicev1.ArtifactStatus
	progressing, paused, degr metav1.Condition
	// requeueAfter asks for a reconcile at a known future time (a timed pause ending).
	requeueAfter time.Duration
	// promWanted is the Prometheus analysis the plan stopped at for want of a result: the
	// query the controller is to run (prometheusDue).
	promWanted *promQuery
	// message says, for a person, what the rollout does now and why; it is the Event note on
	// a phase change.
	message string
}

// digestOf returns the digest part of "ref@sha256:…", or "" when there is none.

// onArtifact reports whether the pod is told to run a.
func (p podState) onArtifact(a *splicev1.ArtifactStatus) bool {
	return a != nil && splicev1.DigestOf(p.target.Artifact) == a.Digest
}

// done reports whether the pod serves a as wanted, to all calls (traffic nil) or to the given
// share of them beside the stable artifact, and passes its plugin readiness. A canary step
// passes the share it plans, not the pod's current annotation: the annotations of a step just
// planned still name the previous step's share.
func (p podState) done(a *splicev1.ArtifactStatus, traffic *int32) bool {
	r := p.report
	if a == nil || !p.ready || r == nil || r.Digest != a.Digest || r.State != splicev1.SwapReady {
		return false
	}
	if traffic == nil {
		return r.TrafficPercent == nil && r.Running == a.Digest
	}
	return r.TrafficPercent != nil && *r.TrafficPercent == *traffic
}

// outcome returns the pod's terminal failure state for a (SwapState.Failure: Failed,
// RolledBack, Crashed or Incompatible), or "".
func (p podState) outcome(a *splicev1.ArtifactStatus) splicev1.SwapState {
	r := p.report
	if a == nil || r == nil || r.Digest != a.Digest || !r.State.Failure() {
		return ""
	}
	return r.State
}

// settled reports whether the pod has answered about a: a terminal report about it, or a
// report it cannot read (a broken agent, which will not answer better).
func (p podState) settled(a *splicev1.ArtifactStatus) bool {
	return p.reportErr != nil || (p.report != nil && p.report.Digest == a.Digest && p.report.State.Terminal())
}

// templateKey is the pod template the pod came from, for Strict's bounded evictions; a pod
// whose template is not known is its own.
func (p podState) templateKey() string {
	if p.template != "" {
		return p.template
	}
	return "Pod/" + p.name
}

// memberRank orders pods for membership: a stable hash of the key and the pod name, so the same
// pods are picked in the same order by every manager, before and after a restart.
func memberRank(key, pod string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(key))
	h.Write([]byte{0})
	h.Write([]byte(pod))
	return h.Sum64()
}

// pickMembers returns the names of the pods that run the artifact: every pod already told to
// run it (membership is never taken away while a step holds), topped up to want by hash order.
func pickMembers(in *rolloutInput, want int) map[string]bool {
	members := map[string]bool{}
	var others []podState
	for _, p := range in.pods {
		if p.onArtifact(in.artifact) {
			members[p.name] = true
		} else {
			others = append(others, p)
		}
	}
	sort.Slice(others, func(i, j int) bool {
		ri, rj := memberRank(in.key, others[i].name), memberRank(in.key, others[j].name)
		if ri != rj {
			return ri < rj
		}
		return others[i].name < others[j].name
	})
	for _, p := range others {
		if len(members) >= want {
			break
		}
		members[p.name] = true
	}
	return members
}

// weightCount is how many of n pods a percentage covers, rounded up (10% of 3 pods is 1 pod).
func weightCount(percent int32, n int) int {
	if percent <= 0 || n == 0 {
		return 0
	}
	return int(math.Ceil(float64(percent) * float64(n) / 100))
}

// batchSize resolves maxUnavailable against n pods, rounding a percentage up; at least 1.
func batchSize(maxUnavailable intstr.IntOrString, n int) int {
	size, err := intstr.GetScaledValueFromIntOrPercent(&maxUnavailable, n, true)
	if err != nil || size < 1 {
		return 1
	}
	return size
}

// major returns a semantic version's major number, or -1 when v is not one.
func major(v string) int {
	v = strings.TrimPrefix(v, "v")
	m, _, _ := strings.Cut(v, ".")
	n, err := strconv.Atoi(m)
	if err != nil {
		return -1
	}
	return n
}

// toStable is what a pod runs outside the rollout: the stable artifact, or nothing managed.
func toStable(in *rolloutInput) splicev1.DesiredState {
	if in.stable == nil {
		return splicev1.DesiredState{}
	}
	return splicev1.DesiredState{Artifact: in.stable.Ref}
}

// everyPod sets the same target on every pod.
func everyPod(in *rolloutInput, t splicev1.DesiredState) map[string]splicev1.DesiredState {
	out := make(map[string]splicev1.DesiredState, len(in.pods))
	for _, p := range in.pods {
		out[p.name] = t
	}
	return out
}

// frozen keeps every pod's annotations as they are.
func frozen(in *rolloutInput) map[string]splicev1.DesiredState {
	out := make(map[string]splicev1.DesiredState, len(in.pods))
	for _, p := range in.pods {
		out[p.name] = p.target
	}
	return out
}

func cond(t string, status bool, reason, msg string) metav1.Condition {
	s := metav1.ConditionFalse
	if status {
		s = metav1.ConditionTrue
	}
	return metav1.Condition{Type: t, Status: s, Reason: reason, Message: msg}
}

// newPlan starts a plan that records the current rollout state unchanged.
func newPlan(in *rolloutInput) *rolloutPlan {
	st := in.status
	return &rolloutPlan{
		phase: st.Phase, step: st.CurrentStepIndex, stepStart: st.StepStartTime, pauseStart: st.PauseStartTime,
		rolloutDigest: st.RolloutDigest, stable: in.stable, evictions: in.evictions,
		progressing: cond(splicev1.ConditionProgressing, false, splicev1.ReasonNoRollout, "no rollout in progress"),
		paused:      cond(splicev1.ConditionPaused, false, splicev1.ReasonNoRollout, "not paused"),
		degr:        cond(splicev1.ConditionDegraded, false, splicev1.ReasonHealthy, "no targeted pod failed or is incompatible"),
	}
}

// failureSummary names failed pods for a message: at most five, in name order, and how many
// more. It works on its own copy: callers go on to use the list (planStrict evicts it), so
// sorting or truncating theirs in place would hand a text fragment to the Eviction API.
func failureSummary(names []string) string {
	shown := slices.Sorted(slices.Values(names))
	if len(shown) > 5 {
		shown = append(shown[:5], fmt.Sprintf("and %d more", len(shown)-5))
	}
	return strings.Join(shown, ", ")
}

// anyPod considers every pod.
func anyPod(podState) bool { return true }

// countDone counts the pods (among those considered) that serve the artifact and are ready.
func countDone(in *rolloutInput, consider func(podState) bool, traffic *int32) int {
	n := 0
	for _, p := range in.pods {
		if consider(p) && p.done(in.artifact, traffic) {
			n++
		}
	}
	return n
}

// failedPods returns the pods (among those considered) whose last swap of the artifact failed,
// rolled back or crashed their host, and those whose host cannot load it, each in name order so
// that evictions and messages do not depend on the order the pods were listed in.
func failedPods(in *rolloutInput, consider func(podState) bool) (failed, incompatible []string) {
	for _, p := range in.pods {
		if !consider(p) {
			continue
		}
		switch s := p.outcome(in.artifact); {
		case s == splicev1.SwapIncompatible:
			incompatible = append(incompatible, p.name)
		case s != "":
			failed = append(failed, p.name)
		}
	}
	slices.Sort(failed)
	slices.Sort(incompatible)
	return failed, incompatible
}

// failedSummary names failed pods for a message, as failureSummary does, and says which of them
// crashed their host: "p01, p02; the host crashed running sha256:… on p02".
func failedSummary(in *rolloutInput, names []string) string {
	var crashed []string
	for _, p := range in.pods {
		if slices.Contains(names, p.name) && p.outcome(in.artifact) == splicev1.SwapCrashed {
			crashed = append(crashed, p.name)
		}
	}
	s := failureSummary(names)
	if len(crashed) > 0 {
		s += fmt.Sprintf("; the host crashed running %s on %s", in.artifact.Digest, failureSummary(crashed))
	}
	return s
}

// rollBack sends every pod back to the stable artifact and records why.
func rollBack(in *rolloutInput, pl *rolloutPlan, reason, msg string) *rolloutPlan {
	pl.targets = everyPod(in, toStable(in))
	pl.phase = splicev1.PhaseRolledBack
	pl.pauseStart = nil
	if in.stable == nil {
		msg += "; there is no stable artifact to return to, so pods keep what they run"
		pl.phase = splicev1.PhaseDegraded
	} else {
		msg += fmt.Sprintf("; every pod returns to the stable artifact %s", in.stable.Digest)
	}
	pl.progressing = cond(splicev1.ConditionProgressing, false, reason, msg)
	pl.degr = cond(splicev1.ConditionDegraded, true, reason, msg)
	pl.message = msg
	return pl
}

// complete marks the artifact stable: every pod runs it, and the rollout is over.
func complete(in *rolloutInput, pl *rolloutPlan) *rolloutPlan {
	pl.targets = everyPod(in, splicev1.DesiredState{Artifact: in.artifact.Ref})
	pl.phase = splicev1.PhaseCompleted
	pl.stable = in.artifact.DeepCopy()
	pl.pauseStart = nil
	pl.message = fmt.Sprintf("all %d targeted pods run %s; it is now the stable artifact", len(in.pods), in.artifact.Digest)
	pl.progressing = cond(splicev1.ConditionProgressing, false, splicev1.ReasonRolloutComplete, pl.message)
	// A rollout completes once every pod serves the artifact; a host may still back out of it
	// later (its panic threshold reached, or it crashed running it). Nothing is left to roll
	// back to, so say so: the pods serve what their hosts returned to.
	if failed, _ := failedPods(in, anyPod); len(failed) > 0 {
		pl.phase = splicev1.PhaseDegraded
		pl.message = fmt.Sprintf("%s failed on %s after its rollout completed; those hosts serve the version they returned to: roll out another artifact",
			in.artifact.Digest, failedSummary(in, failed))
		pl.degr = cond(splicev1.ConditionDegraded, true, splicev1.ReasonSwapFailed, pl.message)
	}
	return pl
}

// plan decides the next state of a rollout. It does not modify its input. Every target it
// gives a pod is completed by withHostPolicy, whichever policy or control decided it.
func plan(in *rolloutInput) *rolloutPlan {
	pl := decide(in)
	withHostPolicy(in, pl.targets)
	return pl
}

// withHostPolicy gives every target that names an artifact the CompilerVersion's consent to a
// minor plugin API change (spec.plugin.allowMinorAPIChange) and its bound on the versions a
// host holds (spec.maxLoadedVersions), and every other target neither (the pod protocol refuses
// them without an artifact). It is the one place targets get them, so that no policy, control
// or frozen copy of a pod's own annotations can leave them out.
func withHostPolicy(in *rolloutInput, targets map[string]splicev1.DesiredState) {
	for name, t := range targets {
		t.AllowMinorAPIChange, t.MaxLoadedVersions = false, 0
		if t.Artifact != "" {
			t.AllowMinorAPIChange, t.MaxLoadedVersions = in.allowMinor, in.maxLoaded
		}
		targets[name] = t
	}
}

// decide is the rollout's decision. What the people asked for (abort, pause) and what was
// already decided (completed, rolled back) come before the policy, which decides only a
// rollout in progress.
func decide(in *rolloutInput) *rolloutPlan {
	pl := newPlan(in)
	if in.artifact == nil {
		return waitForBuild(in, pl)
	}
	// A new artifact starts a new rollout from the first step; so does a retry.
	if in.status.RolloutDigest != in.artifact.Digest || in.controls.retry {
		restart(in, pl)
	}
	switch {
	case in.stable != nil && in.stable.Digest == in.artifact.Digest:
		return complete(in, pl)
	case in.controls.aborted:
		return planAborted(in, pl)
	case pl.phase == splicev1.PhaseRolledBack:
		return stayRolledBack(in, pl)
	case in.controls.paused:
		return pausedByUser(in, pl)
	case in.stable == nil:
		return planFirst(in, pl)
	case in.strategy.Type == splicev1.StrategyStrict:
		return planStrict(in, pl)
	case in.strategy.Type == splicev1.StrategyCanary:
		return planCanary(in, pl)
	default:
		return planRollingPatch(in, pl)
	}
}

// waitForBuild: with nothing to roll out, pods run the stable artifact (new pods included).
func waitForBuild(in *rolloutInput, pl *rolloutPlan) *rolloutPlan {
	pl.targets = everyPod(in, toStable(in))
	if pl.phase == "" {
		pl.phase = splicev1.PhasePending
	}
	pl.progressing = cond(splicev1.ConditionProgressing, false, splicev1.ReasonWaitingForBuild, "no artifact is built for the current spec yet")
	return pl
}

// restart records a new rollout of the artifact, from its first step.
func restart(in *rolloutInput, pl *rolloutPlan) {
	now := metav1.NewTime(in.now)
	pl.rolloutDigest = in.artifact.Digest
	pl.phase = splicev1.PhaseProgressing
	pl.step = nil
	if in.strategy.Type == splicev1.StrategyCanary {
		zero := int32(0)
		pl.step = &zero
	}
	pl.stepStart, pl.pauseStart = &now, nil
	// A new rollout may evict the pods of a template once more (rollout_evictions.go).
	pl.evictions = nil
}

// planAborted returns every pod to the stable artifact; without one, pods keep what they run.
func planAborted(in *rolloutInput, pl *rolloutPlan) *rolloutPlan {
	pl = rollBack(in, pl, splicev1.ReasonAborted, "the rollout was aborted (annotation "+splicev1.AnnotationAbort+")")
	if pl.phase == splicev1.PhaseDegraded {
		pl.targets = frozen(in)
	}
	return pl
}

// stayRolledBack keeps a failed rollout rolled back until a retry or a new artifact.
func stayRolledBack(in *rolloutInput, pl *rolloutPlan) *rolloutPlan {
	pl = rollBack(in, pl, splicev1.ReasonRolledBack, "the rollout of "+in.artifact.Digest+" failed and was rolled back; annotate "+
		splicev1.AnnotationRetry+" to try again")
	keepFailure(in, pl)
	return pl
}

// keepFailure keeps the recorded Degraded and Progressing conditions of a rollout that stopped
// on a failure (rolled back, or a first rollout that stopped), so that status goes on saying
// why it failed, not merely that it did. A Degraded condition about overlapping selectors
// (withOverlap) is no rollout failure and is not kept.
func keepFailure(in *rolloutInput, pl *rolloutPlan) {
	if prev := apimeta.FindStatusCondition(in.status.Conditions, splicev1.ConditionDegraded); prev != nil &&
		prev.Status == metav1.ConditionTrue && prev.Reason != splicev1.ReasonOverlappingSelector {
		pl.degr = cond(splicev1.ConditionDegraded, true, prev.Reason, prev.Message)
	}
	if prev := apimeta.FindStatusCondition(in.status.Conditions, splicev1.ConditionProgressing); prev != nil && prev.Status == metav1.ConditionFalse {
		pl.progressing = cond(splicev1.ConditionProgressing, false, prev.Reason, prev.Message)
	}
}

// pausedByUser freezes every pod's annotations while the paused annotation is set.
func pausedByUser(in *rolloutInput, pl *rolloutPlan) *rolloutPlan {
	pl.targets = frozen(in)
	pl.phase = splicev1.PhasePaused
	pl.message = "paused by annotation " + splicev1.AnnotationPaused
	pl.paused = cond(splicev1.ConditionPaused, true, splicev1.ReasonPausedByUser, pl.message)
	pl.progressing = cond(splicev1.ConditionProgressing, false, splicev1.ReasonPausedByUser, pl.message)
	return pl
}

// planFirst is the first rollout of a CompilerVersion: there is no stable artifact to keep
// serving, compare against or roll back to, so every pod moves at once, whatever the policy (as
// Argo Rollouts does for a first deployment).
//
// A failed swap stops it, whatever the policy (stopFirst): a pod reported Failed, RolledBack or
// Crashed, and under RollingPatch and Canary also Incompatible, for which an incompatible host
// is a failed swap too. With nothing to roll back to, every pod keeps the annotations it has —
// a pod told the artifact stays told (its report stays about it), a pod not told it (one
// created since, say) is not told it — and so keeps what its host serves; nothing is evicted;
// the phase is Degraded and the Progressing condition says RolloutStopped. It stays stopped,
// even once the failed pods are gone, until splice.dev/retry or a new artifact: a crash must
// not be tried again on the next pod that comes up. Under Strict an incompatible pod is what
// it is there (planStrict): evicted with recreateIncompatible, once per pod template, and
// reported otherwise, while the other pods go on.
func planFirst(in *rolloutInput, pl *rolloutPlan) *rolloutPlan {
	if pl.phase == splicev1.PhaseDegraded && recordedReason(in, splicev1.ConditionProgressing) == splicev1.ReasonRolloutStopped {
		return stayStopped(in, pl)
	}
	failed, incompatible := failedPods(in, anyPod)
	strict := in.strategy.Type == splicev1.StrategyStrict
	if len(failed) > 0 || (!strict && len(incompatible) > 0) {
		return stopFirst(in, pl, slices.Concat(failed, incompatible))
	}
	if strict {
		return planStrict(in, pl)
	}
	pl.targets = everyPod(in, splicev1.DesiredState{Artifact: in.artifact.Ref})
	done := countDone(in, anyPod, nil)
	if len(in.pods) > 0 && done == len(in.pods) {
		return complete(in, pl)
	}
	pl.phase = splicev1.PhaseProgressing
	pl.message = fmt.Sprintf("first rollout: no stable artifact yet, so every pod moves at once; %d of %d run %s", done, len(in.pods), in.artifact.Digest)
	pl.progressing = cond(splicev1.ConditionProgressing, true, splicev1.ReasonSwapping, pl.message)
	return pl
}

// stopFirst stops a first rollout on the pods that failed (planFirst says what that means).
func stopFirst(in *rolloutInput, pl *rolloutPlan, bad []string) *rolloutPlan {
	msg := fmt.Sprintf("first rollout: the swap of %s failed on %s; there is no stable artifact to roll back to, so the rollout stops: "+
		"every pod keeps what its host serves and no other pod is told %s; annotate %s to try again, or roll out another artifact",
		in.artifact.Digest, failedSummary(in, bad), in.artifact.Digest, splicev1.AnnotationRetry)
	return halt(in, pl, splicev1.ReasonRolloutStopped, msg)
}

// halt keeps every pod where it is (frozen) and makes the rollout Degraded for a failed swap,
// with progressingReason on Progressing and msg as the message of both.
func halt(in *rolloutInput, pl *rolloutPlan, progressingReason, msg string) *rolloutPlan {
	pl.targets = frozen(in)
	pl.phase = splicev1.PhaseDegraded
	pl.message = msg
	pl.progressing = cond(splicev1.ConditionProgressing, false, progressingReason, msg)
	pl.degr = cond(splicev1.ConditionDegraded, true, splicev1.ReasonSwapFailed, msg)
	return pl
}

// stayStopped keeps a stopped first rollout stopped, still saying why.
func stayStopped(in *rolloutInput, pl *rolloutPlan) *rolloutPlan {
	pl.targets = frozen(in)
	pl.message = fmt.Sprintf("first rollout of %s stopped after a failed swap; annotate %s to try again", in.artifact.Digest, splicev1.AnnotationRetry)
	pl.progressing = cond(splicev1.ConditionProgressing, false, splicev1.ReasonRolloutStopped, pl.message)
	pl.degr = cond(splicev1.ConditionDegraded, true, splicev1.ReasonSwapFailed, pl.message)
	keepFailure(in, pl)
	return pl
}

// recordedReason is the reason of a condition as status records it, or "".
func recordedReason(in *rolloutInput, conditionType string) string {
	if c := apimeta.FindStatusCondition(in.status.Conditions, conditionType); c != nil {
		return c.Reason
	}
	return ""
}
