package main

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

func TestDecide(t *testing.T) {
	const ref = "compilerversion.splice.dev/greeter"
	withAnn := func(cv *splicev1.CompilerVersion, kv ...string) *splicev1.CompilerVersion {
		cv.Annotations = map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			cv.Annotations[kv[i]] = kv[i+1]
		}
		return cv
	}
	rolling := func() *splicev1.CompilerVersion {
		cv := canaryCV("shop")
		cv.Spec.Strategy = splicev1.RolloutStrategy{Type: splicev1.StrategyRollingPatch}
		return cv
	}
	phase := func(p splicev1.Phase) *splicev1.CompilerVersion {
		cv := canaryCV("shop")
		cv.Status.Phase = p
		return cv
	}
	noArtifact := func() *splicev1.CompilerVersion {
		cv := phase(splicev1.PhaseBuilding)
		cv.Status.Artifact = nil
		return cv
	}
	set, del := func(s string) *string { return &s }, (*string)(nil)
	tests := []struct {
		name    string
		decide  decideFunc
		cv      *splicev1.CompilerVersion
		changes map[string]*string
		did     string
		note    string
		wantErr string
	}{
		{name: "promote", decide: decidePromote(false), cv: canaryCV("shop"),
			changes: map[string]*string{splicev1.AnnotationPromote: set("N")}, did: "step 2/3 ends and step 3/3 begins"},
		{name: "promote the last step", decide: decidePromote(false), cv: func() *splicev1.CompilerVersion {
			cv := canaryCV("shop")
			cv.Status.CurrentStepIndex = ptr.To[int32](2)
			return cv
		}(), changes: map[string]*string{splicev1.AnnotationPromote: set("N")}, did: "step 3/3 ends and every pod moves to 9f8e7d6c5b4a"},
		{name: "promote full", decide: decidePromote(true), cv: canaryCV("shop"),
			changes: map[string]*string{splicev1.AnnotationPromoteFull: set("N")}, did: "every remaining step is skipped"},
		{name: "promote a RollingPatch", decide: decidePromote(false), cv: rolling(), wantErr: "uses the RollingPatch strategy: only Canary rollouts have steps to promote"},
		{name: "promote while paused", decide: decidePromote(false), cv: withAnn(canaryCV("shop"), splicev1.AnnotationPaused, "true"),
			wantErr: "is paused (splice.dev/paused): the controller would spend the promotion without acting on it; `kubectl splice resume greeter` first"},
		{name: "promote while aborted", decide: decidePromote(true), cv: withAnn(canaryCV("shop"), splicev1.AnnotationAbort, "true"),
			wantErr: "`kubectl splice retry greeter`"},
		{name: "promote a completed rollout", decide: decidePromote(false), cv: phase(splicev1.PhaseCompleted),
			wantErr: "has no rollout to promote: its phase is Completed"},
		{name: "pause", decide: decidePause, cv: canaryCV("shop"), changes: map[string]*string{splicev1.AnnotationPaused: set("true")},
			did: "paused (splice.dev/paused=true)"},
		{name: "pause with no rollout", decide: decidePause, cv: phase(splicev1.PhaseCompleted),
			changes: map[string]*string{splicev1.AnnotationPaused: set("true")}, note: "the next rollout holds before it moves any pod"},
		{name: "pause twice", decide: decidePause, cv: withAnn(canaryCV("shop"), splicev1.AnnotationPaused, "true"), did: "was already paused"},
		{name: "resume", decide: decideResume, cv: withAnn(canaryCV("shop"), splicev1.AnnotationPaused, "true"),
			changes: map[string]*string{splicev1.AnnotationPaused: del}, did: "resumed (removed splice.dev/paused)"},
		{name: "resume what is not paused, waiting for promotion", decide: decideResume, cv: canaryCV("shop"),
			did: "was not paused (no splice.dev/paused annotation)", note: "`kubectl splice promote greeter` goes on"},
		{name: "resume a bad value", decide: decideResume, cv: withAnn(canaryCV("shop"), splicev1.AnnotationPaused, "yes"),
			changes: map[string]*string{splicev1.AnnotationPaused: del}, did: `removed splice.dev/paused="yes"`},
		{name: "resume while aborted", decide: decideResume, cv: withAnn(canaryCV("shop"), splicev1.AnnotationPaused, "true", splicev1.AnnotationAbort, "true"),
			changes: map[string]*string{splicev1.AnnotationPaused: del}, note: "still aborted"},
		{name: "abort", decide: decideAbort, cv: canaryCV("shop"), changes: map[string]*string{splicev1.AnnotationAbort: set("true")},
			did: "every pod returns to the stable artifact 1a2b3c4d5e6f"},
		{name: "abort twice", decide: decideAbort, cv: withAnn(canaryCV("shop"), splicev1.AnnotationAbort, "true"), did: "was already aborted"},
		{name: "retry lifts an abort", decide: decideRetry, cv: withAnn(canaryCV("shop"), splicev1.AnnotationAbort, "true", splicev1.AnnotationPaused, "true"),
			changes: map[string]*string{splicev1.AnnotationRetry: set("N"), splicev1.AnnotationAbort: del},
			did:     "starts again from its first step; removed splice.dev/abort", note: "still paused"},
		{name: "retry without an artifact", decide: decideRetry, cv: noArtifact(), wantErr: "retry restarts a rollout, not a build"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.cv.DeepCopy()
			act, err := tt.decide(tt.cv, ref, "N")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(act.changes) != len(tt.changes) {
				t.Errorf("changes %v, want %v", printable(act.changes), printable(tt.changes))
			}
			for k, v := range tt.changes {
				got, ok := act.changes[k]
				if !ok || (v == nil) != (got == nil) || (v != nil && *v != *got) {
					t.Errorf("changes %v, want %v", printable(act.changes), printable(tt.changes))
				}
			}
			if !strings.Contains(act.did, tt.did) {
				t.Errorf("did %q, want it to contain %q", act.did, tt.did)
			}
			if tt.note != "" && !strings.Contains(strings.Join(act.notes, "\n"), tt.note) {
				t.Errorf("notes %q, want one containing %q", act.notes, tt.note)
			}
			if len(act.changes) > 0 && act.settled == nil {
				t.Errorf("a change without a way to tell that the controller acted on it")
			}
			if render(before, nil, testNow) != render(tt.cv, nil, testNow) {
				t.Errorf("decide modified the CompilerVersion")
			}
		})
	}
}

func TestSettled(t *testing.T) {
	paused := canaryCV("shop")
	paused.Status.Conditions[3] = metav1.Condition{Type: splicev1.ConditionPaused, Status: metav1.ConditionTrue, Reason: splicev1.ReasonPausedByUser}
	resume, _ := decideResume(withPaused(canaryCV("shop")), "cv", "N")
	if resume.settled(paused) {
		t.Errorf("resume settled while the controller still reports PausedByUser")
	}
	if !resume.settled(canaryCV("shop")) {
		t.Errorf("resume not settled once the pause is for promotion")
	}
	pause, _ := decidePause(canaryCV("shop"), "cv", "N")
	if pause.settled(canaryCV("shop")) {
		t.Errorf("pause settled on a canary that waits for promotion: the controller may not have seen the annotation")
	}
	completed := canaryCV("shop")
	completed.Status.Phase = splicev1.PhaseCompleted
	if !pause.settled(paused) || !pause.settled(completed) {
		t.Errorf("pause not settled once paused by the user, or with no rollout to hold")
	}
	promote, _ := decidePromote(false)(canaryCV("shop"), "cv", "N")
	acted := canaryCV("shop")
	acted.Status.ObservedControls.Promote = "N"
	if promote.settled(canaryCV("shop")) || !promote.settled(acted) {
		t.Errorf("promote must settle exactly when status.observedControls.promote holds its nonce")
	}
}

func withPaused(cv *splicev1.CompilerVersion) *splicev1.CompilerVersion {
	cv.Annotations = map[string]string{splicev1.AnnotationPaused: "true"}
	return cv
}

func printable(m map[string]*string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = "<remove>"
		if v != nil {
			out[k] = *v
		}
	}
	return out
}
