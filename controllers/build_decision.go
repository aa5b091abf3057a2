package controllers

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/artifact"
	"github.com/splice-dev/splice/builder"
	"github.com/splice-dev/splice/host/control"
)

// Reasons of the Built condition, as the build controller sets them. A failed build whose
// builder said why carries the builder's own reason instead (builder.Reason*: CompileFailed,
// ToolchainMismatch, SourceUnavailable, PackageInvalid, SymbolNotFound, APIVersionMismatch,
// PushFailed, InvalidInput, Internal).
const (
	// ReasonBuilding: Built is False while the build Job for the current spec runs.
	ReasonBuilding = "Building"
	// ReasonBuildSucceeded: Built is True; status.artifact is the Job's pushed artifact.
	ReasonBuildSucceeded = "BuildSucceeded"
	// ReasonBuildFailed: the builder failed without a reason it could report (it crashed,
	// was OOM-killed, or wrote something unreadable).
	ReasonBuildFailed = "BuildFailed"
	// ReasonBuildJobFailed: the Job gave up without a verdict from the builder (deadline,
	// backoff limit, pods deleted).
	ReasonBuildJobFailed = "BuildJobFailed"
	// ReasonBuilderInstallFailed: the init container could not copy the builder from the
	// manager's image.
	ReasonBuilderInstallFailed = "BuilderInstallFailed"
	// ReasonInvalidBuildResult: the Job succeeded but its result does not describe an
	// artifact for this spec.
	ReasonInvalidBuildResult = "InvalidBuildResult"
	// ReasonBuildJobConflict: a Job with the build's name exists and is not this
	// CompilerVersion's build for these inputs.
	ReasonBuildJobConflict = "BuildJobConflict"
	// ReasonArtifactResolved: Built is True; status.artifact is spec.plugin.source.artifact,
	// whose config was read from the registry and matches the spec.
	ReasonArtifactResolved = "ArtifactResolved"
	// ReasonArtifactUnavailable: the registry could not be read (retried with backoff).
	ReasonArtifactUnavailable = "ArtifactUnavailable"
	// ReasonInvalidArtifact: the reference is not a Splice plugin artifact, or its content
	// does not match its digest.
	ReasonInvalidArtifact = "InvalidArtifact"
	// ReasonGoVersionMismatch: the artifact was built by another Go release than
	// spec.goVersion.
	ReasonGoVersionMismatch = "GoVersionMismatch"
)

// buildRecord is the outcome of a build, stored on its Job (AnnotationBuildRecord) once.
type buildRecord struct {
	// Result is the validated result of a successful build.
	Result *builder.Result `json:"result,omitempty"`
	// Reason and Message explain a failure.
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

func (r *buildRecord) succeeded() bool { return r.Result != nil }

func decodeRecord(s string) (*buildRecord, error) {
	var r buildRecord
	if err := json.Unmarshal([]byte(s), &r); err != nil {
		return nil, fmt.Errorf("decode %s: %w", AnnotationBuildRecord, err)
	}
	if (r.Result == nil) == (r.Reason == "") {
		return nil, fmt.Errorf("%s holds neither a result nor a failure reason", AnnotationBuildRecord)
	}
	return &r, nil
}

// buildDecision is what the build controller wants in status: the two fields it owns.
type buildDecision struct {
	// artifact is the artifact for the current spec, nil when there is none (yet).
	artifact *splicev1.ArtifactStatus
	// built is the Built condition (type, generation and time are filled in when applied).
	built metav1.Condition
}

func decided(art *splicev1.ArtifactStatus, status metav1.ConditionStatus, reason, msg string) *buildDecision {
	return &buildDecision{artifact: art, built: metav1.Condition{Status: status, Reason: reason, Message: clipMessage(msg, maxConditionMessage)}}
}

// applyBuildDecision returns st with the fields the build controller owns (artifact and the
// Built condition) set from d, and every other field as it was. The phase is not among them:
// the CompilerVersion reconciler derives it (buildPhase) from the Built condition written here.
func applyBuildDecision(st splicev1.CompilerVersionStatus, d *buildDecision, generation int64, now metav1.Time) splicev1.CompilerVersionStatus {
	next := *st.DeepCopy()
	next.Artifact = d.artifact.DeepCopy()
	c := d.built
	c.Type = splicev1.ConditionBuilt
	c.ObservedGeneration = generation
	c.LastTransitionTime = now
	meta.SetStatusCondition(&next.Conditions, c)
	return next
}

// upToDate reports whether status already holds an artifact for this generation: the fast
// path that keeps an unchanged spec from ever building again, even after its Job is gone.
func upToDate(cv *splicev1.CompilerVersion) bool {
	c := meta.FindStatusCondition(cv.Status.Conditions, splicev1.ConditionBuilt)
	if c == nil || c.Status != metav1.ConditionTrue || c.ObservedGeneration != cv.Generation || cv.Status.Artifact == nil {
		return false
	}
	if ref := cv.Spec.Plugin.Source.Artifact; ref != "" {
		return cv.Status.Artifact.Ref == ref
	}
	return cv.Spec.Plugin.Source.Git != nil
}

// jobOutcome reports whether a Job is finished and how.
func jobOutcome(job *batchv1.Job) (finished, succeeded bool, cond *batchv1.JobCondition) {
	for i := range job.Status.Conditions {
		c := &job.Status.Conditions[i]
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete:
			return true, true, c
		case batchv1.JobFailed:
			return true, false, c
		}
	}
	return false, false, nil
}

// jobDurationSeconds is how long the Job ran, or 0 when it cannot tell.
func jobDurationSeconds(job *batchv1.Job, end *batchv1.JobCondition) float64 {
	if job.Status.StartTime == nil {
		return 0
	}
	stop := job.Status.CompletionTime
	if stop == nil && end != nil {
		stop = &end.LastTransitionTime
	}
	if stop == nil || stop.Before(job.Status.StartTime) {
		return 0
	}
	return stop.Sub(job.Status.StartTime.Time).Seconds()
}

// validateBuildResult reads a successful build's termination message and checks it against
// what was asked for: a message from another build, another repository or another toolchain
// must never become status.artifact.
func validateBuildResult(msg string, cv *splicev1.CompilerVersion, key string) (*builder.Result, error) {
	if strings.TrimSpace(msg) == "" {
		return nil, errors.New("the build container left no termination message")
	}
	r, err := builder.ParseResult(msg)
	if err != nil {
		return nil, err
	}
	if err := checkResult(r, cv, key); err != nil {
		return nil, err
	}
	return r, nil
}

// checkResult holds a parsed result to the build it claims to be: this build key, the
// spec's toolchain, repository and API version, a ref pinned by its own digest.
func checkResult(r *builder.Result, cv *splicev1.CompilerVersion, key string) error {
	var errs []error
	if r.BuildKey != key {
		errs = append(errs, fmt.Errorf("buildKey %q is not this build's %q", r.BuildKey, key))
	}
	if want := "go" + cv.Spec.GoVersion; r.GoVersion != want {
		errs = append(errs, fmt.Errorf("built with %s, spec.goVersion asks for %s", r.GoVersion, want))
	}
	if r.Ref == "" {
		errs = append(errs, errors.New("nothing was pushed (empty ref)"))
	} else if d, err := artifact.ParseRef(r.Ref); err != nil {
		errs = append(errs, fmt.Errorf("ref: %w", err))
	} else {
		want, err := name.NewRepository(cv.Spec.Plugin.Repository)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("spec.plugin.repository %q: %w", cv.Spec.Plugin.Repository, err))
		case d.Context().Name() != want.Name():
			errs = append(errs, fmt.Errorf("pushed to %s, spec.plugin.repository is %s", d.Context().Name(), want.Name()))
		}
		if d.DigestStr() != r.Digest {
			errs = append(errs, fmt.Errorf("ref %s does not carry digest %s", r.Ref, r.Digest))
		}
	}
	if want := cv.Spec.Plugin.APIVersion; want != "" && !builder.SameAPIVersion(want, r.APIVersion) {
		errs = append(errs, fmt.Errorf("apiVersion %s, spec.plugin.apiVersion is %s", r.APIVersion, want))
	}
	return errors.Join(errs...)
}

// revalidateRecord checks a recorded success again on every read: the record is an annotation
// on a Job, and whoever may patch Jobs in the namespace could rewrite it to name another
// artifact. The result goes through the same parser and checks as the termination message it
// came from (a rewritten record that names another repository, build key or toolchain is
// refused); with a trust policy, the signature check (checkTrust) then binds the digest to
// this CompilerVersion and build key.
func revalidateRecord(rec *buildRecord, cv *splicev1.CompilerVersion, key string) error {
	if !rec.succeeded() {
		return nil
	}
	raw, err := json.Marshal(rec.Result)
	if err != nil {
		return fmt.Errorf("encode the recorded result: %w", err)
	}
	_, err = validateBuildResult(string(raw), cv, key)
	return err
}

// artifactFromResult is status.artifact for a build result.
func artifactFromResult(r *builder.Result) *splicev1.ArtifactStatus {
	t := metav1.NewTime(r.BuiltAt)
	return &splicev1.ArtifactStatus{Ref: r.Ref, Digest: r.Digest, GoVersion: r.GoVersion, APIVersion: r.APIVersion, BuiltAt: &t,
		Vulnerabilities: vulnSummary(r.Vulnerabilities)}
}

// vulnSummary is a scan's findings as status records them; nil when no scan ran.
func vulnSummary(v *artifact.Vulnerabilities) *splicev1.VulnerabilitySummary {
	if v == nil {
		return nil
	}
	ids := slices.Clone(v.IDs)
	if len(ids) > maxVulnIDs {
		ids = ids[:maxVulnIDs]
	}
	return &splicev1.VulnerabilitySummary{Database: clipMessage(v.Database, 512), Found: int32(min(v.Found, math.MaxInt32)), IDs: ids}
}

// maxVulnIDs is status.artifact.vulnerabilities.ids' bound.
const maxVulnIDs = 16

// succeededPod returns the build pod whose build container finished with status 0.
func succeededPod(pods []corev1.Pod) *corev1.Pod {
	for i := range pods {
		if t := buildTerminated(&pods[i]); t != nil && t.ExitCode == 0 {
			return &pods[i]
		}
	}
	return nil
}

// newestFirst returns the pods, most recently created first.
func newestFirst(pods []corev1.Pod) []*corev1.Pod {
	sorted := make([]*corev1.Pod, len(pods))
	for i := range pods {
		sorted[i] = &pods[i]
	}
	sort.SliceStable(sorted, func(i, j int) bool {
		return sorted[j].CreationTimestamp.Before(&sorted[i].CreationTimestamp)
	})
	return sorted
}

// latestFailedPod returns the most recently created pod that has a failed container, or the
// most recent pod when none reports one (a retry may still be waiting to run).
func latestFailedPod(pods []corev1.Pod) *corev1.Pod {
	sorted := newestFirst(pods)
	for _, p := range sorted {
		if _, _, ok := podFailure(p); ok {
			return p
		}
	}
	if len(sorted) > 0 {
		return sorted[0]
	}
	return nil
}

func buildTerminated(pod *corev1.Pod) *corev1.ContainerStateTerminated {
	for _, s := range pod.Status.ContainerStatuses {
		if s.Name == buildContainer && s.State.Terminated != nil {
			return s.State.Terminated
		}
	}
	return nil
}

// podFailure explains a failed build pod from its container statuses: the builder's own
// failure report when it wrote one, what the kubelet kept otherwise.
func podFailure(pod *corev1.Pod) (reason, msg string, ok bool) {
	for _, s := range pod.Status.InitContainerStatuses {
		if t := s.State.Terminated; s.Name == installContainer && t != nil && t.ExitCode != 0 {
			return ReasonBuilderInstallFailed, fmt.Sprintf("the init container could not copy the builder from image %s (exit status %d, %s): %s; check SPLICE_BUILDER_IMAGE and the builder path in that image",
				s.Image, t.ExitCode, t.Reason, strings.TrimSpace(t.Message)), true
		}
	}
	t := buildTerminated(pod)
	if t == nil || t.ExitCode == 0 {
		return "", "", false
	}
	if f, ok := builder.ParseFailure(t.Message); ok {
		return f.Reason, f.Error, true
	}
	return ReasonBuildFailed, fmt.Sprintf("the builder exited with status %d (%s) without a report: %s", t.ExitCode, t.Reason, strings.TrimSpace(t.Message)), true
}

// podWaiting says why a build pod is not running yet (image pulls, missing Secrets), so a
// stuck build shows its cause long before its deadline.
func podWaiting(pod *corev1.Pod) string {
	statuses := append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...)
	for _, s := range statuses {
		if w := s.State.Waiting; w != nil && w.Reason != "" && w.Reason != "PodInitializing" && w.Reason != "ContainerCreating" {
			return fmt.Sprintf("container %s is waiting: %s: %s", s.Name, w.Reason, w.Message)
		}
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Message != "" {
			return "not scheduled: " + c.Message
		}
	}
	return ""
}

// artifactFromInfo is status.artifact for a prebuilt artifact whose config was read.
func artifactFromInfo(ref string, info *artifact.Info) *splicev1.ArtifactStatus {
	var builtAt *metav1.Time
	if !info.Config.BuiltAt.IsZero() {
		t := metav1.NewTime(info.Config.BuiltAt)
		builtAt = &t
	}
	return &splicev1.ArtifactStatus{Ref: ref, Digest: info.Digest, GoVersion: info.Config.GoVersion, APIVersion: info.Config.APIVersion, BuiltAt: builtAt,
		Vulnerabilities: vulnSummary(info.Config.Vulnerabilities)}
}

// checkArtifact refuses a prebuilt artifact that does not match the spec, with a reason and
// a message; it returns "" when the artifact fits. It needs only what status.artifact
// records, so a spec change that keeps the reference is checked without the registry.
func checkArtifact(cv *splicev1.CompilerVersion, art *splicev1.ArtifactStatus) (reason, msg string) {
	if want := "go" + cv.Spec.GoVersion; art.GoVersion != want {
		return ReasonGoVersionMismatch, fmt.Sprintf("artifact %s was built with %s but spec.goVersion is %s: hosts built with %s cannot load it; rebuild the plugin with Go %s or change spec.goVersion",
			art.Ref, art.GoVersion, cv.Spec.GoVersion, want, cv.Spec.GoVersion)
	}
	if want := cv.Spec.Plugin.APIVersion; want != "" && !builder.SameAPIVersion(want, art.APIVersion) {
		return builder.ReasonAPIVersionMismatch, fmt.Sprintf("artifact %s declares plugin API version %s but spec.plugin.apiVersion is %s: make them agree or leave spec.plugin.apiVersion empty",
			art.Ref, art.APIVersion, want)
	}
	if cv.Spec.Plugin.VulnerabilityPolicy == splicev1.VulnerabilityPolicyBlock {
		switch v := art.Vulnerabilities; {
		case v == nil:
			return ReasonVulnerabilitiesNotScanned, fmt.Sprintf("artifact %s records no vulnerability scan and spec.plugin.vulnerabilityPolicy is Block: build it with a vulnerability database (splice-builder --vuln-db), or set the policy to Warn", art.Ref)
		case v.Found > 0:
			return builder.ReasonVulnerable, fmt.Sprintf("artifact %s calls %d known vulnerabilities (%s, in %s) and spec.plugin.vulnerabilityPolicy is Block: rebuild it with the fixed modules or Go release, or set the policy to Warn",
				art.Ref, v.Found, strings.Join(v.IDs, ", "), v.Database)
		}
	}
	return "", ""
}

// ReasonVulnerabilitiesNotScanned: spec.plugin.vulnerabilityPolicy is Block and the prebuilt
// artifact's config records no vulnerability scan.
const ReasonVulnerabilitiesNotScanned = "VulnerabilitiesNotScanned"

// permanentArtifactError reports whether a FetchConfig error will not go away by retrying.
func permanentArtifactError(err error) bool {
	return errors.Is(err, artifact.ErrNotPinned) || errors.Is(err, artifact.ErrInvalidArtifact) ||
		errors.Is(err, artifact.ErrDigestMismatch) || errors.Is(err, artifact.ErrTooLarge)
}

const (
	// maxConditionMessage stays well under metav1.Condition's 32768.
	maxConditionMessage = 8 << 10
	// maxEventNote is events.k8s.io's bound on an Event's note.
	maxEventNote = 1024
	// logTailLines is how much of a failed build's log the condition quotes.
	logTailLines = 20
)

// failureMessage is the Built condition's message for a failed build: what failed, then the
// tail of the build log (or why it is unavailable).
func failureMessage(jobName, reason, msg, logTail string, logErr error) string {
	var b strings.Builder
	fmt.Fprintf(&b, "build Job %s failed (%s): %s", jobName, reason, strings.TrimSpace(msg))
	switch {
	case logErr != nil:
		fmt.Fprintf(&b, "\n(build log unavailable: %v)", logErr)
	case strings.TrimSpace(logTail) != "":
		fmt.Fprintf(&b, "\n--- last %d lines of the build log ---\n%s", logTailLines, strings.TrimRight(logTail, "\n"))
	default:
		// The API server answers an empty log for a pod that never reached a node.
		b.WriteString("\n(the build log is empty)")
	}
	return clipMessage(b.String(), maxConditionMessage)
}

// clipMessage keeps the head and the tail of s within n bytes (a build log's end says most),
// never splitting a character.
func clipMessage(s string, n int) string {
	return control.TruncateMiddle(s, n, (n-len(control.ElisionMark))/2)
}
