package v1alpha1_test

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

func TestLevelControls(t *testing.T) {
	tests := []struct {
		name            string
		ann             map[string]string
		aborted, paused bool
	}{
		{name: "none", ann: nil},
		{name: "aborted", ann: map[string]string{splicev1.AnnotationAbort: "true"}, aborted: true},
		{name: "paused", ann: map[string]string{splicev1.AnnotationPaused: "true"}, paused: true},
		{name: "both", ann: map[string]string{splicev1.AnnotationAbort: "true", splicev1.AnnotationPaused: "true"}, aborted: true, paused: true},
		// Only "true" counts: anything else a person may write is no control.
		{name: "other values", ann: map[string]string{splicev1.AnnotationAbort: "yes", splicev1.AnnotationPaused: "True"}},
		{name: "empty values", ann: map[string]string{splicev1.AnnotationAbort: "", splicev1.AnnotationPaused: ""}},
		{name: "spaces", ann: map[string]string{splicev1.AnnotationAbort: " true", splicev1.AnnotationPaused: "true "}},
		{name: "a nonce is no level", ann: map[string]string{splicev1.AnnotationPromote: "true", splicev1.AnnotationRetry: "true"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cv := &splicev1.CompilerVersion{ObjectMeta: metav1.ObjectMeta{Annotations: tt.ann}}
			if got := cv.Aborted(); got != tt.aborted {
				t.Errorf("Aborted() = %v, want %v", got, tt.aborted)
			}
			if got := cv.Paused(); got != tt.paused {
				t.Errorf("Paused() = %v, want %v", got, tt.paused)
			}
		})
	}
}

func TestRolloutActive(t *testing.T) {
	for phase, want := range map[splicev1.Phase]bool{
		"": false, splicev1.PhasePending: false, splicev1.PhaseBuilding: false, splicev1.PhaseBuildFailed: false,
		splicev1.PhaseProgressing: true, splicev1.PhasePaused: true,
		splicev1.PhaseCompleted: false, splicev1.PhaseDegraded: false, splicev1.PhaseRolledBack: false,
	} {
		cv := &splicev1.CompilerVersion{Status: splicev1.CompilerVersionStatus{Phase: phase}}
		if got := cv.RolloutActive(); got != want {
			t.Errorf("phase %q: RolloutActive() = %v, want %v", phase, got, want)
		}
	}
}

func TestNonceControls(t *testing.T) {
	seen := splicev1.ObservedControls{Promote: "p1", PromoteFull: "f1", Retry: "r1"}
	tests := []struct {
		name                        string
		ann                         map[string]string
		observed                    splicev1.ObservedControls
		promote, promoteFull, retry bool
	}{
		{name: "none", observed: seen},
		{name: "new nonces", ann: map[string]string{splicev1.AnnotationPromote: "p2", splicev1.AnnotationPromoteFull: "f2", splicev1.AnnotationRetry: "r2"},
			observed: seen, promote: true, promoteFull: true, retry: true},
		{name: "nonces already acted on", ann: map[string]string{splicev1.AnnotationPromote: "p1", splicev1.AnnotationPromoteFull: "f1", splicev1.AnnotationRetry: "r1"},
			observed: seen},
		{name: "first nonces", ann: map[string]string{splicev1.AnnotationPromote: "p1", splicev1.AnnotationRetry: "r1"},
			promote: true, retry: true},
		{name: "empty values are none", ann: map[string]string{splicev1.AnnotationPromote: "", splicev1.AnnotationPromoteFull: "", splicev1.AnnotationRetry: ""}},
		// Each nonce is compared with its own record only.
		{name: "records do not cross", ann: map[string]string{splicev1.AnnotationPromote: "f1", splicev1.AnnotationPromoteFull: "r1", splicev1.AnnotationRetry: "p1"},
			observed: seen, promote: true, promoteFull: true, retry: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cv := &splicev1.CompilerVersion{ObjectMeta: metav1.ObjectMeta{Annotations: tt.ann},
				Status: splicev1.CompilerVersionStatus{ObservedControls: tt.observed}}
			if got := cv.PromoteRequested(); got != tt.promote {
				t.Errorf("PromoteRequested() = %v, want %v", got, tt.promote)
			}
			if got := cv.PromoteFullRequested(); got != tt.promoteFull {
				t.Errorf("PromoteFullRequested() = %v, want %v", got, tt.promoteFull)
			}
			if got := cv.RetryRequested(); got != tt.retry {
				t.Errorf("RetryRequested() = %v, want %v", got, tt.retry)
			}
		})
	}
}
