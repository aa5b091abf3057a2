package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from render's output")

// Fixtures shared by the render and command tests.
var (
	testNow      = time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	stableDigest = "sha256:1a2b3c4d5e6f" + strings.Repeat("0", 52)
	canaryDigest = "sha256:9f8e7d6c5b4a" + strings.Repeat("1", 52)
	otherDigest  = "sha256:77aa88bb99cc" + strings.Repeat("2", 52)
	repo         = "registry.example.com/team/greeter-plugin"
	stableRef    = repo + "@" + stableDigest
	canaryRef    = repo + "@" + canaryDigest
	stableArt    = &splicev1.ArtifactStatus{Ref: stableRef, Digest: stableDigest, GoVersion: "go1.26.8", APIVersion: "1.3.0"}
	canaryArt    = &splicev1.ArtifactStatus{Ref: canaryRef, Digest: canaryDigest, GoVersion: "go1.26.8", APIVersion: "1.4.0"}
)

func at(d time.Duration) *metav1.Time { t := metav1.NewTime(testNow.Add(d)); return &t }

func condition(t string, status bool, reason, msg string) metav1.Condition {
	s := metav1.ConditionFalse
	if status {
		s = metav1.ConditionTrue
	}
	return metav1.Condition{Type: t, Status: s, Reason: reason, Message: msg, LastTransitionTime: metav1.NewTime(testNow)}
}

// canaryCV is a canary of three steps, paused at the second waiting for promotion.
func canaryCV(ns string) *splicev1.CompilerVersion {
	return &splicev1.CompilerVersion{
		ObjectMeta: metav1.ObjectMeta{Name: "greeter", Namespace: ns, Generation: 3},
		Spec: splicev1.CompilerVersionSpec{
			GoVersion: "1.26.8",
			Plugin:    splicev1.PluginSpec{Source: splicev1.PluginSource{Artifact: canaryRef}},
			Selector:  metav1.LabelSelector{MatchLabels: map[string]string{"app": "greeter"}},
			Strategy: splicev1.RolloutStrategy{Type: splicev1.StrategyCanary, Canary: &splicev1.CanaryStrategy{
				OnFailure: splicev1.FailureRollback,
				Steps: []splicev1.CanaryStep{
					{SetWeight: 25, TrafficPercent: ptr.To[int32](5), Pause: &splicev1.CanaryPause{Duration: &metav1.Duration{Duration: 2 * time.Minute}}},
					{SetWeight: 50, TrafficPercent: ptr.To[int32](10), Pause: &splicev1.CanaryPause{},
						Analysis: &splicev1.CanaryAnalysis{MaxErrorRatePercent: ptr.To[int32](1), MaxSwapLatency: &metav1.Duration{Duration: 500 * time.Millisecond}}},
					{SetWeight: 100},
				},
			}},
		},
		Status: splicev1.CompilerVersionStatus{
			ObservedGeneration: 3,
			Phase:              splicev1.PhasePaused,
			Artifact:           canaryArt,
			StableArtifact:     stableArt,
			RolloutDigest:      canaryDigest,
			CurrentStepIndex:   ptr.To[int32](1),
			Targeted:           4, Updated: 2, Ready: 4, Progress: "2/4",
			Conditions: []metav1.Condition{
				condition(splicev1.ConditionReady, false, splicev1.ReasonPodsNotUpdated, "2 of 4 targeted pods run "+canaryDigest+", 4 ready"),
				condition(splicev1.ConditionBuilt, true, "Resolved", "prebuilt artifact resolved"),
				condition(splicev1.ConditionProgressing, true, "AwaitingPromotion", "Canary step 2/3 (setWeight 50%): 2 canary pods run "+canaryDigest+"; waiting for promotion (annotate splice.dev/promote)"),
				condition(splicev1.ConditionPaused, true, "AwaitingPromotion", "Canary step 2/3 (setWeight 50%): 2 canary pods run "+canaryDigest+"; waiting for promotion (annotate splice.dev/promote)"),
				condition(splicev1.ConditionDegraded, false, "Healthy", "no targeted pod failed or is incompatible"),
			},
		},
	}
}

// report encodes an agent report; figures are the headline ones the tree shows.
func report(t testing.TB, digest string, state splicev1.SwapState, running string, latency float64, gc, globalsKiB uint64) string {
	t.Helper()
	r := &splicev1.PodReport{Artifact: repo + "@" + digest, Digest: digest, State: state, Running: running,
		SwapLatencySeconds: latency, ObservedAt: metav1.NewTime(testNow)}
	if latency > 0 {
		r.Before = &splicev1.RuntimeSnapshot{GCCycles: 40, ScanGlobalsBytes: 2 << 20}
		r.After = &splicev1.RuntimeSnapshot{GCCycles: 40 + gc, ScanGlobalsBytes: 2<<20 + globalsKiB<<10}
	}
	if state == splicev1.SwapFailed {
		r.Reason, r.Error = "PullFailed", "pull "+r.Artifact+": unauthorized: authentication required"
	}
	s, err := r.Encode()
	if err != nil {
		t.Fatalf("encode report: %v", err)
	}
	return s
}

// podOpts describes a test pod: its rollout annotations, its report and its plugin-ready
// condition (nil: none yet).
type podOpts struct {
	labels      map[string]string
	desired     string
	stable      string
	traffic     string
	report      string
	ready       *bool
	phase       corev1.PodPhase
	terminating bool
}

func testPod(ns, name string, o podOpts) corev1.Pod {
	p := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: o.labels, Annotations: map[string]string{}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example.com/team/greeter:1"}}},
		Status:     corev1.PodStatus{Phase: o.phase},
	}
	if p.Labels == nil {
		p.Labels = map[string]string{"app": "greeter"}
	}
	if p.Status.Phase == "" {
		p.Status.Phase = corev1.PodRunning
	}
	set := func(k, v string) {
		if v != "" {
			p.Annotations[k] = v
		}
	}
	set(splicev1.AnnotationDesiredArtifact, o.desired)
	set(splicev1.AnnotationStableArtifact, o.stable)
	set(splicev1.AnnotationTrafficPercent, o.traffic)
	set(splicev1.AnnotationReport, o.report)
	if o.ready != nil {
		s := corev1.ConditionFalse
		if *o.ready {
			s = corev1.ConditionTrue
		}
		p.Status.Conditions = []corev1.PodCondition{{Type: splicev1.PodConditionPluginReady, Status: s}}
	}
	if o.terminating {
		p.DeletionTimestamp = at(-time.Second)
	}
	return p
}

// splitReport is report for a canary member at a traffic share, as the agent writes it: the
// host keeps the stable artifact as Running and routes the share to the canary.
func splitReport(t testing.TB, percent int32, latency float64, gc, globalsKiB uint64) string {
	t.Helper()
	r, err := splicev1.DecodeReport(report(t, canaryDigest, splicev1.SwapReady, stableDigest, latency, gc, globalsKiB))
	if err != nil {
		t.Fatal(err)
	}
	r.TrafficPercent = &percent
	s, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// canaryPods are four pods at the second canary step: two members on the canary with 10% of
// their requests, two on the stable artifact.
func canaryPods(t testing.TB, ns string) []corev1.Pod {
	return []corev1.Pod{
		testPod(ns, "greeter-7d9f-4xk2p", podOpts{desired: canaryRef, stable: stableRef, traffic: "10",
			report: splitReport(t, 10, 0.182, 1, 96), ready: ptr.To(true)}),
		testPod(ns, "greeter-7d9f-9zq7m", podOpts{desired: stableRef,
			report: report(t, stableDigest, splicev1.SwapReady, stableDigest, 0.151, 0, 88), ready: ptr.To(true)}),
		testPod(ns, "greeter-7d9f-b2v8c", podOpts{desired: canaryRef, stable: stableRef, traffic: "10",
			report: splitReport(t, 10, 1.2468, 2, 1536), ready: ptr.To(true)}),
		testPod(ns, "greeter-7d9f-k8s3d", podOpts{desired: stableRef,
			report: report(t, stableDigest, splicev1.SwapReady, stableDigest, 0.0009, 0, 0), ready: ptr.To(true)}),
	}
}

func TestRender(t *testing.T) {
	tests := []struct {
		name string
		cv   func() *splicev1.CompilerVersion
		pods func() []corev1.Pod
	}{
		{
			name: "canary-awaiting-promotion",
			cv: func() *splicev1.CompilerVersion {
				cv := canaryCV("shop")
				cv.Status.PauseStartTime = at(-90 * time.Second)
				return cv
			},
			pods: func() []corev1.Pod {
				return append(canaryPods(t, "shop"),
					// Not targeted: another app, another namespace, a finished pod.
					testPod("shop", "billing-0", podOpts{labels: map[string]string{"app": "billing"}}),
					testPod("other", "greeter-elsewhere", podOpts{}),
					testPod("shop", "greeter-job-done", podOpts{phase: corev1.PodSucceeded}),
				)
			},
		},
		{
			name: "canary-timed-pause-with-controls",
			cv: func() *splicev1.CompilerVersion {
				cv := canaryCV("shop")
				cv.Status.CurrentStepIndex = ptr.To[int32](0)
				cv.Status.PauseStartTime = at(-30 * time.Second)
				cv.Status.Targeted, cv.Status.Updated = 4, 1
				cv.Annotations = map[string]string{
					splicev1.AnnotationPaused:  "true",
					splicev1.AnnotationPromote: "2026-07-01T11:59:59.5Z",
				}
				cv.Status.ObservedControls.Promote = "2026-07-01T11:00:00Z"
				cv.Status.Conditions[3] = condition(splicev1.ConditionPaused, true, "PausedByUser", "paused by annotation splice.dev/paused")
				return cv
			},
			pods: func() []corev1.Pod { return canaryPods(t, "shop")[:2] },
		},
		{
			name: "rollingpatch-progressing-with-failures",
			cv: func() *splicev1.CompilerVersion {
				cv := canaryCV("shop")
				cv.Spec.Strategy = splicev1.RolloutStrategy{Type: splicev1.StrategyRollingPatch,
					RollingPatch: &splicev1.RollingPatchStrategy{MaxUnavailable: ptr.To(intstr.FromInt32(2))}}
				cv.Status.Phase = splicev1.PhaseDegraded
				cv.Status.CurrentStepIndex = nil
				cv.Status.Targeted, cv.Status.Updated, cv.Status.Ready, cv.Status.Failed = 5, 1, 3, 1
				cv.Status.Conditions[2] = condition(splicev1.ConditionProgressing, true, "Swapping", "RollingPatch: 1 of 5 pods run "+canaryDigest)
				cv.Status.Conditions[3] = condition(splicev1.ConditionPaused, false, "NoRollout", "not paused")
				cv.Status.Conditions[4] = condition(splicev1.ConditionDegraded, true, "SwapFailed",
					"the swap of "+canaryDigest+" failed on greeter-3; it keeps what it runs")
				for i := range 4 {
					cv.Status.RecentFailures = append(cv.Status.RecentFailures, splicev1.PodFailure{
						Pod: "greeter-" + string(rune('3'+i)), Digest: canaryDigest, State: splicev1.SwapFailed, Reason: "PullFailed",
						Message: "pull " + canaryRef + ": unauthorized:\n  authentication required", Time: at(-time.Duration(i+1) * time.Minute)})
				}
				return cv
			},
			pods: func() []corev1.Pod {
				return []corev1.Pod{
					testPod("shop", "greeter-1", podOpts{desired: canaryRef,
						report: report(t, canaryDigest, splicev1.SwapReady, canaryDigest, 0.25, 0, 100), ready: ptr.To(true)}),
					testPod("shop", "greeter-2", podOpts{desired: canaryRef,
						report: report(t, canaryDigest, splicev1.SwapSwapping, stableDigest, 0, 0, 0), ready: ptr.To(false)}),
					testPod("shop", "greeter-3", podOpts{desired: canaryRef,
						report: report(t, canaryDigest, splicev1.SwapFailed, stableDigest, 0, 0, 0), ready: ptr.To(false)}),
					// The agent has not picked up the new desired artifact yet.
					testPod("shop", "greeter-4", podOpts{desired: canaryRef,
						report: report(t, stableDigest, splicev1.SwapReady, stableDigest, 0.12, 0, 90), ready: ptr.To(true)}),
					testPod("shop", "greeter-5", podOpts{desired: stableRef, report: `{"state":"Exploded"}`, ready: ptr.To(true)}),
					testPod("shop", "greeter-6", podOpts{desired: repo + "@" + otherDigest, terminating: true}),
					testPod("shop", "greeter-7", podOpts{phase: corev1.PodPending}),
					testPod("shop", "greeter-8", podOpts{desired: repo + ":v2", ready: ptr.To(false)}),
				}
			},
		},
		{
			name: "strict-aborted-no-stable",
			cv: func() *splicev1.CompilerVersion {
				cv := canaryCV("shop")
				cv.Spec.Strategy = splicev1.RolloutStrategy{Type: splicev1.StrategyStrict,
					Strict: &splicev1.StrictStrategy{RecreateIncompatible: true}}
				cv.Annotations = map[string]string{splicev1.AnnotationAbort: "true", splicev1.AnnotationRetry: "n2"}
				cv.Status.ObservedControls.Retry = "n1"
				cv.Status.StableArtifact = nil
				cv.Status.CurrentStepIndex = nil
				cv.Status.Phase = splicev1.PhaseDegraded
				cv.Status.Targeted, cv.Status.Updated, cv.Status.Ready, cv.Status.Incompatible = 1, 0, 0, 1
				msg := "the rollout was aborted (annotation splice.dev/abort); there is no stable artifact to return to, so pods keep what they run"
				cv.Status.Conditions[2] = condition(splicev1.ConditionProgressing, false, "Aborted", msg)
				cv.Status.Conditions[3] = condition(splicev1.ConditionPaused, false, "NoRollout", "not paused")
				cv.Status.Conditions[4] = condition(splicev1.ConditionDegraded, true, "Aborted", msg)
				return cv
			},
			pods: func() []corev1.Pod {
				r := &splicev1.PodReport{Artifact: canaryRef, Digest: canaryDigest, State: splicev1.SwapIncompatible,
					Reason: "ToolchainMismatch", Error: "host built with go1.26.7", ObservedAt: metav1.NewTime(testNow)}
				s, _ := r.Encode()
				return []corev1.Pod{testPod("shop", "greeter-0", podOpts{desired: canaryRef, report: s, ready: ptr.To(false)})}
			},
		},
		{
			name: "building-no-pods-stale-status",
			cv: func() *splicev1.CompilerVersion {
				cv := canaryCV("shop")
				cv.Generation = 4
				cv.Status = splicev1.CompilerVersionStatus{ObservedGeneration: 3, Phase: splicev1.PhaseBuilding,
					Conditions: []metav1.Condition{
						condition(splicev1.ConditionBuilt, false, "Building", "build Job greeter-5f7c9 is running"),
						condition(splicev1.ConditionReady, false, splicev1.ReasonNoTargetPods, "spec.selector matches no running pod in this namespace"),
					}}
				return cv
			},
			pods: func() []corev1.Pod { return nil },
		},
		{
			name: "completed",
			cv: func() *splicev1.CompilerVersion {
				cv := canaryCV("shop")
				cv.Status.Phase = splicev1.PhaseCompleted
				cv.Status.StableArtifact = canaryArt
				cv.Status.CurrentStepIndex = ptr.To[int32](3)
				cv.Status.Targeted, cv.Status.Updated, cv.Status.Ready = 1, 1, 1
				cv.Status.Conditions = []metav1.Condition{
					condition(splicev1.ConditionReady, true, splicev1.ReasonAllPodsReady, "all 1 targeted pods run "+canaryDigest),
					condition(splicev1.ConditionProgressing, false, "RolloutComplete", "all 1 targeted pods run "+canaryDigest+"; it is now the stable artifact"),
				}
				return cv
			},
			pods: func() []corev1.Pod {
				return []corev1.Pod{testPod("shop", "greeter-0", podOpts{desired: canaryRef,
					report: report(t, canaryDigest, splicev1.SwapReady, canaryDigest, 0.2, 1, 64), ready: ptr.To(true)})}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cv, pods := tt.cv(), tt.pods()
			before := cv.DeepCopy()
			got := render(cv, pods, testNow)
			if again := render(cv, pods, testNow); again != got {
				t.Fatalf("render is not deterministic:\n%s\n---\n%s", got, again)
			}
			if !equalCV(before, cv) {
				t.Fatalf("render modified its input")
			}
			golden := filepath.Join("testdata", tt.name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("read %s (run `go test ./cmd/kubectl-splice -run TestRender -update` to create it): %v", golden, err)
			}
			if got != string(want) {
				t.Errorf("render differs from %s (rerun with -update if the change is intended):\n--- got\n%s\n--- want\n%s", golden, got, want)
			}
		})
	}
}

func equalCV(a, b *splicev1.CompilerVersion) bool {
	return render(a, nil, testNow) == render(b, nil, testNow) && a.Generation == b.Generation
}

func TestFormatting(t *testing.T) {
	tests := []struct {
		name, got, want string
	}{
		{"short digest", shortDigest(canaryDigest), "9f8e7d6c5b4a"},
		{"short digest, not a digest", shortDigest("abc"), "abc"},
		{"latency µs", latency(0.0009), "900µs"},
		{"latency ms", latency(0.1824), "182ms"},
		{"latency s", latency(1.2468), "1.25s"},
		{"bytes zero", signedBytes(0), "0B"},
		{"bytes small", signedBytes(512), "+512B"},
		{"bytes KiB", signedBytes(96 << 10), "+96KiB"},
		{"bytes MiB, one decimal", signedBytes(1536 << 10), "+1.5MiB"},
		{"bytes negative", signedBytes(-3 << 20), "-3.0MiB"},
		{"one line", oneLine("a\n  b\tc", 10), "a b c"},
		{"one line, bounded", oneLine("abcdefghijkl", 5), "abcd…"},
		{"ago", ago(testNow.Add(-90*time.Second), testNow), "90s ago"},
		{"ago, future", ago(testNow.Add(time.Second), testNow), "just now"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}

func TestGetName(t *testing.T) {
	tests := []struct {
		args    []string
		want    string
		wantErr string
	}{
		{args: []string{"greeter"}, want: "greeter"},
		{args: []string{"cv", "greeter"}, want: "greeter"},
		{args: []string{"compilerversions.splice.dev", "greeter"}, want: "greeter"},
		{args: []string{"cv/greeter"}, want: "greeter"},
		{args: []string{"CompilerVersion/greeter"}, want: "greeter"},
		{args: nil, wantErr: "missing the CompilerVersion's name"},
		{args: []string{"pods", "greeter"}, wantErr: `unknown resource type "pods"`},
		{args: []string{"pod/greeter"}, wantErr: `unknown resource type "pod"`},
		{args: []string{"cv/"}, wantErr: "missing the CompilerVersion's name after cv/"},
		{args: []string{"cv", "a", "b"}, wantErr: "too many arguments"},
	}
	for _, tt := range tests {
		got, err := getName(tt.args)
		switch {
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("getName(%q): error %v, want one containing %q", tt.args, err, tt.wantErr)
		case tt.wantErr == "" && (err != nil || got != tt.want):
			t.Errorf("getName(%q) = %q, %v; want %q", tt.args, got, err, tt.want)
		}
	}
}

// TestDesiredCells: the DESIRED and TRAFFIC cells show the desired state as the agent reads it
// (splicev1.ParseDesiredState), and what could be read of it when the agent would refuse it.
func TestDesiredCells(t *testing.T) {
	cv := canaryCV("shop")
	tests := []struct {
		name             string
		ann              map[string]string
		desired, traffic string
	}{
		{name: "unmanaged", ann: nil, desired: "-", traffic: "-"},
		{name: "stable, all calls", ann: map[string]string{splicev1.AnnotationDesiredArtifact: stableRef}, desired: "1a2b3c4d5e6f (stable)", traffic: "100%"},
		{name: "canary share", ann: map[string]string{splicev1.AnnotationDesiredArtifact: canaryRef, splicev1.AnnotationStableArtifact: stableRef,
			splicev1.AnnotationTrafficPercent: "10"}, desired: "9f8e7d6c5b4a (canary)", traffic: "10%"},
		{name: "spaces trimmed", ann: map[string]string{splicev1.AnnotationDesiredArtifact: " " + canaryRef + " ", splicev1.AnnotationStableArtifact: stableRef,
			splicev1.AnnotationTrafficPercent: " 10 "}, desired: "9f8e7d6c5b4a (canary)", traffic: "10%"},
		{name: "another artifact", ann: map[string]string{splicev1.AnnotationDesiredArtifact: repo + "@" + otherDigest}, desired: "77aa88bb99cc (other)", traffic: "100%"},
		{name: "all calls, said", ann: map[string]string{splicev1.AnnotationDesiredArtifact: stableRef, splicev1.AnnotationTrafficPercent: "100"}, desired: "1a2b3c4d5e6f (stable)", traffic: "100%"},
		{name: "a tag, which the agent refuses", ann: map[string]string{splicev1.AnnotationDesiredArtifact: repo + ":v2"}, desired: "greeter-plugin:v2 (no digest)", traffic: "100%"},
		{name: "a share the agent refuses", ann: map[string]string{splicev1.AnnotationDesiredArtifact: canaryRef, splicev1.AnnotationTrafficPercent: "ten"},
			desired: "9f8e7d6c5b4a (canary)", traffic: iconWarning + " ten"},
		{name: "a split without stable keeps its share", ann: map[string]string{splicev1.AnnotationDesiredArtifact: canaryRef, splicev1.AnnotationTrafficPercent: "10"},
			desired: "9f8e7d6c5b4a (canary)", traffic: "10%"},
		{name: "blank desired artifact", ann: map[string]string{splicev1.AnnotationDesiredArtifact: " "}, desired: "-", traffic: "-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, _ := splicev1.ParseDesiredState(tt.ann)
			desired, traffic := desiredCells(cv, want, tt.ann)
			if desired != tt.desired || traffic != tt.traffic {
				t.Fatalf("desiredCells = %q, %q; want %q, %q", desired, traffic, tt.desired, tt.traffic)
			}
		})
	}
}
