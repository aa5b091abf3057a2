package control

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

const (
	// SocketName is the file name of the control socket inside the shared directory.
	SocketName = "splice-host.sock"

	// MaxRequestBytes bounds a request body. Every request is a few hundred bytes; the bound
	// keeps a hostile peer from making the host buffer arbitrary input.
	MaxRequestBytes = 64 << 10

	// MaxPathBytes bounds a plugin path in a request (PATH_MAX on Linux).
	MaxPathBytes = 4096

	// DigestExpr is an artifact digest, unanchored, for the patterns that embed one (a reference
	// pinned by digest, in the API package).
	DigestExpr = `sha256:[a-f0-9]{64}`
	// DigestPattern is the form every artifact digest takes. It is the project's one statement
	// of that rule: the API package (its pod protocol, the CRD's schema, which a test holds to
	// it), the agent, the builder and the host library all use it, and this package can be
	// imported by all of them where the API package could not (the host library must not link
	// Kubernetes).
	DigestPattern = `^` + DigestExpr + `$`

	// APIVersionPattern is the form of a plugin API version: a semantic version such as 1.4.0,
	// with an optional leading v and pre-release. It is the rule of the CompilerVersion API's
	// spec.plugin.apiVersion (whose marker repeats it as a literal); the builder checks what a
	// plugin declares with it, and the artifact package what a config blob says.
	APIVersionPattern = `^v?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$`
	// MaxAPIVersionBytes bounds a plugin API version: the CompilerVersion API holds at most that
	// many bytes (spec.plugin.apiVersion, status.artifact.apiVersion).
	MaxAPIVersionBytes = 64
)

var (
	digestRE     = regexp.MustCompile(DigestPattern)
	apiVersionRE = regexp.MustCompile(APIVersionPattern)
)

// ValidDigest reports whether d is "sha256:" followed by 64 lower-case hex digits.
func ValidDigest(d string) bool { return digestRE.MatchString(d) }

// ValidAPIVersion reports whether v matches APIVersionPattern within MaxAPIVersionBytes.
func ValidAPIVersion(v string) bool {
	return len(v) <= MaxAPIVersionBytes && apiVersionRE.MatchString(v)
}

// Snapshot is a reading of the host's runtime/metrics (and RSS) taken around a load or swap.
// Its JSON field names are those of api/v1alpha1.RuntimeSnapshot, which the agent converts it
// to; the host library must not import the API package (applications do not link Kubernetes).
type Snapshot struct {
	// gcCycles is /gc/cycles/total:gc-cycles.
	GCCycles uint64 `json:"gcCycles"`
	// heapLiveBytes is /gc/heap/live:bytes.
	HeapLiveBytes uint64 `json:"heapLiveBytes"`
	// heapGoalBytes is /gc/heap/goal:bytes.
	HeapGoalBytes uint64 `json:"heapGoalBytes"`
	// scanGlobalsBytes is /gc/scan/globals:bytes; it grows with every plugin opened.
	ScanGlobalsBytes uint64 `json:"scanGlobalsBytes"`
	// goroutines is /sched/goroutines:goroutines.
	Goroutines uint64 `json:"goroutines"`
	// gcPauses is the number of GC stop-the-world pauses in /sched/pauses/total/gc:seconds.
	GCPauses uint64 `json:"gcPauses"`
	// gcPauseP99Seconds is the 99th percentile of those pauses (upper bound of its bucket).
	GCPauseP99Seconds float64 `json:"gcPauseP99Seconds"`
	// rssBytes is the resident set size from /proc/self/statm.
	RSSBytes uint64 `json:"rssBytes,omitempty"`
}

// VersionState is where a loaded (or refused) plugin version stands in the host.
type VersionState string

const (
	// StateLoaded: opened and verified; receives no calls.
	StateLoaded VersionState = "Loaded"
	// StateCurrent: receives every call not routed to the canary.
	StateCurrent VersionState = "Current"
	// StateCanary: receives the canary share of calls.
	StateCanary VersionState = "Canary"
	// StateRetired: was current or canary; calls that started on it may still be draining.
	StateRetired VersionState = "Retired"
	// StateFailed: the load failed (preflight, open, init panic, symbol or API check); the path
	// is never tried again in this process. Error says why.
	StateFailed VersionState = "Failed"
)

// VersionStatus describes one plugin version the host has tried.
type VersionStatus struct {
	// digest is the artifact digest the version was loaded under; it names the version in
	// every other request. The host does not interpret it beyond its form and uniqueness.
	Digest string `json:"digest"`
	// path is the plugin file, symlinks resolved.
	Path string `json:"path"`
	// fileDigest is the sha256 of the plugin file as the host read it before opening it.
	FileDigest string `json:"fileDigest,omitempty"`
	// aliases are the other digests that name this same build: an artifact's manifest
	// digest recorded when its file held the same bytes (the same fileDigest) as this
	// already-loaded version. Every request accepts them in place of digest.
	Aliases []string `json:"aliases,omitempty"`
	// pluginPath is the Go plugin path (the identity plugin.Open caches by).
	PluginPath string `json:"pluginPath,omitempty"`
	// apiVersion is the semantic version the plugin declares for the interface it implements.
	APIVersion string `json:"apiVersion,omitempty"`
	// state is where the version stands.
	State VersionState `json:"state"`
	// error is why a Failed version failed.
	Error string `json:"error,omitempty"`
	// errorCode and errorReason say why a Failed version failed, for machines, as a refused
	// load request would have (ErrorBody.Code and Reason).
	ErrorCode   Code   `json:"errorCode,omitempty"`
	ErrorReason string `json:"errorReason,omitempty"`
	// inFlight is the number of calls running on the version now.
	InFlight int64 `json:"inFlight"`
	// calls, errors and panics count calls made through the host library on this version.
	Calls  uint64 `json:"calls"`
	Errors uint64 `json:"errors"`
	Panics uint64 `json:"panics"`
	// loadedAt is when the load finished; loadSeconds how long open and verification took.
	LoadedAt    time.Time `json:"loadedAt"`
	LoadSeconds float64   `json:"loadSeconds"`
}

// Operation names what changed the routing in a SwapResult.
type Operation string

const (
	OpSwap         Operation = "swap"
	OpRollback     Operation = "rollback"
	OpAutoRollback Operation = "auto-rollback"
	OpRoute        Operation = "route"
	OpRestore      Operation = "restore"
)

// SwapResult is the outcome of one change of what serves calls.
type SwapResult struct {
	// op is what changed the routing.
	Op Operation `json:"op"`
	// from and to are the current digests before and after (equal for a route change).
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
	// canary and canaryPercent are the routing split after the change (empty/0: none).
	Canary        string `json:"canary,omitempty"`
	CanaryPercent int    `json:"canaryPercent,omitempty"`
	// reason says why (for auto-rollback: the panic count that crossed the threshold).
	Reason string `json:"reason,omitempty"`
	// startedAt and seconds time the operation, load included when the request loaded too.
	StartedAt time.Time `json:"startedAt"`
	Seconds   float64   `json:"seconds"`
	// before and after are runtime snapshots around the operation.
	Before *Snapshot `json:"before,omitempty"`
	After  *Snapshot `json:"after,omitempty"`
	// gcDuringSwap is true when a GC cycle completed between before and after.
	GCDuringSwap bool `json:"gcDuringSwap"`
	// error is set when the operation failed; routing is then unchanged.
	Error string `json:"error,omitempty"`
}

// HandoffStatus describes the host's re-exec history in this container.
type HandoffStatus struct {
	// generation counts re-execs since the process started (0: never re-executed).
	Generation int `json:"generation"`
	// reason is why the last re-exec happened.
	Reason string `json:"reason,omitempty"`
	// drainSeconds is how long the old image waited for open connections to close.
	DrainSeconds float64 `json:"drainSeconds,omitempty"`
	// execToServeSeconds is from the old image's exec call to the new image serving again.
	ExecToServeSeconds float64 `json:"execToServeSeconds,omitempty"`
	// inProgress is true while a hand-off is draining.
	InProgress bool `json:"inProgress,omitempty"`
	// lastError is why the last attempted hand-off did not happen (the host kept serving).
	LastError string `json:"lastError,omitempty"`
}

// Limits are the memory bounds past which the host re-execs itself.
type Limits struct {
	// maxVersions: re-exec when more plugin files than this have been opened (0: no bound).
	MaxVersions int `json:"maxVersions,omitempty"`
	// maxExtraRSSBytes: re-exec when RSS exceeds the baseline by more (0: no bound).
	MaxExtraRSSBytes uint64 `json:"maxExtraRSSBytes,omitempty"`
}

// Status is the host's state as the agent reports it.
type Status struct {
	// pid is the host's process ID; it survives re-execs.
	PID int `json:"pid"`
	// instance names this run of the host process: random, chosen when the process starts and
	// kept across its re-execs (the hand-off carries it). A container restart gives a new
	// one; that is how the agent tells a host that died from one that re-executed.
	Instance string `json:"instance,omitempty"`
	// hostGoVersion is the Go release the host was built with.
	HostGoVersion string `json:"hostGoVersion"`
	// apiVersion is the plugin API version the host was built against ("" if undeclared).
	APIVersion string `json:"apiVersion,omitempty"`
	// current is the digest serving calls ("" before the first swap).
	Current string `json:"current,omitempty"`
	// canary and canaryPercent describe a request-level canary split.
	Canary        string `json:"canary,omitempty"`
	CanaryPercent int    `json:"canaryPercent,omitempty"`
	// loadedVersions counts plugin files opened in this image, failed opens included: their
	// memory is never given back.
	LoadedVersions int `json:"loadedVersions"`
	// versions lists every version tried in this image, oldest first.
	Versions []VersionStatus `json:"versions"`
	// lastSwap is the most recent change of routing, failed ones included.
	LastSwap *SwapResult `json:"lastSwap,omitempty"`
	// rssBytes and baselineRSSBytes (before any plugin was opened in this image).
	RSSBytes         uint64 `json:"rssBytes"`
	BaselineRSSBytes uint64 `json:"baselineRSSBytes"`
	// limits are the configured memory bounds.
	Limits Limits `json:"limits"`
	// handoff describes re-execs; absent when the host was started without hand-off support.
	Handoff *HandoffStatus `json:"handoff,omitempty"`
}

// Version returns the status of the version with the given digest (or alias), or nil.
func (s *Status) Version(digest string) *VersionStatus {
	for i := range s.Versions {
		if s.Versions[i].Named(digest) {
			return &s.Versions[i]
		}
	}
	return nil
}

// IsCurrent reports whether digest names the current version (by its digest or an alias).
func (s *Status) IsCurrent(digest string) bool {
	if digest == "" || s.Current == "" {
		return false
	}
	v := s.Version(digest)
	return s.Current == digest || (v != nil && v.Digest == s.Current)
}

// IsCanary reports whether digest names the canary (by its digest or an alias).
func (s *Status) IsCanary(digest string) bool {
	if digest == "" || s.Canary == "" {
		return false
	}
	v := s.Version(digest)
	return s.Canary == digest || (v != nil && v.Digest == s.Canary)
}

// SameBuild returns the loaded (not failed) version whose file had the given sha256
// (FileDigest), or nil. A load of a file with those bytes, under any new digest, makes that
// digest an alias of this version instead of opening anything.
func (s *Status) SameBuild(fileDigest string) *VersionStatus {
	for i := range s.Versions {
		if v := &s.Versions[i]; fileDigest != "" && v.FileDigest == fileDigest && v.State != StateFailed {
			return v
		}
	}
	return nil
}

// Named reports whether digest names the version: its digest or one of its aliases.
func (v *VersionStatus) Named(digest string) bool {
	return digest != "" && (v.Digest == digest || slices.Contains(v.Aliases, digest))
}

// LoadRequest asks the host to open and verify a plugin file.
type LoadRequest struct {
	// path is the plugin file, absolute or relative to the shared directory. After symlinks
	// are resolved it must lie inside the shared directory. Every version needs its own file:
	// a path is tried at most once per process.
	Path string `json:"path"`
	// digest is the artifact digest that names this version from now on.
	Digest string `json:"digest"`
	// fileDigest, when set, is the sha256 the file must hold (an artifact's layer digest):
	// the host reads the file once into a private copy and refuses other bytes
	// (CodeFileDigestMismatch) before opening anything. Splice's agent always sets it.
	FileDigest string `json:"fileDigest,omitempty"`
	// swap makes the version current once it is loaded (the load-and-swap convenience).
	Swap bool `json:"swap,omitempty"`
	// allowMinor consents to a minor API version change (only with swap).
	AllowMinor bool `json:"allowMinor,omitempty"`
}

// LoadResponse is the result of a load.
type LoadResponse struct {
	// version is the loaded version.
	Version VersionStatus `json:"version"`
	// swap is the swap's result when the request asked for one.
	Swap *SwapResult `json:"swap,omitempty"`
}

// SwapRequest asks the host to make a loaded version current.
type SwapRequest struct {
	// digest names a loaded version.
	Digest string `json:"digest"`
	// allowMinor consents to a minor API version change from the current version.
	AllowMinor bool `json:"allowMinor,omitempty"`
}

// RollbackRequest asks the host to go back: it drops an active canary, or else makes the
// previous current version current again. It has no fields; send {}.
type RollbackRequest struct{}

// RouteRequest sets the request-level canary: percent of calls, chosen by a stable hash of the
// caller's key, go to the canary version; the rest to the current one. Percent 0 with an empty
// canary ends the canary.
type RouteRequest struct {
	// canary names a loaded version other than the current one.
	Canary string `json:"canary"`
	// percent is 0-100.
	Percent int `json:"percent"`
	// allowMinor consents to a minor API version change from the current version.
	AllowMinor bool `json:"allowMinor,omitempty"`
}

// LimitsRequest replaces the host's memory bounds (Status.Limits) from now on; the application's
// Options are the bounds until the first such request. It takes effect at the next routing
// change. Zero fields remove that bound.
type LimitsRequest struct {
	Limits Limits `json:"limits"`
}

// MaxLimitVersions bounds LimitsRequest.Limits.MaxVersions.
const MaxLimitVersions = 1000

// ReexecRequest asks the host to re-exec itself in place (same PID), handing its listeners to
// the new image, which then loads only the version it would roll back to and the current one
// (and a canary) — or, when path and digest are given, that version, with the one serving now
// as its rollback target and fallback (checked by preflight first).
type ReexecRequest struct {
	Path   string `json:"path,omitempty"`
	Digest string `json:"digest,omitempty"`
}

// ReexecResponse is sent before the hand-off starts; the host drains and execs right after.
type ReexecResponse struct {
	// accepted is true when the hand-off has started.
	Accepted bool `json:"accepted"`
	// generation is the generation the new image will have.
	Generation int `json:"generation"`
}

// Validate checks what can be checked without the host's file system.
func (r *LoadRequest) Validate() error {
	if err := validatePath("path", r.Path, true); err != nil {
		return err
	}
	if err := validateDigest("digest", r.Digest); err != nil {
		return err
	}
	if r.FileDigest != "" {
		if err := validateDigest("fileDigest", r.FileDigest); err != nil {
			return err
		}
	}
	if r.AllowMinor && !r.Swap {
		return fmt.Errorf("allowMinor is only meaningful with swap: true (a load alone changes nothing that needs consent)")
	}
	return nil
}

// Validate checks the request's form.
func (r *SwapRequest) Validate() error { return validateDigest("digest", r.Digest) }

// Validate checks the request's form.
func (r *RollbackRequest) Validate() error { return nil }

// Validate checks the request's form.
func (r *RouteRequest) Validate() error {
	if r.Percent < 0 || r.Percent > 100 {
		return fmt.Errorf("percent %d must be between 0 and 100", r.Percent)
	}
	if r.Canary == "" {
		if r.Percent != 0 {
			return fmt.Errorf("percent %d needs a canary digest; send percent 0 to end the canary", r.Percent)
		}
		return nil
	}
	return validateDigest("canary", r.Canary)
}

// Validate checks the request's form.
func (r *LimitsRequest) Validate() error {
	if m := r.Limits.MaxVersions; m != 0 && (m < 2 || m > MaxLimitVersions) {
		return fmt.Errorf("limits.maxVersions %d must be 0 (no bound) or from 2 to %d: a host must keep the version to roll back to", m, MaxLimitVersions)
	}
	return nil
}

// Validate checks the request's form.
func (r *ReexecRequest) Validate() error {
	if r.Path == "" && r.Digest == "" {
		return nil
	}
	if err := validatePath("path", r.Path, true); err != nil {
		return fmt.Errorf("%w (path and digest go together: give both to re-exec into a new version, or neither)", err)
	}
	if err := validateDigest("digest", r.Digest); err != nil {
		return fmt.Errorf("%w (path and digest go together: give both to re-exec into a new version, or neither)", err)
	}
	return nil
}

func validateDigest(field, d string) error {
	if !ValidDigest(d) {
		return fmt.Errorf("%s %q must match %s", field, Truncate(d, 80), DigestPattern)
	}
	return nil
}

func validatePath(field, p string, required bool) error {
	switch {
	case p == "" && required:
		return fmt.Errorf("%s is required: the plugin file inside the shared directory", field)
	case len(p) > MaxPathBytes:
		return fmt.Errorf("%s is %d bytes; at most %d", field, len(p), MaxPathBytes)
	case strings.IndexByte(p, 0) >= 0:
		return fmt.Errorf("%s contains a NUL byte", field)
	case p != "" && filepath.Base(p) == SocketName:
		return fmt.Errorf("%s names the control socket, not a plugin file", field)
	}
	return nil
}
