package controllers

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

func reported(name string, ready bool, state splicev1.SwapState, digest, running string) podState {
	return podState{name: name, ready: ready, report: &splicev1.PodReport{Digest: digest, Running: running, State: state}}
}

func TestCountPodsAndReady(t *testing.T) {
	art := &splicev1.ArtifactStatus{Ref: "r/p@" + digestA, Digest: digestA}
	tests := []struct {
		name        string
		pods        []podState
		artifact    *splicev1.ArtifactStatus
		selectorErr error
		want        podCounts
		wantStatus  metav1.ConditionStatus
		wantReason  string
	}{
		{name: "no pods", want: podCounts{}, artifact: art, wantStatus: metav1.ConditionFalse, wantReason: splicev1.ReasonNoTargetPods},
		{name: "bad selector wins", selectorErr: errors.New("bad operator"), artifact: art,
			wantStatus: metav1.ConditionFalse, wantReason: splicev1.ReasonInvalidSelector},
		{name: "pods but no artifact", pods: []podState{{name: "a"}, {name: "b", ready: true}},
			want: podCounts{targeted: 2, ready: 1}, wantStatus: metav1.ConditionFalse, wantReason: splicev1.ReasonAwaitingArtifact},
		{name: "reports about another artifact do not count", artifact: art,
			pods: []podState{reported("a", true, splicev1.SwapReady, digestB, digestB), reported("b", false, splicev1.SwapFailed, digestB, "")},
			want: podCounts{targeted: 2, ready: 1}, wantStatus: metav1.ConditionFalse, wantReason: splicev1.ReasonPodsNotUpdated},
		{name: "mixed outcomes", artifact: art, pods: []podState{
			reported("a", true, splicev1.SwapReady, digestA, digestA),
			reported("b", false, splicev1.SwapFailed, digestA, digestB),
			reported("c", false, splicev1.SwapRolledBack, digestA, digestB),
			reported("d", false, splicev1.SwapIncompatible, digestA, digestB),
			reported("e", false, splicev1.SwapPulling, digestA, digestB),
			{name: "f", reportErr: errors.New("garbage")},
		}, want: podCounts{targeted: 6, updated: 1, ready: 1, failed: 2, incompatible: 1},
			wantStatus: metav1.ConditionFalse, wantReason: splicev1.ReasonPodsNotUpdated},
		{name: "a host that crashed running the artifact counts as failed", artifact: art, pods: []podState{
			reported("a", false, splicev1.SwapCrashed, digestA, ""),
			reported("b", true, splicev1.SwapReady, digestA, digestA),
		}, want: podCounts{targeted: 2, updated: 1, ready: 1, failed: 1}, wantStatus: metav1.ConditionFalse, wantReason: splicev1.ReasonPodsNotUpdated},
		{name: "Ready state but still running the old digest is not updated", artifact: art,
			pods: []podState{reported("a", true, splicev1.SwapReady, digestA, digestB)},
			want: podCounts{targeted: 1, ready: 1}, wantStatus: metav1.ConditionFalse, wantReason: splicev1.ReasonPodsNotUpdated},
		{name: "updated but readiness not yet reported", artifact: art,
			pods: []podState{reported("a", false, splicev1.SwapReady, digestA, digestA)},
			want: podCounts{targeted: 1, updated: 1}, wantStatus: metav1.ConditionFalse, wantReason: splicev1.ReasonPodsNotUpdated},
		{name: "all updated and ready", artifact: art,
			pods: []podState{reported("a", true, splicev1.SwapReady, digestA, digestA), reported("b", true, splicev1.SwapReady, digestA, digestA)},
			want: podCounts{targeted: 2, updated: 2, ready: 2}, wantStatus: metav1.ConditionTrue, wantReason: splicev1.ReasonAllPodsReady},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := countPods(tt.pods, tt.artifact)
			if got != tt.want {
				t.Errorf("countPods = %+v, want %+v", got, tt.want)
			}
			c := readyCondition(got, tt.artifact, tt.selectorErr, 7)
			if c.Status != tt.wantStatus || c.Reason != tt.wantReason || c.ObservedGeneration != 7 || c.Message == "" {
				t.Errorf("readyCondition = %s/%s (gen %d, %q), want %s/%s", c.Status, c.Reason, c.ObservedGeneration, c.Message, tt.wantStatus, tt.wantReason)
			}
		})
	}
}

func TestMergeFailures(t *testing.T) {
	t0 := metav1.NewTime(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC))
	at := func(d time.Duration) *metav1.Time { t := metav1.NewTime(t0.Add(d)); return &t }
	failing := func(name string, d time.Duration, state splicev1.SwapState) podState {
		return podState{name: name, report: &splicev1.PodReport{Digest: digestA, State: state, Reason: "LoadFailed", Error: "boom " + name,
			ObservedAt: *at(d)}}
	}
	t.Run("newest first, deduplicated, failures outlive their pods", func(t *testing.T) {
		existing := []splicev1.PodFailure{{Pod: "gone", Digest: digestA, State: splicev1.SwapFailed, Time: at(-time.Hour)}}
		pods := []podState{failing("a", time.Minute, splicev1.SwapFailed), failing("b", 2*time.Minute, splicev1.SwapIncompatible),
			reported("c", true, splicev1.SwapReady, digestA, digestA)}
		got := mergeFailures(existing, pods, t0)
		names := []string{}
		for _, f := range got {
			names = append(names, f.Pod)
		}
		if fmt.Sprint(names) != "[b a gone]" {
			t.Fatalf("order = %v, want [b a gone]", names)
		}
		again := mergeFailures(got, pods, metav1.NewTime(t0.Add(time.Hour)))
		if len(again) != 3 || !again[0].Time.Equal(at(2*time.Minute)) {
			t.Fatalf("second pass changed the record: %+v", again)
		}
	})
	t.Run("bounded", func(t *testing.T) {
		var pods []podState
		for i := 0; i < 3*splicev1.MaxRecentFailures; i++ {
			pods = append(pods, failing(fmt.Sprintf("p%02d", i), time.Duration(i)*time.Second, splicev1.SwapFailed))
		}
		got := mergeFailures(nil, pods, t0)
		if len(got) != splicev1.MaxRecentFailures || got[0].Pod != "p29" {
			t.Fatalf("got %d failures starting with %s, want %d starting with p29", len(got), got[0].Pod, splicev1.MaxRecentFailures)
		}
	})
	t.Run("a crashed host is a failure that says so", func(t *testing.T) {
		got := mergeFailures(nil, []podState{failing("a", time.Minute, splicev1.SwapCrashed), reported("b", true, splicev1.SwapReady, digestA, digestA)}, t0)
		if len(got) != 1 || got[0].Pod != "a" || got[0].State != splicev1.SwapCrashed || got[0].Digest != digestA ||
			!strings.HasPrefix(got[0].Message, "the host crashed running "+digestA) || !strings.Contains(got[0].Message, "boom a") {
			t.Fatalf("got %+v, want one Crashed failure of pod a whose message says the host crashed running %s and keeps the agent's error", got, digestA)
		}
	})
	t.Run("malformed reports are failures; none is nil", func(t *testing.T) {
		got := mergeFailures(nil, []podState{{name: "x", reportErr: errors.New("report.digest bad")}}, t0)
		if len(got) != 1 || got[0].Reason != "MalformedReport" || got[0].Message != "report.digest bad" {
			t.Fatalf("got %+v", got)
		}
		if mergeFailures(nil, []podState{{name: "ok"}}, t0) != nil {
			t.Fatal("no failures must stay nil so status is not rewritten with an empty list")
		}
	})
}

func TestTargetable(t *testing.T) {
	now := metav1.Now()
	for _, tt := range []struct {
		pod  corev1.Pod
		want bool
	}{
		{corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending}}, true},
		{corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning}}, true},
		{corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodSucceeded}}, false},
		{corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodFailed}}, false},
		{corev1.Pod{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &now}, Status: corev1.PodStatus{Phase: corev1.PodRunning}}, false},
	} {
		if got := targetable(&tt.pod); got != tt.want {
			t.Errorf("targetable(%s, deleting=%v) = %v, want %v", tt.pod.Status.Phase, tt.pod.DeletionTimestamp != nil, got, tt.want)
		}
	}
}

func TestAnnotationPatchCountersInterval(t *testing.T) {
	cv := &splicev1.CompilerVersion{ObjectMeta: metav1.ObjectMeta{Name: "greeter"}, Spec: splicev1.CompilerVersionSpec{GoVersion: "1.26.8"}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{}}}
	member := splicev1.DesiredState{Artifact: "r/p@" + digestA, CountersInterval: 10 * time.Second}
	patchFor := func(t *testing.T, target splicev1.DesiredState) string {
		t.Helper()
		p, err := annotationPatch(pod, target, cv)
		if err != nil {
			t.Fatalf("annotationPatch: %v", err)
		}
		return string(p)
	}
	if patch := patchFor(t, member); !strings.Contains(patch, `"splice.dev/counters-interval":"10s"`) {
		t.Fatalf("patch %s does not ask for counters", patch)
	}
	pod.Annotations = map[string]string{splicev1.AnnotationDesiredArtifact: member.Artifact, splicev1.AnnotationCountersInterval: "10s",
		splicev1.AnnotationCompilerVersion: "greeter", splicev1.AnnotationGoVersion: "1.26.8"}
	if p := patchFor(t, member); p != "" {
		t.Fatalf("a pod already as wanted got a patch: %s", p)
	}
	// Observing the pod gives back the same target, so no pass patches it again.
	if got := observePod(pod, cv.Name).target; got.CountersInterval != 10*time.Second || got.Artifact != member.Artifact {
		t.Fatalf("observed target %+v", got)
	}
	// The same annotations read by another CompilerVersion (the pod changed owner) tell it nothing.
	if got := observePod(pod, "billing").target; got != (splicev1.DesiredState{}) {
		t.Fatalf("a pod told by greeter reads as %+v to billing; want nothing told", got)
	}
	if patch := patchFor(t, splicev1.DesiredState{Artifact: member.Artifact}); !strings.Contains(patch, `"splice.dev/counters-interval":null`) {
		t.Fatalf("patch %s does not remove the request", patch)
	}
}

// TestAnnotationPatchRefusesAStateTheAgentWouldRefuse: a target the pod protocol's codec
// rejects is never written (a frozen plan can copy a pod's own malformed state back).
func TestAnnotationPatchRefusesAStateTheAgentWouldRefuse(t *testing.T) {
	cv := &splicev1.CompilerVersion{ObjectMeta: metav1.ObjectMeta{Name: "greeter"}, Spec: splicev1.CompilerVersionSpec{GoVersion: "1.26.8"}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Annotations: map[string]string{}}}
	for _, bad := range []splicev1.DesiredState{
		{Artifact: "registry.example.com/greeter:latest"},
		{Artifact: "r/p@" + digestA, Stable: "r/p@" + digestB},
	} {
		if p, err := annotationPatch(pod, bad, cv); err == nil {
			t.Errorf("%+v: patch %s, want an error", bad, p)
		}
	}
}
