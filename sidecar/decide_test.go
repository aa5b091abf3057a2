package sidecar

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	corev1 "k8s.io/api/core/v1"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/artifact"
	"github.com/splice-dev/splice/host/control"
)

var (
	dA = "sha256:" + strings.Repeat("a", 64)
	dB = "sha256:" + strings.Repeat("b", 64)
	dC = "sha256:" + strings.Repeat("c", 64)
)

func ref(d string) string { return "registry.example.com/greeter@" + d }

func TestTargetFromAnnotations(t *testing.T) {
	tests := []struct {
		name    string
		ann     map[string]string
		want    Target
		absent  bool
		wantErr string
	}{
		{name: "none", ann: map[string]string{"other": "x"}, absent: true},
		{name: "plain", ann: map[string]string{splicev1.AnnotationDesiredArtifact: ref(dA)}, want: Target{Ref: ref(dA), Digest: dA, Percent: 100}},
		{name: "tag and digest", ann: map[string]string{splicev1.AnnotationDesiredArtifact: "registry.example.com/greeter:v2@" + dA}, want: Target{Ref: "registry.example.com/greeter:v2@" + dA, Digest: dA, Percent: 100}},
		{name: "tag only", ann: map[string]string{splicev1.AnnotationDesiredArtifact: "registry.example.com/greeter:v2"}, wantErr: "names a tag"},
		{name: "garbage", ann: map[string]string{splicev1.AnnotationDesiredArtifact: "not a ref!"}, wantErr: "sha256"},
		{name: "short digest", ann: map[string]string{splicev1.AnnotationDesiredArtifact: "r.example.com/g@sha256:abc"}, wantErr: "pinned"},
		{name: "percent 100 needs no stable", ann: map[string]string{splicev1.AnnotationDesiredArtifact: ref(dA), splicev1.AnnotationTrafficPercent: "100"}, want: Target{Ref: ref(dA), Digest: dA, Percent: 100}},
		{name: "canary", ann: map[string]string{splicev1.AnnotationDesiredArtifact: ref(dA), splicev1.AnnotationTrafficPercent: " 10 ", splicev1.AnnotationStableArtifact: ref(dB)},
			want: Target{Ref: ref(dA), Digest: dA, Percent: 10, StableRef: ref(dB), StableDigest: dB}},
		{name: "canary without stable", ann: map[string]string{splicev1.AnnotationDesiredArtifact: ref(dA), splicev1.AnnotationTrafficPercent: "10"}, wantErr: "needs the stable artifact"},
		{name: "percent not a number", ann: map[string]string{splicev1.AnnotationDesiredArtifact: ref(dA), splicev1.AnnotationTrafficPercent: "ten"}, wantErr: "integer from 0 to 100"},
		{name: "percent over 100", ann: map[string]string{splicev1.AnnotationDesiredArtifact: ref(dA), splicev1.AnnotationTrafficPercent: "101"}, wantErr: "integer from 0 to 100"},
		{name: "stable is the desired", ann: map[string]string{splicev1.AnnotationDesiredArtifact: ref(dA), splicev1.AnnotationTrafficPercent: "5", splicev1.AnnotationStableArtifact: ref(dA)}, wantErr: "same digest"},
		{name: "stable not pinned", ann: map[string]string{splicev1.AnnotationDesiredArtifact: ref(dA), splicev1.AnnotationTrafficPercent: "5", splicev1.AnnotationStableArtifact: "r.example.com/g:stable"}, wantErr: splicev1.AnnotationStableArtifact},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, desired, err := TargetFromAnnotations(tt.ann)
			if desired == tt.absent {
				t.Fatalf("desired = %v, want %v", desired, !tt.absent)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func loaded(d string, state control.VersionState) control.VersionStatus {
	return control.VersionStatus{Digest: d, State: state, LoadedAt: time.Unix(1, 0)}
}

func TestDecide(t *testing.T) {
	swapA := Target{Ref: ref(dA), Digest: dA, Percent: 100}
	canaryA := Target{Ref: ref(dA), Digest: dA, Percent: 20, StableRef: ref(dB), StableDigest: dB}
	report := func(tg Target, s splicev1.SwapState) *splicev1.PodReport {
		return &splicev1.PodReport{Artifact: tg.Ref, Digest: tg.Digest, State: s, TrafficPercent: tg.trafficPercent()}
	}
	pct := func(p int32) *int32 { return &p }
	tests := []struct {
		name   string
		target Target
		st     control.Status
		last   *splicev1.PodReport
		want   action
		reason string
	}{
		{name: "fresh host runs B", target: swapA, st: control.Status{Current: dB, Versions: []control.VersionStatus{loaded(dB, control.StateCurrent)}}, want: actApply},
		{name: "already serving (agent restarted after the swap)", target: swapA, st: control.Status{Current: dA}, last: report(swapA, splicev1.SwapSwapping), want: actReady},
		{name: "serving, no report yet", target: swapA, st: control.Status{Current: dA}, want: actReady},
		{name: "failed for this target stays failed", target: swapA, st: control.Status{Current: dB}, last: report(swapA, splicev1.SwapFailed), want: actKeep},
		{name: "incompatible stays incompatible", target: swapA, st: control.Status{Current: dB}, last: report(swapA, splicev1.SwapIncompatible), want: actKeep},
		{name: "rolled back stays rolled back", target: swapA, st: control.Status{Current: dB, Versions: []control.VersionStatus{loaded(dA, control.StateRetired)}}, last: report(swapA, splicev1.SwapRolledBack), want: actKeep},
		{name: "failed for another target does not stick", target: swapA, st: control.Status{Current: dB}, last: report(Target{Ref: ref(dC), Digest: dC, Percent: 100}, splicev1.SwapFailed), want: actApply},
		{name: "a new traffic share is a new target", target: canaryA, st: control.Status{Current: dB, Canary: dA, CanaryPercent: 10, Versions: []control.VersionStatus{loaded(dB, control.StateCurrent), loaded(dA, control.StateCanary)}},
			last: &splicev1.PodReport{Artifact: ref(dA), Digest: dA, State: splicev1.SwapFailed, TrafficPercent: pct(10)}, want: actApply},
		{name: "host rolled back on its own", target: swapA, st: control.Status{Current: dB, Versions: []control.VersionStatus{loaded(dB, control.StateCurrent), loaded(dA, control.StateRetired)},
			LastSwap: &control.SwapResult{Op: control.OpAutoRollback, From: dA, To: dB, Reason: dA + " panicked 3 times"}}, last: report(swapA, splicev1.SwapReady), want: actRolledBack, reason: ReasonHostRolledBack},
		{name: "host rolled back before the agent reported Ready (agent restart)", target: swapA, st: control.Status{Current: dB, Versions: []control.VersionStatus{loaded(dA, control.StateRetired)},
			LastSwap: &control.SwapResult{Op: control.OpAutoRollback, From: dA, To: dB, Reason: dA + " panicked 3 times"}}, last: report(swapA, splicev1.SwapSwapping), want: actRolledBack, reason: ReasonHostRolledBack},
		{name: "canary dropped by the host", target: canaryA, st: control.Status{Current: dB, Versions: []control.VersionStatus{loaded(dB, control.StateCurrent), loaded(dA, control.StateRetired)},
			LastSwap: &control.SwapResult{Op: control.OpAutoRollback, From: dB, To: dB, Reason: "canary " + dA + " dropped"}}, last: report(canaryA, splicev1.SwapReady), want: actRolledBack, reason: ReasonHostRolledBack},
		{name: "someone else swapped away", target: swapA, st: control.Status{Current: dB, Versions: []control.VersionStatus{loaded(dB, control.StateCurrent), loaded(dA, control.StateRetired)},
			LastSwap: &control.SwapResult{Op: control.OpSwap, From: dA, To: dB}}, last: report(swapA, splicev1.SwapReady), want: actRolledBack, reason: ReasonRoutedAway},
		{name: "back to an earlier version the controller asks for again", target: swapA, st: control.Status{Current: dB, Versions: []control.VersionStatus{loaded(dA, control.StateRetired), loaded(dB, control.StateCurrent)},
			LastSwap: &control.SwapResult{Op: control.OpSwap, From: dA, To: dB}}, last: report(Target{Ref: ref(dB), Digest: dB, Percent: 100}, splicev1.SwapReady), want: actApply},
		{name: "host restarted and lost the version", target: swapA, st: control.Status{Current: dB, Versions: []control.VersionStatus{loaded(dB, control.StateCurrent)}}, last: report(swapA, splicev1.SwapReady), want: actApply},
		{name: "canary in place", target: canaryA, st: control.Status{Current: dB, Canary: dA, CanaryPercent: 20}, want: actReady},
		{name: "canary share differs", target: canaryA, st: control.Status{Current: dB, Canary: dA, CanaryPercent: 50, Versions: []control.VersionStatus{loaded(dA, control.StateCanary)}}, want: actApply},
		{name: "full swap wanted while a canary runs", target: swapA, st: control.Status{Current: dB, Canary: dA, CanaryPercent: 20, Versions: []control.VersionStatus{loaded(dA, control.StateCanary)}}, want: actApply},
		{name: "current with a stray canary is not the target", target: swapA, st: control.Status{Current: dA, Canary: dC, CanaryPercent: 20}, want: actApply},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, reason, msg := decide(tt.target, &tt.st, tt.last)
			if got != tt.want || reason != tt.reason {
				t.Fatalf("decide = %v %q (%s); want %v %q", got, reason, msg, tt.want, tt.reason)
			}
			if got == actRolledBack && msg == "" {
				t.Fatal("a rollback needs a message saying what happened")
			}
		})
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		got  failure
		want failure
	}{
		{"pull: registry down", classifyPull(&transport.Error{StatusCode: 503}), failure{splicev1.SwapPulling, ReasonRetrying, true}},
		{"pull: not found", classifyPull(&transport.Error{StatusCode: 404}), failure{splicev1.SwapFailed, ReasonArtifactNotFound, false}},
		{"pull: denied", classifyPull(&transport.Error{StatusCode: 401}), failure{splicev1.SwapFailed, ReasonRegistryDenied, false}},
		{"pull: tampered", classifyPull(artifact.ErrDigestMismatch), failure{splicev1.SwapFailed, ReasonDigestMismatch, false}},
		{"pull: too large", classifyPull(artifact.ErrTooLarge), failure{splicev1.SwapFailed, ReasonArtifactTooLarge, false}},
		{"pull: conflict", classifyPull(artifact.ErrFileConflict), failure{splicev1.SwapFailed, ReasonPluginFileConflict, false}},
		{"host: no answer", classifyHost(errors.New("dial unix: connection refused")), failure{splicev1.SwapSwapping, ReasonHostUnavailable, true}},
		{"host: re-executing", classifyHost(control.Errorf(control.CodeHandoff, "busy")), failure{splicev1.SwapSwapping, ReasonRetrying, true}},
		{"host: init panic", classifyHost(control.Errorf(control.CodeLoadFailed, "load /s/x.so: plugin load failed: init of /s/x.so panicked: boom")), failure{splicev1.SwapFailed, ReasonInitPanic, false}},
		{"host: bad symbol", classifyHost(control.Errorf(control.CodeLoadFailed, "plugin load failed: symbol Plugin has type *greeter.Greeter; want func() greeter.Greeter")), failure{splicev1.SwapFailed, ReasonSymbolLookupFailed, false}},
		{"host: other load failure", classifyHost(control.Errorf(control.CodeLoadFailed, "plugin load failed: plugin.Open: realloc")), failure{splicev1.SwapFailed, ReasonLoadFailed, false}},
		{"host: preflight", classifyHost(control.Errorf(control.CodePreflight, "load /s: preflight refused the plugin: PackageHashMismatch: package x differs")), failure{splicev1.SwapIncompatible, "PackageHashMismatch", false}},
		{"host: preflight, unparsable", classifyHost(control.Errorf(control.CodePreflight, "nope")), failure{splicev1.SwapIncompatible, ReasonPreflightRefused, false}},
		{"host: API major", classifyHost(control.Errorf(control.CodeAPIMajor, "2.0.0")), failure{splicev1.SwapFailed, "APIMajorChange", false}},
		{"host: path tried", classifyHost(control.Errorf(control.CodePathTried, "x")), failure{splicev1.SwapFailed, "PathAlreadyTried", false}},
		// An older host library: only the message.
		{"version: preflight", classifyVersion(control.VersionStatus{Error: "preflight refused the plugin: DuplicatePluginPath: x"}), failure{splicev1.SwapIncompatible, "DuplicatePluginPath", false}},
		{"version: API major", classifyVersion(control.VersionStatus{Error: "host API 1.0.0, plugin API 2.0.0: plugin API major version change refused"}), failure{splicev1.SwapFailed, "APIMajorChange", false}},
		{"version: init panic", classifyVersion(control.VersionStatus{Error: "plugin load failed: init of /s/x.so panicked: boom"}), failure{splicev1.SwapFailed, ReasonInitPanic, false}},
		// The host's code and reason win over any message.
		{"host reason: init panic", classifyHost(&control.Error{Code: control.CodeLoadFailed, Reason: ReasonInitPanic, Message: "anything"}), failure{splicev1.SwapFailed, ReasonInitPanic, false}},
		{"host reason: preflight", classifyHost(&control.Error{Code: control.CodePreflight, Reason: "GoVersionMismatch", Message: "anything"}), failure{splicev1.SwapIncompatible, "GoVersionMismatch", false}},
		{"host reason: not CamelCase", classifyHost(&control.Error{Code: control.CodeLoadFailed, Reason: "oops!", Message: "init of x panicked"}), failure{splicev1.SwapFailed, ReasonInitPanic, false}},
		{"version code: preflight", classifyVersion(control.VersionStatus{ErrorCode: control.CodePreflight, ErrorReason: "PackageHashMismatch", Error: "x"}), failure{splicev1.SwapIncompatible, "PackageHashMismatch", false}},
		{"version code: symbol", classifyVersion(control.VersionStatus{ErrorCode: control.CodeLoadFailed, ErrorReason: ReasonSymbolLookupFailed, Error: "x"}), failure{splicev1.SwapFailed, ReasonSymbolLookupFailed, false}},
		{"version code: API major", classifyVersion(control.VersionStatus{ErrorCode: control.CodeAPIMajor, Error: "x"}), failure{splicev1.SwapFailed, "APIMajorChange", false}},
		{"version code: internal is final", classifyVersion(control.VersionStatus{ErrorCode: control.CodeInternal, Error: "x"}), failure{splicev1.SwapFailed, ReasonLoadFailed, false}},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: %+v, want %+v", tt.name, tt.got, tt.want)
		}
	}
}

func encode(t *testing.T, r *splicev1.PodReport) string {
	t.Helper()
	s, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

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
		{"desired being brought in, nothing serves", desired, control.Status{HostGoVersion: "go1.26.8"}, false, "not the desired"},
		{"desired pulling, old version serves", with(desired, splicev1.AnnotationReport, encode(t, newReport(tA, splicev1.SwapPulling, "", nil, &control.Status{Current: dB}))), control.Status{Current: dB}, true, "while"},
		{"desired failed, old version serves", with(desired, splicev1.AnnotationReport, encode(t, newReport(tA, splicev1.SwapFailed, ReasonInitPanic, errors.New("boom"), &control.Status{Current: dB}))), control.Status{Current: dB}, false, "not the desired"},
		{"desired incompatible, old version serves", with(desired, splicev1.AnnotationReport, encode(t, newReport(tA, splicev1.SwapIncompatible, "PackageHashMismatch", errors.New("x"), &control.Status{Current: dB}))), control.Status{Current: dB}, false, "not the desired"},
		{"another target failed, this one in progress", with(desired, splicev1.AnnotationReport, encode(t, newReport(Target{Ref: ref(dB), Digest: dB, Percent: 100}, splicev1.SwapFailed, ReasonInitPanic, errors.New("boom"), nil))), control.Status{Current: dB}, true, "while"},
		{"desired reported ready, routing moved", with(desired, splicev1.AnnotationReport, encode(t, newReport(tA, splicev1.SwapReady, "", nil, &control.Status{Current: dA}))), control.Status{Current: dB}, false, "not the desired"},
		{"toolchain differs while swapping", with(desired, splicev1.AnnotationGoVersion, "1.26.9"), control.Status{Current: dB, HostGoVersion: "go1.26.8"}, false, "pins go1.26.9"},
		{"toolchain matches (CompilerVersion form)", with(desired, splicev1.AnnotationGoVersion, "1.26.8"), control.Status{Current: dA, HostGoVersion: "go1.26.8"}, true, "serves"},
		{"toolchain matches (go form)", with(desired, splicev1.AnnotationGoVersion, "go1.26.8"), control.Status{Current: dA, HostGoVersion: "go1.26.8"}, true, "serves"},
		{"toolchain differs", with(desired, splicev1.AnnotationGoVersion, "1.26.9"), control.Status{Current: dA, HostGoVersion: "go1.26.8"}, false, "pins go1.26.9"},
		{"nothing desired, something serves", nil, control.Status{Current: dB}, true, "no desired"},
		{"nothing desired, nothing serves", nil, control.Status{}, false, "serves no plugin"},
		{"malformed", map[string]string{splicev1.AnnotationDesiredArtifact: "r/x:latest"}, control.Status{Current: dA}, false, "tag"},
	}
	for _, tt := range tests {
		ok, why := Readiness(tt.ann, &tt.st)
		if ok != tt.want || !strings.Contains(why, tt.why) {
			t.Errorf("%s: Readiness = %v %q; want %v mentioning %q", tt.name, ok, why, tt.want, tt.why)
		}
	}
}

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
		if c := conditionFor(r); c.Status != corev1.ConditionFalse || c.Reason != string(r.State) {
			t.Errorf("condition for %s: %+v", r.State, c)
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
