package main

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/duration"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

// Symbols, as Argo Rollouts' `get rollout` draws them, so people who know that tree read this
// one at a glance.
const (
	iconOK          = "✔"
	iconBad         = "✖"
	iconWarning     = "⚠"
	iconPaused      = "॥"
	iconProgressing = "◌"
	iconWaiting     = "◷"
	iconUnknown     = "?"
)

// maxFailuresShown bounds the "Recent failures" list under the pods: the full list (at most
// status.recentFailures' ten) is in the object.
const maxFailuresShown = 3

// render draws a CompilerVersion and its pods as `kubectl splice get` shows them: a header with
// the rollout's state, one line per targeted pod with what it is told to run and what its agent
// reports, then the latest failures. It is a pure function of its arguments (now only ages the
// timestamps), so the same input always gives the same frame: --watch prints a frame only when
// it differs from the last one.
//
// pods may hold more than the targets (a stale cache, another selector): render keeps those in
// the CompilerVersion's namespace that its selector matches and that the controller targets
// (terminating pods are kept and marked, as they are interesting during an eviction).
func render(cv *splicev1.CompilerVersion, pods []corev1.Pod, now time.Time) string {
	var b strings.Builder
	b.WriteString(header(cv, now))
	b.WriteString("\n")
	b.WriteString(podTable(cv, pods))
	b.WriteString(failureList(cv, now))
	return trimTrailingSpace(b.String())
}

// header is the rollout's state, one field a line: the policy, the step, the phase and why,
// the controls in force, the artifacts and the pod counts.
func header(cv *splicev1.CompilerVersion, now time.Time) string {
	var b strings.Builder
	st := &cv.Status
	w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	field := func(name, format string, args ...any) {
		fmt.Fprintf(w, "%s:\t%s\n", name, fmt.Sprintf(format, args...))
	}

	field("Name", "%s", cv.Name)
	field("Namespace", "%s", cv.Namespace)
	field("Go", "%s", cv.Spec.GoVersion)
	field("Strategy", "%s", strategyLine(cv))
	if cv.Spec.Strategy.Type == splicev1.StrategyCanary {
		field("  Step", "%s", stepLine(cv, now))
	}
	phase, reason, message := phaseLine(cv)
	if reason != "" {
		field("Status", "%s %s (%s)", phaseIcon(phase), phase, reason)
	} else {
		field("Status", "%s %s", phaseIcon(phase), phase)
	}
	if message != "" {
		field("Message", "%s", message)
	}
	if st.ObservedGeneration != 0 && st.ObservedGeneration < cv.Generation {
		field("Observed", "generation %d of %d: the controller has not caught up with the latest spec", st.ObservedGeneration, cv.Generation)
	}
	if c := controlsLine(cv); c != "" {
		field("Controls", "%s", c)
	}
	fmt.Fprintln(w, "Artifacts:\t")
	switch {
	case st.Artifact == nil && st.StableArtifact == nil:
		field("  Canary", "none yet (no artifact built or resolved for this spec)")
	default:
		if st.StableArtifact != nil {
			field("  Stable", "%s", artifactLine(st.StableArtifact))
		} else {
			field("  Stable", "none (no rollout has completed yet)")
		}
		if st.Artifact != nil && (st.StableArtifact == nil || st.Artifact.Digest != st.StableArtifact.Digest) {
			field("  Canary", "%s", artifactLine(st.Artifact))
		}
	}
	field("Pods", "%d targeted, %d updated, %d ready, %d failed, %d incompatible",
		st.Targeted, st.Updated, st.Ready, st.Failed, st.Incompatible)
	w.Flush()
	return b.String()
}

// failureList is the latest pod failures, at most maxFailuresShown of them; "" without any.
func failureList(cv *splicev1.CompilerVersion, now time.Time) string {
	fs := cv.Status.RecentFailures
	if len(fs) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("\nRecent failures:\n")
	w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	for i, f := range fs {
		if i == maxFailuresShown {
			fmt.Fprintf(w, "  … %d more in status.recentFailures\n", len(fs)-maxFailuresShown)
			break
		}
		age := ""
		if f.Time != nil {
			age = " (" + ago(f.Time.Time, now) + ")"
		}
		fmt.Fprintf(w, "  %s\t%s %s\t%s\t%s\t%s%s\n", f.Pod, stateIcon(f.State), orDash(string(f.State)),
			shortDigest(f.Digest), orDash(f.Reason), oneLine(f.Message, 120), age)
	}
	w.Flush()
	return b.String()
}

// trimTrailingSpace drops the padding tabwriter leaves at the end of label-only lines.
func trimTrailingSpace(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return strings.Join(lines, "\n")
}

// podTable is one line per targeted pod, sorted by name.
func podTable(cv *splicev1.CompilerVersion, pods []corev1.Pod) string {
	var b strings.Builder
	sel, selErr := metav1.LabelSelectorAsSelector(&cv.Spec.Selector)
	if selErr != nil {
		fmt.Fprintf(&b, "(spec.selector cannot be used: %v)\n", selErr)
		return b.String()
	}
	if sel.Empty() {
		// The controller refuses it rather than target every pod in the namespace.
		b.WriteString("(spec.selector is empty: no pod is targeted)\n")
		return b.String()
	}
	var shown []*corev1.Pod
	for i := range pods {
		p := &pods[i]
		if p.Namespace != cv.Namespace || !sel.Matches(labels.Set(p.Labels)) {
			continue
		}
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue // finished for good: the controller no longer targets it
		}
		shown = append(shown, p)
	}
	if len(shown) == 0 {
		fmt.Fprintf(&b, "(no pod in namespace %s matches spec.selector %s)\n", cv.Namespace, sel)
		return b.String()
	}
	sort.Slice(shown, func(i, j int) bool { return shown[i].Name < shown[j].Name })

	w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "POD\tSTATUS\tDESIRED\tTRAFFIC\tSTATE\tRUNNING\tSWAP\tGC\tGLOBALS\tPLUGIN-READY")
	for _, p := range shown {
		r := describePod(cv, p)
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			p.Name, r.status, r.desired, r.traffic, r.state, r.running, r.swap, r.gc, r.globals, r.ready)
	}
	w.Flush()
	return b.String()
}

// podRow is one pod's line, cell by cell.
type podRow struct {
	status, desired, traffic, state, running, swap, gc, globals, ready string
}

// describePod reads the pod protocol off a pod: what the controller told it (its desired
// state, read as the agent reads it), what its agent answered (the report) and its
// plugin-ready condition.
func describePod(cv *splicev1.CompilerVersion, p *corev1.Pod) podRow {
	// Malformed desired-state annotations are the agent's to refuse, which its report then
	// says; the row shows what could be read of them.
	want, _ := splicev1.ParseDesiredState(p.Annotations)
	rep, repErr := podReport(p)
	r := podRow{status: podStatus(p), state: stateCell(want, rep, repErr), ready: readyCell(p),
		running: "-", swap: "-", gc: "-", globals: "-"}
	r.desired, r.traffic = desiredCells(cv, want, p.Annotations)
	if rep != nil {
		r.running, r.swap, r.gc, r.globals = reportCells(rep)
	}
	return r
}

// podStatus is the pod's phase, or Terminating once it is being deleted.
func podStatus(p *corev1.Pod) string {
	switch {
	case p.DeletionTimestamp != nil:
		return "Terminating"
	case p.Status.Phase == "":
		return "Unknown"
	}
	return string(p.Status.Phase)
}

// desiredCells are the DESIRED and TRAFFIC cells: the artifact the pod is told to run and the
// share of its calls that artifact takes.
func desiredCells(cv *splicev1.CompilerVersion, want splicev1.DesiredState, ann map[string]string) (desired, traffic string) {
	digest := splicev1.DigestOf(want.Artifact)
	switch {
	case want.Artifact == "":
		return "-", "-"
	case digest == "":
		// Not pinned by digest (the agent refuses it): show its last path element, "repo:tag".
		desired = oneLine(want.Artifact[strings.LastIndex(want.Artifact, "/")+1:], 40) + " (no digest)"
	default:
		desired = shortDigest(digest) + role(cv, digest)
	}
	raw, set := ann[splicev1.AnnotationTrafficPercent]
	switch {
	case want.TrafficPercent != nil:
		return desired, fmt.Sprintf("%d%%", *want.TrafficPercent)
	case set:
		return desired, iconWarning + " " + oneLine(raw, 8) // not a share the agent accepts
	}
	return desired, "100%"
}

// podReport decodes the pod's report; nil without one.
func podReport(p *corev1.Pod) (*splicev1.PodReport, error) {
	raw, ok := p.Annotations[splicev1.AnnotationReport]
	if !ok {
		return nil, nil
	}
	return splicev1.DecodeReport(raw)
}

// stateCell is the STATE cell: where the agent says the pod stands with its desired artifact.
func stateCell(want splicev1.DesiredState, rep *splicev1.PodReport, repErr error) string {
	digest := splicev1.DigestOf(want.Artifact)
	switch {
	case repErr != nil:
		return iconWarning + " BadReport"
	case rep == nil && want.Artifact != "":
		return iconWaiting + " Waiting" // the agent has not answered yet
	case rep == nil:
		return "-"
	case digest != "" && rep.Digest != digest:
		// The report is about an earlier desired artifact: the agent has not picked up the
		// current one yet. What it runs and its last swap's figures are still worth showing.
		return iconWaiting + " Waiting"
	}
	state := stateIcon(rep.State) + " " + string(rep.State)
	if rep.Reason != "" && rep.State != splicev1.SwapReady {
		state += ": " + rep.Reason
	}
	return state
}

// reportCells are the RUNNING, SWAP, GC and GLOBALS cells, from the agent's report.
func reportCells(rep *splicev1.PodReport) (running, swap, gc, globals string) {
	running, swap, gc, globals = orDash(shortDigest(rep.Running)), "-", "-", "-"
	if rep.State == splicev1.SwapReady && rep.TrafficPercent != nil && rep.Running != "" && rep.Digest != rep.Running {
		// A request-level canary: the host serves both, the stable artifact as Running.
		running += "+" + shortDigest(rep.Digest)
	}
	if rep.SwapLatencySeconds > 0 {
		swap = latency(rep.SwapLatencySeconds)
	}
	if rep.Before != nil && rep.After != nil {
		gc = strconv.FormatInt(int64(rep.After.GCCycles)-int64(rep.Before.GCCycles), 10)
		globals = signedBytes(int64(rep.After.ScanGlobalsBytes) - int64(rep.Before.ScanGlobalsBytes))
	}
	return running, swap, gc, globals
}

// readyCell is the PLUGIN-READY cell: the pod's splice.dev/plugin-ready condition.
func readyCell(p *corev1.Pod) string {
	ready := iconWaiting + " -"
	for _, c := range p.Status.Conditions {
		if c.Type != splicev1.PodConditionPluginReady {
			continue
		}
		switch c.Status {
		case corev1.ConditionTrue:
			ready = iconOK + " True"
		case corev1.ConditionFalse:
			ready = iconBad + " False"
		default:
			ready = iconUnknown + " " + string(c.Status)
		}
	}
	return ready
}

// role says which of the CompilerVersion's artifacts a digest is.
func role(cv *splicev1.CompilerVersion, digest string) string {
	st := &cv.Status
	switch {
	case st.StableArtifact != nil && digest == st.StableArtifact.Digest:
		return " (stable)"
	case st.Artifact != nil && digest == st.Artifact.Digest:
		return " (canary)"
	}
	return " (other)"
}

// strategyLine names the policy and the parameters that shape it.
func strategyLine(cv *splicev1.CompilerVersion) string {
	s := cv.Spec.Strategy
	switch s.Type {
	case splicev1.StrategyCanary:
		steps := 0
		if s.Canary != nil {
			steps = len(s.Canary.Steps)
		}
		return fmt.Sprintf("Canary, %d steps, onFailure %s", steps, s.Canary.OnFailureOrDefault())
	case splicev1.StrategyStrict:
		if s.Strict != nil && s.Strict.RecreateIncompatible {
			return "Strict, recreateIncompatible"
		}
		return "Strict"
	default:
		mu := s.RollingPatch.MaxUnavailableOrDefault()
		return fmt.Sprintf("RollingPatch, maxUnavailable %s", mu.String())
	}
}

// stepLine says where a canary stands: which step (1-based), what it asks, and how long its
// pause has run.
func stepLine(cv *splicev1.CompilerVersion, now time.Time) string {
	var steps []splicev1.CanaryStep
	if c := cv.Spec.Strategy.Canary; c != nil {
		steps = c.Steps
	}
	st := &cv.Status
	if st.CurrentStepIndex == nil {
		return fmt.Sprintf("-/%d (not started)", len(steps))
	}
	idx := int(*st.CurrentStepIndex)
	if idx >= len(steps) {
		return fmt.Sprintf("%d/%d done: every pod, all traffic", len(steps), len(steps))
	}
	step := steps[idx]
	parts := []string{fmt.Sprintf("setWeight %d%%", step.SetWeight)}
	if step.TrafficPercent != nil {
		parts = append(parts, fmt.Sprintf("trafficPercent %d%%", *step.TrafficPercent))
	}
	if step.Pause != nil {
		if step.Pause.Duration != nil {
			parts = append(parts, "pause "+step.Pause.Duration.Duration.String())
		} else {
			parts = append(parts, "pause until promoted")
		}
	}
	if a := step.Analysis; a != nil {
		parts = append(parts, "analysis ("+describeAnalysis(a)+")")
	}
	line := fmt.Sprintf("%d/%d: %s", idx+1, len(steps), strings.Join(parts, ", "))
	switch {
	case st.PauseStartTime != nil && step.Pause != nil && step.Pause.Duration != nil:
		d := step.Pause.Duration.Duration
		left := st.PauseStartTime.Add(d).Sub(now)
		if left < 0 {
			left = 0
		}
		line += fmt.Sprintf(" (paused %s, %s left)", since(st.PauseStartTime.Time, now), duration.HumanDuration(left))
	case st.PauseStartTime != nil:
		line += fmt.Sprintf(" (paused %s)", since(st.PauseStartTime.Time, now))
	case st.StepStartTime != nil:
		line += fmt.Sprintf(" (started %s)", ago(st.StepStartTime.Time, now))
	}
	return line
}

// phaseLine returns the phase and the reason and message of the condition that best explains
// it: the build while building, else a degradation, a pause, the progress, readiness.
func phaseLine(cv *splicev1.CompilerVersion) (phase splicev1.Phase, reason, message string) {
	st := &cv.Status
	phase = st.Phase
	if phase == "" {
		phase = splicev1.PhasePending
	}
	find := func(t string) *metav1.Condition { return apimeta.FindStatusCondition(st.Conditions, t) }
	var c *metav1.Condition
	switch {
	case phase == splicev1.PhaseBuilding || phase == splicev1.PhaseBuildFailed:
		c = find(splicev1.ConditionBuilt)
	case apimeta.IsStatusConditionTrue(st.Conditions, splicev1.ConditionDegraded):
		c = find(splicev1.ConditionDegraded)
	case apimeta.IsStatusConditionTrue(st.Conditions, splicev1.ConditionPaused):
		c = find(splicev1.ConditionPaused)
	case find(splicev1.ConditionProgressing) != nil:
		c = find(splicev1.ConditionProgressing)
	default:
		c = find(splicev1.ConditionReady)
	}
	if c == nil {
		return phase, "", ""
	}
	return phase, c.Reason, oneLine(c.Message, 400)
}

// controlsLine lists the control annotations in force and the requests not yet acted on.
func controlsLine(cv *splicev1.CompilerVersion) string {
	var out []string
	add := func(when bool, what string) {
		if when {
			out = append(out, what)
		}
	}
	add(cv.Aborted(), "aborted ("+splicev1.AnnotationAbort+")")
	add(cv.Paused(), "paused ("+splicev1.AnnotationPaused+")")
	add(cv.PromoteFullRequested(), "full promotion requested, not yet acted on")
	add(cv.PromoteRequested(), "promotion requested, not yet acted on")
	add(cv.RetryRequested(), "retry requested, not yet acted on")
	return strings.Join(out, "; ")
}

// artifactLine is a short digest, the repository, and the versions it was built with.
func artifactLine(a *splicev1.ArtifactStatus) string {
	repo := a.Ref
	if i := strings.LastIndex(repo, "@"); i >= 0 {
		repo = repo[:i]
	}
	line := shortDigest(a.Digest) + "  " + repo
	var extra []string
	if a.GoVersion != "" {
		extra = append(extra, a.GoVersion)
	}
	if a.APIVersion != "" {
		extra = append(extra, "api "+a.APIVersion)
	}
	if len(extra) > 0 {
		line += " (" + strings.Join(extra, ", ") + ")"
	}
	return line
}

func phaseIcon(p splicev1.Phase) string {
	switch p {
	case splicev1.PhaseCompleted:
		return iconOK
	case splicev1.PhaseProgressing, splicev1.PhaseBuilding:
		return iconProgressing
	case splicev1.PhasePaused:
		return iconPaused
	case splicev1.PhasePending:
		return iconWaiting
	case splicev1.PhaseDegraded, splicev1.PhaseBuildFailed:
		return iconBad
	case splicev1.PhaseRolledBack:
		return iconWarning
	}
	return iconUnknown
}

func stateIcon(s splicev1.SwapState) string {
	switch s {
	case splicev1.SwapReady:
		return iconOK
	case splicev1.SwapPending:
		return iconWaiting
	case splicev1.SwapPulling, splicev1.SwapSwapping:
		return iconProgressing
	case splicev1.SwapFailed, splicev1.SwapIncompatible:
		return iconBad
	case splicev1.SwapRolledBack:
		return iconWarning
	}
	return iconUnknown
}

// shortDigest is the first 12 hex digits of a sha256 digest, as `docker images` shows them.
func shortDigest(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	if len(d) > 12 {
		d = d[:12]
	}
	return d
}

// latency prints a swap latency at a precision a person reads: 850µs, 182ms, 1.25s.
func latency(seconds float64) string {
	d := time.Duration(seconds * float64(time.Second))
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(10 * time.Millisecond).String()
	}
}

// signedBytes prints a size change in IEC units with its sign: +96KiB, -1.5MiB, 0B.
func signedBytes(n int64) string {
	sign := "+"
	if n < 0 {
		sign, n = "-", -n
	}
	if n == 0 {
		return "0B"
	}
	v, unit := float64(n), "B"
	for _, u := range []string{"KiB", "MiB", "GiB"} {
		if v < 1024 {
			break
		}
		v, unit = v/1024, u
	}
	if unit == "B" || v >= 10 {
		return fmt.Sprintf("%s%.0f%s", sign, v, unit)
	}
	return fmt.Sprintf("%s%.1f%s", sign, v, unit)
}

// ago is "5m ago", or "just now" for times at or after now (clocks skew).
func ago(t, now time.Time) string {
	if !now.After(t) {
		return "just now"
	}
	return duration.HumanDuration(now.Sub(t)) + " ago"
}

// since is the time elapsed from t to now, never negative.
func since(t, now time.Time) string {
	d := now.Sub(t)
	if d < 0 {
		d = 0
	}
	return duration.HumanDuration(d)
}

// oneLine folds a message onto one line and bounds it.
func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > max {
		return string(r[:max-1]) + "…"
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// describeAnalysis says what a step's analysis checks, in a few words.
func describeAnalysis(a *splicev1.CanaryAnalysis) string {
	failed := int32(0)
	if a.MaxFailedSwaps != nil {
		failed = *a.MaxFailedSwaps
	}
	parts := []string{fmt.Sprintf("failed swaps <= %d", failed)}
	if a.MaxErrorRatePercent != nil {
		parts = append(parts, fmt.Sprintf("errors <= %d%% over >= %d calls", *a.MaxErrorRatePercent, a.MinCallsOrDefault()))
	}
	if a.MaxSwapLatency != nil {
		parts = append(parts, "swap <= "+a.MaxSwapLatency.Duration.String())
	}
	if a.Prometheus != nil {
		parts = append(parts, "prometheus <= "+a.Prometheus.MaxValue)
	}
	return strings.Join(parts, ", ")
}
