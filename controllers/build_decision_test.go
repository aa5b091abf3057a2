package controllers

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/builder"
)

// resultJSON is a build result for gitCV("greeter") and key, as the builder writes it.
func resultJSON(key string, edit func(*builder.Result)) string {
	r := builder.Result{
		Ref: "registry.example.com/team/greeter-plugin@" + digestA, Digest: digestA, GoVersion: "go1.26.8", APIVersion: "1.3.0",
		PluginPath: "example.com/team/greeter/plugins/greeter/splice-0123456789abcdef", SourceHash: strings.Repeat("0", 64),
		BuiltAt: time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC), BuildKey: key,
	}
	if edit != nil {
		edit(&r)
	}
	b, err := json.Marshal(r)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestValidateBuildResult(t *testing.T) {
	key := strings.Repeat("cd", 32)
	tests := []struct {
		name    string
		msg     string
		cv      func(*splicev1.CompilerVersion)
		wantErr string
	}{
		{"valid", resultJSON(key, nil), nil, ""},
		{"empty message", "", nil, "no termination message"},
		{"the kubelet's log fallback", "go: downloading example.com/x v1.0.0\n", nil, "decode build result"},
		{"another build's result", resultJSON(strings.Repeat("ef", 32), nil), nil, "buildKey"},
		{"another toolchain", resultJSON(key, func(r *builder.Result) { r.GoVersion = "go1.26.7" }), nil, "spec.goVersion asks for go1.26.8"},
		{"pushed elsewhere", resultJSON(key, func(r *builder.Result) { r.Ref = "registry.example.com/team/other@" + digestA }), nil, "spec.plugin.repository"},
		{"ref and digest disagree", resultJSON(key, func(r *builder.Result) {
			r.Ref = "registry.example.com/team/greeter-plugin@" + digestB
		}), nil, "not pinned by the digest"},
		{"nothing pushed", resultJSON(key, func(r *builder.Result) { r.Ref, r.Digest = "", "" }), nil, "nothing was pushed"},
		{"API version other than the spec's", resultJSON(key, nil), func(cv *splicev1.CompilerVersion) { cv.Spec.Plugin.APIVersion = "2.0.0" }, "spec.plugin.apiVersion"},
		{"API version equal up to a v", resultJSON(key, nil), func(cv *splicev1.CompilerVersion) { cv.Spec.Plugin.APIVersion = "v1.3.0" }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cv := gitCV("greeter")
			if tt.cv != nil {
				tt.cv(cv)
			}
			r, err := validateBuildResult(tt.msg, cv, key)
			if tt.wantErr == "" {
				if err != nil || r == nil {
					t.Fatalf("validateBuildResult: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v; want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestPodFailure(t *testing.T) {
	terminated := func(code int32, reason, msg string) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: buildContainer, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason, Message: msg}}}
	}
	tests := []struct {
		name       string
		status     corev1.PodStatus
		wantOK     bool
		wantReason string
		wantText   string
	}{
		{"still running", corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: buildContainer, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}}, false, "", ""},
		{"succeeded", corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{terminated(0, "Completed", "{}")}}, false, "", ""},
		{"the builder's report", corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{
			terminated(1, "Error", `{"reason":"CompileFailed","error":"./main.go:3:2: undefined: x"}`)}}, true, builder.ReasonCompileFailed, "undefined: x"},
		{"killed without a report", corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{terminated(137, "OOMKilled", "")}}, true, ReasonBuildFailed, "OOMKilled"},
		{"log tail instead of a report", corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{terminated(2, "Error", "panic: boom")}}, true, ReasonBuildFailed, "panic: boom"},
		{"the builder never arrived", corev1.PodStatus{InitContainerStatuses: []corev1.ContainerStatus{{Name: installContainer, Image: "example.com/splice:1",
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 127, Reason: "Error", Message: "exec: /builder: not found"}}}}},
			true, ReasonBuilderInstallFailed, "SPLICE_BUILDER_IMAGE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reason, msg, ok := podFailure(&corev1.Pod{Status: tt.status})
			if ok != tt.wantOK || reason != tt.wantReason || !strings.Contains(msg, tt.wantText) {
				t.Fatalf("podFailure = %q, %q, %v; want %q containing %q, %v", reason, msg, ok, tt.wantReason, tt.wantText, tt.wantOK)
			}
		})
	}
}

func TestPodWaiting(t *testing.T) {
	pod := &corev1.Pod{Status: corev1.PodStatus{InitContainerStatuses: []corev1.ContainerStatus{{Name: installContainer,
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "Back-off pulling image"}}}}}}
	if got := podWaiting(pod); !strings.Contains(got, "ImagePullBackOff") || !strings.Contains(got, installContainer) {
		t.Fatalf("podWaiting = %q", got)
	}
	if got := podWaiting(&corev1.Pod{}); got != "" {
		t.Fatalf("podWaiting of a fresh pod = %q", got)
	}
}

func TestApplyBuildDecision(t *testing.T) {
	now := metav1.NewTime(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC))
	earlier := metav1.NewTime(now.Add(-time.Hour))
	art := &splicev1.ArtifactStatus{Ref: "r/p@" + digestA, Digest: digestA}
	// What the status reconciler owns must come through untouched.
	base := func(phase splicev1.Phase) splicev1.CompilerVersionStatus {
		return splicev1.CompilerVersionStatus{
			// An artifact of an earlier spec: a decision replaces it, never keeps it.
			Artifact:           &splicev1.ArtifactStatus{Ref: "r/p@" + digestB, Digest: digestB},
			ObservedGeneration: 3, Phase: phase, Targeted: 4, Updated: 1, Progress: "1/4",
			RecentFailures: []splicev1.PodFailure{{Pod: "a"}},
			Conditions: []metav1.Condition{
				{Type: splicev1.ConditionReady, Status: metav1.ConditionFalse, Reason: splicev1.ReasonPodsNotUpdated, LastTransitionTime: earlier},
				{Type: splicev1.ConditionBuilt, Status: metav1.ConditionTrue, Reason: ReasonBuildSucceeded, LastTransitionTime: earlier},
			},
		}
	}
	tests := []struct {
		name    string
		d       *buildDecision
		wantLTT metav1.Time
	}{
		{"building", decided(nil, metav1.ConditionFalse, ReasonBuilding, "m"), now},
		{"success", decided(art, metav1.ConditionTrue, ReasonBuildSucceeded, "m"), earlier},
		{"failure", decided(nil, metav1.ConditionFalse, builder.ReasonCompileFailed, "m"), now},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := base(splicev1.PhaseProgressing)
			got := applyBuildDecision(in, tt.d, 5, now)
			if got.Phase != splicev1.PhaseProgressing {
				t.Errorf("phase %s: the phase is the status reconciler's (buildPhase), not the build decision's", got.Phase)
			}
			if !equality.Semantic.DeepEqual(got.Artifact, tt.d.artifact) {
				t.Errorf("artifact %+v, want %+v", got.Artifact, tt.d.artifact)
			}
			c := meta.FindStatusCondition(got.Conditions, splicev1.ConditionBuilt)
			if c.Status != tt.d.built.Status || c.Reason != tt.d.built.Reason || c.ObservedGeneration != 5 || !c.LastTransitionTime.Equal(&tt.wantLTT) {
				t.Errorf("Built %+v", c)
			}
			ready := meta.FindStatusCondition(got.Conditions, splicev1.ConditionReady)
			if got.ObservedGeneration != 3 || got.Targeted != 4 || got.Progress != "1/4" || len(got.RecentFailures) != 1 ||
				ready.Reason != splicev1.ReasonPodsNotUpdated || !ready.LastTransitionTime.Equal(&earlier) {
				t.Errorf("fields of the status reconciler changed: %+v", got)
			}
			if in.Phase != splicev1.PhaseProgressing || meta.FindStatusCondition(in.Conditions, splicev1.ConditionBuilt).Reason != ReasonBuildSucceeded {
				t.Errorf("the input was modified")
			}
		})
	}
}

// TestBuildPhase: the phase a build's state shows, derived in one place from the Built condition
// the build reconciler wrote (what applyBuildDecision used to decide itself).
func TestBuildPhase(t *testing.T) {
	art := &splicev1.ArtifactStatus{Ref: "r/p@" + digestA, Digest: digestA}
	cvWith := func(phase splicev1.Phase, d *buildDecision, builtGen int64) *splicev1.CompilerVersion {
		cv := &splicev1.CompilerVersion{ObjectMeta: metav1.ObjectMeta{Generation: 5}, Status: splicev1.CompilerVersionStatus{Phase: phase}}
		if d != nil {
			cv.Status = applyBuildDecision(cv.Status, d, builtGen, metav1.Now())
		}
		return cv
	}
	tests := []struct {
		name      string
		cv        *splicev1.CompilerVersion
		wantPhase splicev1.Phase
	}{
		{"building replaces a rollout phase", cvWith(splicev1.PhaseCompleted, decided(nil, metav1.ConditionFalse, ReasonBuilding, "m"), 5), splicev1.PhaseBuilding},
		{"success ends Building", cvWith(splicev1.PhaseBuilding, decided(art, metav1.ConditionTrue, ReasonBuildSucceeded, "m"), 5), splicev1.PhasePending},
		{"success ends BuildFailed", cvWith(splicev1.PhaseBuildFailed, decided(art, metav1.ConditionTrue, ReasonBuildSucceeded, "m"), 5), splicev1.PhasePending},
		{"success leaves a rollout phase alone", cvWith(splicev1.PhaseProgressing, decided(art, metav1.ConditionTrue, ReasonBuildSucceeded, "m"), 5), splicev1.PhaseProgressing},
		{"failure", cvWith(splicev1.PhaseBuilding, decided(nil, metav1.ConditionFalse, builder.ReasonCompileFailed, "m"), 5), splicev1.PhaseBuildFailed},
		{"a refused artifact", cvWith(splicev1.PhaseCompleted, decided(nil, metav1.ConditionFalse, ReasonGoVersionMismatch, "m"), 5), splicev1.PhaseBuildFailed},
		{"an unreachable registry ends Building", cvWith(splicev1.PhaseBuilding, decided(nil, metav1.ConditionFalse, ReasonArtifactUnavailable, "m"), 5), splicev1.PhasePending},
		{"an unreachable registry leaves a rollout phase alone", cvWith(splicev1.PhaseCompleted, decided(nil, metav1.ConditionFalse, ReasonArtifactUnavailable, "m"), 5), splicev1.PhaseCompleted},
		{"Built of an earlier generation says nothing yet", cvWith(splicev1.PhaseCompleted, decided(nil, metav1.ConditionFalse, builder.ReasonCompileFailed, "m"), 4), splicev1.PhaseCompleted},
		{"no Built condition", cvWith(splicev1.PhaseBuilding, nil, 0), splicev1.PhaseBuilding},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := buildPhase(tt.cv); got != tt.wantPhase {
				t.Errorf("phase %s, want %s", got, tt.wantPhase)
			}
		})
	}
}

func TestUpToDate(t *testing.T) {
	built := func(status metav1.ConditionStatus, gen int64) []metav1.Condition {
		return []metav1.Condition{{Type: splicev1.ConditionBuilt, Status: status, ObservedGeneration: gen, Reason: "X"}}
	}
	art := &splicev1.ArtifactStatus{Ref: "r.example.com/p@" + digestA, Digest: digestA}
	tests := []struct {
		name string
		edit func(cv *splicev1.CompilerVersion)
		want bool
	}{
		{"built for this generation", func(cv *splicev1.CompilerVersion) {}, true},
		{"built for an older generation", func(cv *splicev1.CompilerVersion) { cv.Generation = 2 }, false},
		{"not built", func(cv *splicev1.CompilerVersion) { cv.Status.Conditions = built(metav1.ConditionFalse, 1) }, false},
		{"no artifact", func(cv *splicev1.CompilerVersion) { cv.Status.Artifact = nil }, false},
		{"artifact source naming it", func(cv *splicev1.CompilerVersion) {
			cv.Spec.Plugin.Source = splicev1.PluginSource{Artifact: art.Ref}
		}, true},
		{"artifact source naming another", func(cv *splicev1.CompilerVersion) {
			cv.Spec.Plugin.Source = splicev1.PluginSource{Artifact: "r.example.com/p@" + digestB}
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cv := gitCV("greeter")
			cv.Status.Artifact = art.DeepCopy()
			cv.Status.Conditions = built(metav1.ConditionTrue, 1)
			tt.edit(cv)
			if got := upToDate(cv); got != tt.want {
				t.Fatalf("upToDate = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCheckArtifact(t *testing.T) {
	art := &splicev1.ArtifactStatus{Ref: "r.example.com/p@" + digestA, Digest: digestA, GoVersion: "go1.26.8", APIVersion: "1.0.0"}
	tests := []struct {
		name       string
		edit       func(*splicev1.CompilerVersion)
		wantReason string
	}{
		{"fits", func(*splicev1.CompilerVersion) {}, ""},
		{"another Go release", func(cv *splicev1.CompilerVersion) { cv.Spec.GoVersion = "1.26.7" }, ReasonGoVersionMismatch},
		{"another API version", func(cv *splicev1.CompilerVersion) { cv.Spec.Plugin.APIVersion = "1.1.0" }, builder.ReasonAPIVersionMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cv := gitCV("greeter")
			tt.edit(cv)
			reason, msg := checkArtifact(cv, art)
			if reason != tt.wantReason || (reason != "" && !strings.Contains(msg, "spec.")) {
				t.Fatalf("checkArtifact = %q, %q; want %q with a message naming the spec field", reason, msg, tt.wantReason)
			}
		})
	}
}

func TestJobOutcomeAndDuration(t *testing.T) {
	start := metav1.NewTime(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC))
	end := metav1.NewTime(start.Add(95 * time.Second))
	tests := []struct {
		name                string
		status              batchv1.JobStatus
		finished, succeeded bool
		wantSeconds         float64
	}{
		{"running", batchv1.JobStatus{StartTime: &start}, false, false, 0},
		{"complete", batchv1.JobStatus{StartTime: &start, CompletionTime: &end, Conditions: []batchv1.JobCondition{
			{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue}, {Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: end}}}, true, true, 95},
		{"failed", batchv1.JobStatus{StartTime: &start, Conditions: []batchv1.JobCondition{
			{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue}, {Type: batchv1.JobFailed, Status: corev1.ConditionTrue, LastTransitionTime: end}}}, true, false, 95},
		{"a false Failed condition is not failure", batchv1.JobStatus{Conditions: []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionFalse}}}, false, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			job := &batchv1.Job{Status: tt.status}
			finished, succeeded, cond := jobOutcome(job)
			if finished != tt.finished || succeeded != tt.succeeded {
				t.Fatalf("jobOutcome = %v, %v", finished, succeeded)
			}
			if got := jobDurationSeconds(job, cond); got != tt.wantSeconds {
				t.Fatalf("duration %v, want %v", got, tt.wantSeconds)
			}
		})
	}
}

func TestFailureMessage(t *testing.T) {
	got := failureMessage("greeter-build-1", builder.ReasonCompileFailed, "undefined: x", "line 1\nline 2\n", nil)
	if !strings.Contains(got, "greeter-build-1") || !strings.Contains(got, "undefined: x") || !strings.HasSuffix(got, "line 1\nline 2") {
		t.Errorf("with a log: %q", got)
	}
	got = failureMessage("j", ReasonBuildJobFailed, "DeadlineExceeded", "", errors.New("pod j-x does not have a host assigned"))
	if !strings.Contains(got, "build log unavailable: pod j-x does not have a host assigned") {
		t.Errorf("without a log: %q", got)
	}
	if got := failureMessage("j", ReasonBuildFailed, "x", "", nil); !strings.HasSuffix(got, "(the build log is empty)") {
		t.Errorf("with an empty log: %q", got)
	}
	long := failureMessage("j", ReasonBuildFailed, strings.Repeat("x", 3*maxConditionMessage), "tail", nil)
	if len(long) > maxConditionMessage || !strings.HasSuffix(long, "tail") {
		t.Errorf("long message is %d bytes, ends %q", len(long), long[len(long)-10:])
	}
}

// The build record is an annotation on a Job, which whoever may edit Jobs in the namespace can
// rewrite: only exactly one JSON object is a record.
func TestDecodeRecordRefusesTrailingData(t *testing.T) {
	const valid = `{"reason":"CompileFailed","message":"m"}`
	if _, err := decodeRecord(valid); err != nil {
		t.Fatalf("%s: %v", valid, err)
	}
	if _, err := decodeRecord(valid + "\n"); err != nil {
		t.Errorf("trailing whitespace: %v", err)
	}
	for _, bad := range []string{valid + "}", valid + "]", valid + valid, valid + " x", valid + "{}", valid + "\n]"} {
		if _, err := decodeRecord(bad); err == nil {
			t.Errorf("%q: decoded, want a refusal of the data after the object", bad)
		}
	}
}
