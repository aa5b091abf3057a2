package sidecar

import (
	"errors"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/artifact"
	"github.com/splice-dev/splice/host/control"
)

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
		// The host's API check backs the agent's up, with the same states and reasons.
		{"host: API major", classifyHost(control.Errorf(control.CodeAPIMajor, "2.0.0")), failure{splicev1.SwapIncompatible, splicev1.ReasonMajorAPIChange, false}},
		{"host: API minor without consent", classifyHost(control.Errorf(control.CodeAPIMinor, "1.0.0 -> 1.1.0")), failure{splicev1.SwapIncompatible, splicev1.ReasonMinorAPIChangeNotAllowed, false}},
		{"host: path tried", classifyHost(control.Errorf(control.CodePathTried, "x")), failure{splicev1.SwapFailed, "PathAlreadyTried", false}},
		// An older host library: only the message.
		{"version: preflight", classifyVersion(control.VersionStatus{Error: "preflight refused the plugin: DuplicatePluginPath: x"}), failure{splicev1.SwapIncompatible, "DuplicatePluginPath", false}},
		{"version: API major", classifyVersion(control.VersionStatus{Error: "host API 1.0.0, plugin API 2.0.0: plugin API major version change refused"}), failure{splicev1.SwapIncompatible, splicev1.ReasonMajorAPIChange, false}},
		{"version: init panic", classifyVersion(control.VersionStatus{Error: "plugin load failed: init of /s/x.so panicked: boom"}), failure{splicev1.SwapFailed, ReasonInitPanic, false}},
		// The host's code and reason win over any message.
		{"host reason: init panic", classifyHost(&control.Error{Code: control.CodeLoadFailed, Reason: ReasonInitPanic, Message: "anything"}), failure{splicev1.SwapFailed, ReasonInitPanic, false}},
		{"host reason: preflight", classifyHost(&control.Error{Code: control.CodePreflight, Reason: "GoVersionMismatch", Message: "anything"}), failure{splicev1.SwapIncompatible, "GoVersionMismatch", false}},
		{"host reason: not CamelCase", classifyHost(&control.Error{Code: control.CodeLoadFailed, Reason: "oops!", Message: "init of x panicked"}), failure{splicev1.SwapFailed, ReasonInitPanic, false}},
		{"version code: preflight", classifyVersion(control.VersionStatus{ErrorCode: control.CodePreflight, ErrorReason: "PackageHashMismatch", Error: "x"}), failure{splicev1.SwapIncompatible, "PackageHashMismatch", false}},
		{"version code: symbol", classifyVersion(control.VersionStatus{ErrorCode: control.CodeLoadFailed, ErrorReason: ReasonSymbolLookupFailed, Error: "x"}), failure{splicev1.SwapFailed, ReasonSymbolLookupFailed, false}},
		{"version code: API major", classifyVersion(control.VersionStatus{ErrorCode: control.CodeAPIMajor, Error: "x"}), failure{splicev1.SwapIncompatible, splicev1.ReasonMajorAPIChange, false}},
		{"version code: internal is final", classifyVersion(control.VersionStatus{ErrorCode: control.CodeInternal, Error: "x"}), failure{splicev1.SwapFailed, ReasonLoadFailed, false}},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: %+v, want %+v", tt.name, tt.got, tt.want)
		}
	}
}

// TestPreflightRefusedVersions: only a version the host's preflight refused stayed out of
// plugin.Open; one refused for its API version was opened first, and its packages are in the
// process for every later preflight to see.
func TestPreflightRefusedVersions(t *testing.T) {
	for _, tt := range []struct {
		v    control.VersionStatus
		want bool
	}{
		{control.VersionStatus{ErrorCode: control.CodePreflight, ErrorReason: "PackageHashMismatch"}, true},
		{control.VersionStatus{Error: "preflight refused the plugin: DuplicatePluginPath: x"}, true},
		{control.VersionStatus{ErrorCode: control.CodeAPIMajor, Error: "major"}, false},
		{control.VersionStatus{Error: "host API 1.0.0, plugin API 2.0.0: plugin API major version change refused"}, false},
		{control.VersionStatus{ErrorCode: control.CodeLoadFailed, ErrorReason: ReasonInitPanic}, false},
	} {
		if got := preflightRefused(tt.v); got != tt.want {
			t.Errorf("preflightRefused(%+v) = %v; want %v", tt.v, got, tt.want)
		}
	}
}
