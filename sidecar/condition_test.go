package sidecar

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/host/control"
)

// TestConditionFor: the plugin-ready condition is True while the host serves a version,
// whatever became of a newer desired artifact, and False only when it serves nothing. The
// refusal shows in the reason (the report's state) and the message, not as a hole in the
// Service.
func TestConditionFor(t *testing.T) {
	tA := Target{Ref: ref(dA), Digest: dA, Percent: 100}
	serving := &control.Status{Current: dB}
	nothing := &control.Status{}
	tests := []struct {
		name    string
		r       *splicev1.PodReport
		want    corev1.ConditionStatus
		message []string
	}{
		{"ready", newReport(tA, splicev1.SwapReady, "", nil, &control.Status{Current: dA}), corev1.ConditionTrue, []string{"the host serves " + dA}},
		{"canary ready", newReport(Target{Ref: ref(dA), Digest: dA, Percent: 10, StableRef: ref(dB), StableDigest: dB}, splicev1.SwapReady, "", nil,
			&control.Status{Current: dB, Canary: dA, CanaryPercent: 10}), corev1.ConditionTrue, []string{dA + " receives 10% of calls"}},
		{"pulling, old version serves", newReport(tA, splicev1.SwapPulling, "", nil, serving), corev1.ConditionTrue, []string{"the host serves " + dB + " while " + dA}},
		{"incompatible, old version serves", newReport(tA, splicev1.SwapIncompatible, "PackageHashMismatch", errors.New("package x differs"), serving),
			corev1.ConditionTrue, []string{"the host serves " + dB, dA + " was refused", "PackageHashMismatch: package x differs"}},
		{"failed, old version serves", newReport(tA, splicev1.SwapFailed, ReasonInitPanic, errors.New("boom"), serving),
			corev1.ConditionTrue, []string{"the host serves " + dB, dA + " was refused", ReasonInitPanic + ": boom"}},
		{"rolled back, old version serves", newReport(tA, splicev1.SwapRolledBack, ReasonHostRolledBack, errors.New("panicked 3 times"), serving),
			corev1.ConditionTrue, []string{"the host serves " + dB, dA + " was rolled back", "panicked 3 times"}},
		{"crashed, the restarted host serves its own version", newReport(tA, splicev1.SwapCrashed, ReasonHostCrashed, errors.New("the host died"), serving),
			corev1.ConditionTrue, []string{"the host serves " + dB, dA + " was refused", ReasonHostCrashed}},
		{"consent refused, old version serves", newReport(tA, splicev1.SwapIncompatible, splicev1.ReasonMinorAPIChangeNotAllowed, errors.New("set spec.plugin.allowMinorAPIChange"), serving),
			corev1.ConditionTrue, []string{"the host serves " + dB, splicev1.ReasonMinorAPIChangeNotAllowed}},
		{"malformed annotations, old version serves", newReport(Target{Ref: "r/x:latest", Percent: 100}, splicev1.SwapFailed, ReasonInvalidDesiredArtifact, errors.New("names a tag"), serving),
			corev1.ConditionTrue, []string{"the host serves " + dB, "r/x:latest was refused", "names a tag"}},
		// The first rollout into a host that started without a plugin: nothing serves, so
		// nothing serves correctly.
		{"first artifact refused, nothing serves", newReport(tA, splicev1.SwapIncompatible, "PackageHashMismatch", errors.New("differs"), nothing),
			corev1.ConditionFalse, []string{"the host serves no plugin", "PackageHashMismatch: differs"}},
		{"pulling, nothing serves", newReport(tA, splicev1.SwapPulling, "", nil, nothing), corev1.ConditionFalse, []string{"the host serves no plugin", dA}},
		{"host does not answer", newReport(tA, splicev1.SwapPending, ReasonHostUnavailable, errors.New("dial unix: refused"), nil), corev1.ConditionFalse, []string{"dial unix: refused"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := conditionFor(tt.r)
			if c.Type != splicev1.PodConditionPluginReady || c.Status != tt.want || c.Reason != string(tt.r.State) {
				t.Fatalf("condition %+v; want %s with reason %s", c, tt.want, tt.r.State)
			}
			for _, m := range tt.message {
				if !strings.Contains(c.Message, m) {
					t.Errorf("message %q does not say %q", c.Message, m)
				}
			}
			if len(c.Message) > maxConditionMessage {
				t.Errorf("message is %d bytes; at most %d", len(c.Message), maxConditionMessage)
			}
		})
	}
	long := newReport(tA, splicev1.SwapFailed, ReasonLoadFailed, errors.New(strings.Repeat("x", 5000)), serving)
	if c := conditionFor(long); len(c.Message) > maxConditionMessage || c.Status != corev1.ConditionTrue {
		t.Fatalf("long error: %d bytes, %s", len(c.Message), c.Status)
	}
}
