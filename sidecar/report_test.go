package sidecar

import (
	"errors"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	corev1 "k8s.io/api/core/v1"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/host/control"
)

func TestReportsValidateAndConditionsFollow(t *testing.T) {
	target := Target{Ref: ref(dA), Digest: dA, Percent: 100}
	st := &control.Status{Current: dB, HostGoVersion: "go1.26.8", LoadedVersions: 2,
		Versions: []control.VersionStatus{{Digest: dB, Calls: 7, Errors: 1, Panics: 2}}}
	long := errors.New(strings.Repeat("x", 10000))
	for _, r := range []*splicev1.PodReport{
		newReport(target, splicev1.SwapFailed, ReasonInitPanic, long, st),
		newReport(target, splicev1.SwapPulling, "", nil, nil), // the host did not answer: nothing known to serve
		newReport(target, splicev1.SwapIncompatible, "PackageHashMismatch", errors.New("differs"), st),
		newReport(target, splicev1.SwapRolledBack, ReasonHostRolledBack, errors.New("rolled back"), st),
		newReport(Target{Ref: "r/x:latest", Percent: 100}, splicev1.SwapFailed, ReasonInvalidDesiredArtifact, errors.New("not pinned"), st),
	} {
		if _, err := r.Encode(); err != nil {
			t.Errorf("report %+v does not encode: %v", r, err)
		}
		// The condition is True while the host serves a version, whatever the outcome.
		want := corev1.ConditionFalse
		if r.Running != "" {
			want = corev1.ConditionTrue
		}
		if c := conditionFor(r); c.Status != want || c.Reason != string(r.State) {
			t.Errorf("condition for %s: %+v; want %s", r.State, c, want)
		}
	}
	// A swap in progress keeps the pod in its Services while the host serves the old version.
	for _, state := range []splicev1.SwapState{splicev1.SwapPending, splicev1.SwapPulling, splicev1.SwapSwapping} {
		if c := conditionFor(newReport(target, state, "", nil, st)); c.Status != corev1.ConditionTrue || c.Reason != string(state) || !strings.Contains(c.Message, dB) {
			t.Errorf("condition while %s with %s serving: %+v", state, dB, c)
		}
	}
	r := newReport(target, splicev1.SwapReady, "", nil, st)
	if r.Running != dB || r.Calls != 7 || r.Panics != 2 || r.LoadedVersions != 2 || r.HostGoVersion != "go1.26.8" {
		t.Fatalf("host figures not copied: %+v", r)
	}
	if c := conditionFor(r); c.Status != corev1.ConditionTrue {
		t.Fatalf("Ready condition %+v", c)
	}
	// A request-level canary: Running stays the stable version; the counters are the canary's,
	// which the controller's analysis judges.
	split := &control.Status{Current: dB, Canary: dA, CanaryPercent: 10, Versions: []control.VersionStatus{
		{Digest: dB, Calls: 900, Errors: 1}, {Digest: dA, Calls: 100, Errors: 20}}}
	cr := newReport(Target{Ref: ref(dA), Digest: dA, StableRef: ref(dB), StableDigest: dB, Percent: 10}, splicev1.SwapReady, "", nil, split)
	if cr.Running != dB || cr.Calls != 100 || cr.Errors != 20 || !cr.CountsDigest() {
		t.Fatalf("canary report %+v: want Running the stable version and the canary's counters", cr)
	}
	more := *r
	more.Calls = 100
	if !sameReport(r, &more, false) || sameReport(r, &more, true) {
		t.Fatal("sameReport must ignore counters only when asked to")
	}
}

// TestFitReportAlwaysEncodes: whatever the pod's annotation named and whatever the error says,
// the agent's report can be written (a report that cannot be encoded leaves the pod silent).
func TestFitReportAlwaysEncodes(t *testing.T) {
	d := "sha256:" + strings.Repeat("a", 64)
	long := "registry.example.com/" + strings.Repeat("x", 20<<10) + "@" + d
	tests := []struct {
		name string
		t    Target
		err  error
	}{
		{"a 20 KiB artifact reference", Target{Ref: long, Percent: 100}, errors.New("annotation splice.dev/desired-artifact: too long")},
		{"an error JSON escapes to six times its length", Target{Ref: "r/p@" + d, Digest: d, Percent: 100}, errors.New(strings.Repeat("<\x01", 2048))},
		{"both", Target{Ref: long, Digest: d, Percent: 100}, errors.New(strings.Repeat("\u2028", 1365))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newReport(tt.t, splicev1.SwapFailed, splicev1.ReasonInvalidDesiredArtifact, tt.err, &control.Status{HostGoVersion: strings.Repeat("g", 5000)})
			r.ObservedAt = metav1.Now()
			fitReport(r)
			enc, err := r.Encode()
			if err != nil {
				t.Fatalf("the report cannot be written: %v", err)
			}
			back, err := splicev1.DecodeReport(enc)
			if err != nil {
				t.Fatalf("the written report does not decode: %v", err)
			}
			if back.Digest != tt.t.Digest || back.State != splicev1.SwapFailed || back.Reason != splicev1.ReasonInvalidDesiredArtifact {
				t.Fatalf("digest, state or reason changed: %+v", back)
			}
			if !strings.HasPrefix(tt.t.Ref, strings.TrimSuffix(back.Artifact, control.Ellipsis)) {
				t.Fatalf("artifact %q is not a prefix of the named one", back.Artifact)
			}
		})
	}
}
