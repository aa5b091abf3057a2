package sidecar

import (
	"errors"
	"net/http"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/artifact"
	"github.com/splice-dev/splice/host/control"
)

// Reasons the agent gives in the report (PodReport.Reason) besides the preflight's own
// (preflight.PackageHashMismatch, preflight.GoVersionMismatch, ...) for Incompatible, and the
// host's control codes (control.CodePathTried, ...) for requests the host refused.
const (
	// ReasonInvalidDesiredArtifact: the desired-state annotations are malformed (not pinned
	// by digest, a bad traffic percent, a split without a stable artifact). Failed. It is the
	// pod protocol's splicev1.ReasonInvalidDesiredArtifact.
	ReasonInvalidDesiredArtifact = splicev1.ReasonInvalidDesiredArtifact
	// ReasonHostUnavailable: the host does not answer on its control socket; retried.
	ReasonHostUnavailable = "HostUnavailable"
	// ReasonRetrying: a step failed in a way worth retrying (network, registry 5xx, a host
	// busy re-executing); the report's state says which step.
	ReasonRetrying = "Retrying"
	// ReasonArtifactNotFound: the registry has no such manifest. Failed.
	ReasonArtifactNotFound = "ArtifactNotFound"
	// ReasonRegistryDenied: the registry refused the agent's credentials. Failed.
	ReasonRegistryDenied = "RegistryDenied"
	// ReasonDigestMismatch: the registry sent content that does not match its digest. Failed.
	ReasonDigestMismatch = "DigestMismatch"
	// ReasonArtifactTooLarge: the plugin layer is over --max-plugin-bytes. Failed.
	ReasonArtifactTooLarge = "ArtifactTooLarge"
	// ReasonInvalidArtifact: not a Splice plugin artifact, or its config lies about it. Failed.
	ReasonInvalidArtifact = "InvalidArtifact"
	// ReasonPluginFileConflict: the shared volume holds another file under the artifact's
	// file name; it is never replaced (a host may have it loaded). Failed.
	ReasonPluginFileConflict = "PluginFileConflict"
	// ReasonPullFailed: any other registry failure. Failed.
	ReasonPullFailed = "PullFailed"
	// ReasonPreflightFactsUnavailable: the build facts of a plugin the host already tried
	// cannot be read, so the preflight cannot be complete. Failed.
	ReasonPreflightFactsUnavailable = "PreflightFactsUnavailable"
	// ReasonPreflightRefused: the host's own preflight refused a plugin the agent's passed
	// (their facts differ). Incompatible.
	ReasonPreflightRefused = "PreflightRefused"
	// ReasonInitPanic: the plugin's init panicked inside plugin.Open. Failed.
	ReasonInitPanic = "InitPanic"
	// ReasonSymbolLookupFailed: the plugin lacks the constructor or API version symbol, or
	// one has the wrong type. Failed.
	ReasonSymbolLookupFailed = "SymbolLookupFailed"
	// ReasonLoadFailed: plugin.Open failed otherwise. Failed.
	ReasonLoadFailed = "LoadFailed"
	// ReasonHostRolledBack: the host rolled the version back on its own (its panics passed
	// the threshold). RolledBack.
	ReasonHostRolledBack = "HostRolledBack"
	// ReasonRoutedAway: the version served as desired, and then something other than this
	// agent changed the host's routing. RolledBack.
	ReasonRoutedAway = "RoutedAway"
	// ReasonHostCrashed: the host process died while the agent was bringing the version in
	// (opening it, or routing calls to it), and the restarted host does not have it. Crashed;
	// the version is never loaded again in the pod.
	ReasonHostCrashed = "HostCrashed"
	// ReasonHostLimitsRefused: the host refused the memory bound the pod names
	// (splicev1.AnnotationMaxLoadedVersions); retried, nothing is loaded meanwhile.
	ReasonHostLimitsRefused = "HostLimitsRefused"
	// ReasonMinorAPIChangeNotAllowed and ReasonMajorAPIChange: the artifact's plugin API step
	// from what the host serves is refused, by the agent before anything is loaded or by the
	// host. Incompatible.
	ReasonMinorAPIChangeNotAllowed = splicev1.ReasonMinorAPIChangeNotAllowed
	ReasonMajorAPIChange           = splicev1.ReasonMajorAPIChange
)

// failure is a classified error: the report state and reason it leads to, and whether it
// is worth retrying.
type failure struct {
	state  splicev1.SwapState
	reason string
	retry  bool
}

// classifyPull maps an artifact.Pull error.
func classifyPull(err error) failure {
	if artifact.Temporary(err) {
		return failure{splicev1.SwapPulling, ReasonRetrying, true}
	}
	f := failure{state: splicev1.SwapFailed, reason: ReasonPullFailed}
	var te *transport.Error
	switch {
	case errors.Is(err, artifact.ErrNotPinned):
		f.reason = ReasonInvalidDesiredArtifact
	case errors.Is(err, artifact.ErrDigestMismatch):
		f.reason = ReasonDigestMismatch
	case errors.Is(err, artifact.ErrTooLarge):
		f.reason = ReasonArtifactTooLarge
	case errors.Is(err, artifact.ErrInvalidArtifact):
		f.reason = ReasonInvalidArtifact
	case errors.Is(err, artifact.ErrFileConflict):
		f.reason = ReasonPluginFileConflict
	case errors.As(err, &te) && te.StatusCode == http.StatusNotFound:
		f.reason = ReasonArtifactNotFound
	case errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden):
		f.reason = ReasonRegistryDenied
	}
	return f
}

// classifyHost maps an error from a control request (load, swap, route).
func classifyHost(err error) failure {
	var ce *control.Error
	if !errors.As(err, &ce) {
		// No answer at all: the socket is gone, the host is re-executing or busy past our
		// deadline. The next attempt reads the host's status first and resumes from there.
		return failure{splicev1.SwapSwapping, ReasonHostUnavailable, true}
	}
	switch ce.Code {
	case control.CodeInternal, control.CodeHandoff, control.CodeNotServable:
		// NotServable answers a swap to a version whose load has not finished (an agent
		// restarted mid-load); a version that failed is caught from the status before.
		return failure{splicev1.SwapSwapping, ReasonRetrying, true}
	case control.CodePreflight:
		return failure{splicev1.SwapIncompatible, hostReason(ce.Reason, ce.Message, preflightReason), false}
	case control.CodeLoadFailed:
		return failure{splicev1.SwapFailed, hostReason(ce.Reason, ce.Message, loadFailureReason), false}
	case control.CodeAPIMajor:
		return failure{splicev1.SwapIncompatible, ReasonMajorAPIChange, false}
	case control.CodeAPIMinor:
		return failure{splicev1.SwapIncompatible, ReasonMinorAPIChangeNotAllowed, false}
	}
	// The codes are CamelCase and say what the host refused (PathAlreadyTried,
	// PathOutsideSharedDir, ...).
	return failure{splicev1.SwapFailed, string(ce.Code), false}
}

// hostReason is the host's own CamelCase reason when it sends one (control.ErrorBody.Reason,
// control.VersionStatus.ErrorReason); hosts built with an older host library send none, and
// their message is read instead.
func hostReason(reason, msg string, fromMessage func(string) string) string {
	if splicev1.ValidReason(reason) {
		return reason
	}
	return fromMessage(msg)
}

// Messages of the host library's errors (host.ErrPreflight, host.ErrAPIMajor) as an older host
// library writes them, without a reason. The agent does not link the host library (it would
// pull package plugin into the sidecar), hence the copies.
const (
	hostPreflightText = "preflight refused the plugin"
	hostAPIMajorText  = "plugin API major version change refused"
)

// classifyVersion maps the error recorded for a version the host already tried and failed:
// by its code and reason when the host gives them, as classifyHost does, else by its message.
func classifyVersion(v control.VersionStatus) failure {
	if v.ErrorCode != "" {
		f := classifyHost(&control.Error{Code: v.ErrorCode, Reason: v.ErrorReason, Message: v.Error})
		if f.retry {
			// The host tries a version once: whatever failed it, it stays failed.
			f = failure{splicev1.SwapFailed, ReasonLoadFailed, false}
		}
		return f
	}
	msg := v.Error
	switch {
	case strings.Contains(msg, hostPreflightText):
		return failure{splicev1.SwapIncompatible, preflightReason(msg), false}
	case strings.Contains(msg, hostAPIMajorText):
		return failure{splicev1.SwapIncompatible, ReasonMajorAPIChange, false}
	}
	return failure{splicev1.SwapFailed, loadFailureReason(msg), false}
}

// preflightRefused reports whether the host's own preflight refused a version it tried, so that
// plugin.Open never ran on it. Every other failed version was opened (the API version check
// comes after plugin.Open) and its packages are in the process.
func preflightRefused(v control.VersionStatus) bool {
	if v.ErrorCode != "" {
		return v.ErrorCode == control.CodePreflight
	}
	return strings.Contains(v.Error, hostPreflightText)
}

var verdictReasonRE = regexp.MustCompile(hostPreflightText + `: ([A-Z][A-Za-z0-9]{0,63}):`)

// preflightReason extracts the first reason of the host's verdict ("...: PackageHashMismatch:
// package ...") so that a host refusal reads like an agent refusal.
func preflightReason(msg string) string {
	if m := verdictReasonRE.FindStringSubmatch(msg); m != nil {
		return m[1]
	}
	return ReasonPreflightRefused
}

func loadFailureReason(msg string) string {
	switch {
	case strings.Contains(msg, "init of") && strings.Contains(msg, "panicked"):
		return ReasonInitPanic
	case strings.Contains(msg, "symbol") || strings.Contains(msg, "declares no API version"):
		return ReasonSymbolLookupFailed
	}
	return ReasonLoadFailed
}
