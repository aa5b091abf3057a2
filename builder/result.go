package builder

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/splice-dev/splice/artifact"
	"github.com/splice-dev/splice/host/control"
)

// Result is what a successful build reports: printed as JSON on standard output and written to
// the termination message path, where the build controller reads it. Its JSON form is a
// contract between the builder in the Job and the controller that may run another version.
type Result struct {
	// Ref is the pushed artifact, pinned by digest: registry/repo@sha256:<hex>. Empty when
	// nothing was pushed (no --repository).
	Ref string `json:"ref,omitempty"`
	// Digest is the artifact's manifest digest. Empty when nothing was pushed.
	Digest string `json:"digest,omitempty"`
	// GoVersion is the toolchain that built the plugin, e.g. "go1.26.8".
	GoVersion string `json:"goVersion"`
	// APIVersion is the plugin API version the plugin declares.
	APIVersion string `json:"apiVersion"`
	// PluginPath is the plugin's identity in a host process (unique per build inputs).
	PluginPath string `json:"pluginPath"`
	// SourceHash is the hash of the build inputs the plugin path is derived from.
	SourceHash string `json:"sourceHash"`
	// Revision is the source commit (full SHA) when built from git.
	Revision string `json:"revision,omitempty"`
	// BuiltAt is the time recorded in the artifact (the commit time for git builds, so a
	// rebuild of the same inputs yields the same digest).
	BuiltAt time.Time `json:"builtAt"`
	// BuildKey echoes --build-key: the controller's hash of the spec that asked for this build,
	// so a result can be matched to the request that produced it.
	BuildKey string `json:"buildKey,omitempty"`
	// Vulnerabilities are what the vulnerability scan found (--vuln-db); nil when none ran.
	Vulnerabilities *artifact.Vulnerabilities `json:"vulnerabilities,omitempty"`
	// Path is the plugin file left on disk (only with --output; never sent to the controller).
	Path string `json:"path,omitempty"`
	// Seconds is how long each step took (toolchain, source, inputs, copy, compile, facts,
	// push, output), for people and dashboards; nothing depends on it.
	Seconds map[string]float64 `json:"seconds,omitempty"`
}

// Failure is what a failed build reports, in the same places as Result.
type Failure struct {
	// Reason is one of the Reason constants.
	Reason string `json:"reason"`
	// Error says what went wrong and what to fix, with the tail of the tool's output.
	Error string `json:"error"`
	// BuildKey echoes --build-key.
	BuildKey string `json:"buildKey,omitempty"`
}

// Reasons a build fails with. Each is a CamelCase word the controller puts into the Built
// condition, so each names one thing the user has to fix.
const (
	// ReasonInvalidInput: the command line or the plugin's declarations are wrong.
	ReasonInvalidInput = "InvalidInput"
	// ReasonToolchainMismatch: the go command is not the exact release asked for, or missing.
	ReasonToolchainMismatch = "ToolchainMismatch"
	// ReasonSourceUnavailable: the git clone or checkout failed, or the source directory is
	// not usable.
	ReasonSourceUnavailable = "SourceUnavailable"
	// ReasonPackageInvalid: the package path does not name a main package in a module.
	ReasonPackageInvalid = "PackageInvalid"
	// ReasonCompileFailed: go build failed.
	ReasonCompileFailed = "CompileFailed"
	// ReasonSymbolNotFound: the plugin does not export the symbol hosts look up.
	ReasonSymbolNotFound = "SymbolNotFound"
	// ReasonSymbolTypeMismatch: the symbol is not the constructor hosts can use: not a
	// function, with parameters, not returning an interface, or (with a contract) not
	// exactly func() Contract.
	ReasonSymbolTypeMismatch = "SymbolTypeMismatch"
	// ReasonAPIVersionMismatch: the API version asked for differs from the one the plugin
	// declares, or the plugin declares none.
	ReasonAPIVersionMismatch = "APIVersionMismatch"
	// ReasonPushFailed: the artifact could not be pushed (credentials, network, registry).
	ReasonPushFailed = "PushFailed"
	// ReasonVulnerable: under the Block vulnerability policy, the plugin calls a known
	// vulnerability; nothing was pushed.
	ReasonVulnerable = "Vulnerable"
	// ReasonVulnScanFailed: the vulnerability scan could not run (the database unreachable or
	// malformed); nothing was pushed.
	ReasonVulnScanFailed = "VulnScanFailed"
	// ReasonInternal: anything else (a bug, a full disk).
	ReasonInternal = "Internal"
)

// KnownReasons are the reasons a Failure may carry.
var KnownReasons = map[string]bool{
	ReasonInvalidInput: true, ReasonToolchainMismatch: true, ReasonSourceUnavailable: true,
	ReasonPackageInvalid: true, ReasonCompileFailed: true, ReasonSymbolNotFound: true, ReasonSymbolTypeMismatch: true,
	ReasonAPIVersionMismatch: true, ReasonPushFailed: true, ReasonInternal: true,
	ReasonVulnerable: true, ReasonVulnScanFailed: true,
}

// Error is a build error with its Reason.
type Error struct {
	Reason string
	Err    error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func failf(reason, format string, args ...any) error {
	return &Error{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// ReasonOf returns the Reason of err, ReasonInternal when it carries none.
func ReasonOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ReasonInternal
}

// MaxTerminationMessageBytes is what the kubelet keeps of a termination message.
const MaxTerminationMessageBytes = 4096

// maxErrorBytes leaves room in the termination message for the JSON around the error.
const maxErrorBytes = 3400

// NewFailure turns err into a Failure whose JSON fits a termination message: a long error
// keeps its head (what failed) and its tail (the last lines of the tool's output). Bytes that
// are not UTF-8 become U+FFFD, as JSON would make them; the error is cut shorter than
// maxErrorBytes when JSON escapes (control characters such as a tool's colours) make it longer.
func NewFailure(err error, buildKey string) Failure {
	msg := strings.ToValidUTF8(err.Error(), "\uFFFD")
	f := Failure{Reason: ReasonOf(err), BuildKey: buildKey}
	for n := maxErrorBytes; ; n = n * 3 / 4 {
		f.Error = control.TruncateMiddle(msg, n, maxErrorHead(n))
		if b, err := encodeCompact(f); (err == nil && len(b) <= MaxTerminationMessageBytes) || n < 64 {
			return f
		}
	}
}

// maxErrorHead is the part of a long error of at most n bytes kept from its start, a third: the
// tail, the tool's last lines, usually says more.
func maxErrorHead(n int) int { return (n - len(control.ElisionMark)) / 3 }

var (
	goVersionRE  = regexp.MustCompile(`^go1\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$`)
	releaseRE    = regexp.MustCompile(`^1\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$`)
	sourceHashRE = regexp.MustCompile(`^[a-f0-9]{16,64}$`)
)

// SameAPIVersion reports whether two semantic versions are the same, ignoring a leading "v".
func SameAPIVersion(a, b string) bool {
	return strings.TrimPrefix(a, "v") == strings.TrimPrefix(b, "v")
}

// ValidAPIVersion reports whether v is a semantic version such as 1.4.0 (a leading v is
// allowed) of at most control.MaxAPIVersionBytes, the form the CompilerVersion API accepts.
func ValidAPIVersion(v string) bool { return control.ValidAPIVersion(v) }

// Validate checks a Result as a consumer must before trusting it: every field a host or the
// controller relies on is present and well formed. It does not know what was asked for; the
// controller compares that separately.
func (r *Result) Validate() error {
	var errs []error
	if r.Ref != "" || r.Digest != "" {
		if !control.ValidDigest(r.Digest) {
			errs = append(errs, fmt.Errorf("digest %q is not sha256:<64 hex>", r.Digest))
		}
		if !strings.HasSuffix(r.Ref, "@"+r.Digest) {
			errs = append(errs, fmt.Errorf("ref %q is not pinned by the digest %q", r.Ref, r.Digest))
		}
	}
	if !goVersionRE.MatchString(r.GoVersion) {
		errs = append(errs, fmt.Errorf("goVersion %q is not a Go release such as go1.26.8", r.GoVersion))
	}
	if !ValidAPIVersion(r.APIVersion) {
		errs = append(errs, fmt.Errorf("apiVersion %q is not a semantic version of at most %d bytes", r.APIVersion, control.MaxAPIVersionBytes))
	}
	if r.PluginPath == "" {
		errs = append(errs, errors.New("pluginPath is empty"))
	}
	if !sourceHashRE.MatchString(r.SourceHash) {
		errs = append(errs, fmt.Errorf("sourceHash %q is not lower-case hex", r.SourceHash))
	}
	if r.BuiltAt.IsZero() {
		errs = append(errs, errors.New("builtAt is missing"))
	}
	return errors.Join(errs...)
}

// ParseResult decodes and validates a Result from a termination message. Unknown fields are
// refused: a message that is not exactly a Result came from something else.
func ParseResult(msg string) (*Result, error) {
	if len(msg) > MaxTerminationMessageBytes {
		return nil, fmt.Errorf("build result is %d bytes, more than a termination message holds (%d)", len(msg), MaxTerminationMessageBytes)
	}
	var r Result
	if err := control.DecodeOne([]byte(msg), &r); err != nil {
		return nil, fmt.Errorf("decode build result: %w", err)
	}
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("build result: %w", err)
	}
	return &r, nil
}

// ParseFailure decodes a Failure from a termination message. It returns ok=false when the
// message is not one (for example the log tail the kubelet substitutes when the builder died
// before writing anything).
func ParseFailure(msg string) (f Failure, ok bool) {
	if err := control.DecodeOne([]byte(msg), &f); err != nil || !KnownReasons[f.Reason] || f.Error == "" {
		return Failure{}, false
	}
	return f, true
}

// encodeCompact is the termination message form: one line, no HTML escaping (the message is
// read by people in kubectl describe).
func encodeCompact(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}
