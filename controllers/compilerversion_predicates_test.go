package controllers

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

// TestArtifactChanged: the build reconciler's status writes reach this reconciler exactly when
// they change what it derives from them (the rollout's artifact, the phase), and its own status
// writes do not.
func TestArtifactChanged(t *testing.T) {
	built := func(status metav1.ConditionStatus, reason string, gen int64) metav1.Condition {
		return metav1.Condition{Type: splicev1.ConditionBuilt, Status: status, Reason: reason, ObservedGeneration: gen}
	}
	cv := func(digest string, conds ...metav1.Condition) *splicev1.CompilerVersion {
		c := &splicev1.CompilerVersion{Status: splicev1.CompilerVersionStatus{Conditions: conds}}
		if digest != "" {
			c.Status.Artifact = &splicev1.ArtifactStatus{Digest: digest}
		}
		return c
	}
	building := built(metav1.ConditionFalse, ReasonBuilding, 2)
	tests := []struct {
		name     string
		old, new *splicev1.CompilerVersion
		want     bool
	}{
		{"an artifact appears", cv("", building), cv(digestA, built(metav1.ConditionTrue, ReasonBuildSucceeded, 2)), true},
		{"the artifact changes", cv(digestA), cv(digestB), true},
		{"the artifact goes", cv(digestA), cv(""), true},
		{"Built appears", cv(""), cv("", building), true},
		{"the build fails (reason only)", cv("", building), cv("", built(metav1.ConditionFalse, "CompileFailed", 2)), true},
		{"Built for a new generation", cv("", building), cv("", built(metav1.ConditionFalse, ReasonBuilding, 3)), true},
		{"this reconciler's own write", cv(digestA, building), func() *splicev1.CompilerVersion {
			c := cv(digestA, building)
			c.Status.Progress, c.Status.Phase = "1/3", splicev1.PhaseProgressing
			return c
		}(), false},
		{"only Built's message", cv("", building), func() *splicev1.CompilerVersion {
			b := building
			b.Message = "pod is waiting"
			return cv("", b)
		}(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := artifactChanged.Update(event.UpdateEvent{ObjectOld: tt.old, ObjectNew: tt.new}); got != tt.want {
				t.Errorf("artifactChanged = %v, want %v", got, tt.want)
			}
		})
	}
}
