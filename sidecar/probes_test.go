package sidecar

import (
	"errors"
	"strings"
	"testing"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/host/control"
)

func TestReadiness(t *testing.T) {
	desired := map[string]string{splicev1.AnnotationDesiredArtifact: ref(dA)}
	tA := Target{Ref: ref(dA), Digest: dA, Percent: 100}
	with := func(m map[string]string, k, v string) map[string]string {
		c := map[string]string{k: v}
		for a, b := range m {
			c[a] = b
		}
		return c
	}
	tests := []struct {
		name string
		ann  map[string]string
		st   control.Status
		want bool
		why  string
	}{
		{"desired runs", desired, control.Status{Current: dA, HostGoVersion: "go1.26.8"}, true, "serves"},
		{"desired being brought in, old version serves", desired, control.Status{Current: dB, HostGoVersion: "go1.26.8"}, true, "while"},
		{"desired being brought in, nothing serves", desired, control.Status{HostGoVersion: "go1.26.8"}, false, "serves no plugin"},
		{"desired pulling, old version serves", with(desired, splicev1.AnnotationReport, encode(t, newReport(tA, splicev1.SwapPulling, "", nil, &control.Status{Current: dB}))), control.Status{Current: dB}, true, "while"},
		// A refused artifact leaves the pod in its Services while the host serves what it had.
		{"desired failed, old version serves", with(desired, splicev1.AnnotationReport, encode(t, newReport(tA, splicev1.SwapFailed, ReasonInitPanic, errors.New("boom"), &control.Status{Current: dB}))), control.Status{Current: dB}, true, "was refused: InitPanic: boom"},
		{"desired incompatible, old version serves", with(desired, splicev1.AnnotationReport, encode(t, newReport(tA, splicev1.SwapIncompatible, "PackageHashMismatch", errors.New("x"), &control.Status{Current: dB}))), control.Status{Current: dB}, true, "was refused: PackageHashMismatch"},
		{"desired crashed the host, the restarted host serves its own", with(desired, splicev1.AnnotationReport, encode(t, newReport(tA, splicev1.SwapCrashed, ReasonHostCrashed, errors.New("died"), &control.Status{Current: dB}))), control.Status{Current: dB}, true, "was refused: " + ReasonHostCrashed},
		{"desired rolled back, old version serves", with(desired, splicev1.AnnotationReport, encode(t, newReport(tA, splicev1.SwapRolledBack, ReasonHostRolledBack, errors.New("panicked"), &control.Status{Current: dB}))), control.Status{Current: dB}, true, "was rolled back"},
		{"desired failed, nothing serves (first rollout)", with(desired, splicev1.AnnotationReport, encode(t, newReport(tA, splicev1.SwapFailed, ReasonInitPanic, errors.New("boom"), &control.Status{}))), control.Status{}, false, "serves no plugin"},
		{"another target failed, this one in progress", with(desired, splicev1.AnnotationReport, encode(t, newReport(Target{Ref: ref(dB), Digest: dB, Percent: 100}, splicev1.SwapFailed, ReasonInitPanic, errors.New("boom"), nil))), control.Status{Current: dB}, true, "while"},
		{"desired reported ready, routing moved", with(desired, splicev1.AnnotationReport, encode(t, newReport(tA, splicev1.SwapReady, "", nil, &control.Status{Current: dA}))), control.Status{Current: dB}, true, "the host serves " + dB},
		// Another Go release in the host: it still serves its version correctly (Strict's
		// eviction deals with the mismatch); the probe says so.
		{"toolchain differs while swapping", with(desired, splicev1.AnnotationGoVersion, "1.26.9"), control.Status{Current: dB, HostGoVersion: "go1.26.8"}, true, "pins go1.26.9"},
		{"toolchain matches (CompilerVersion form)", with(desired, splicev1.AnnotationGoVersion, "1.26.8"), control.Status{Current: dA, HostGoVersion: "go1.26.8"}, true, "serves"},
		{"toolchain matches (go form)", with(desired, splicev1.AnnotationGoVersion, "go1.26.8"), control.Status{Current: dA, HostGoVersion: "go1.26.8"}, true, "serves"},
		{"toolchain differs", with(desired, splicev1.AnnotationGoVersion, "1.26.9"), control.Status{Current: dA, HostGoVersion: "go1.26.8"}, true, "pins go1.26.9"},
		{"toolchain differs, nothing serves", with(desired, splicev1.AnnotationGoVersion, "1.26.9"), control.Status{HostGoVersion: "go1.26.8"}, false, "pins go1.26.9"},
		{"nothing desired, something serves", nil, control.Status{Current: dB}, true, "no desired"},
		{"nothing desired, nothing serves", nil, control.Status{}, false, "serves no plugin"},
		{"malformed, something serves", map[string]string{splicev1.AnnotationDesiredArtifact: "r/x:latest"}, control.Status{Current: dA}, true, "tag"},
		{"malformed, nothing serves", map[string]string{splicev1.AnnotationDesiredArtifact: "r/x:latest"}, control.Status{}, false, "tag"},
	}
	for _, tt := range tests {
		ok, why := Readiness(tt.ann, &tt.st)
		if ok != tt.want || !strings.Contains(why, tt.why) {
			t.Errorf("%s: Readiness = %v %q; want %v mentioning %q", tt.name, ok, why, tt.want, tt.why)
		}
	}
}
