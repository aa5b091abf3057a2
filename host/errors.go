package host

import (
	"errors"
	"fmt"
)

// Errors the slot returns, wrapped with what was being done. Test with errors.Is; the control
// endpoint maps each to a control.Code.
var (
	// ErrNoVersion: a call arrived before any version was swapped in.
	ErrNoVersion = errors.New("no plugin version is serving")
	// ErrPathTried: the file was already presented to Load in this process. A path is tried
	// at most once: a failed path may hang plugin.Open forever, and a loaded one returns the
	// old plugin. Write every version to its own file.
	ErrPathTried = errors.New("plugin path already tried in this process")
	// ErrDigestInUse: another file was already loaded under the digest.
	ErrDigestInUse = errors.New("digest already names a loaded version")
	// ErrUnknownDigest: no version was loaded under the digest.
	ErrUnknownDigest = errors.New("no version loaded under this digest")
	// ErrPreflight: the preflight predicts that opening the file would fail, crash the
	// process, or load an unsupported build.
	ErrPreflight = errors.New("preflight refused the plugin")
	// ErrLoad: plugin.Open, the plugin's init, the symbol lookup or its type check failed.
	ErrLoad = errors.New("plugin load failed")
	// ErrAPIMajor: the plugin's API major version differs from what it would replace.
	ErrAPIMajor = errors.New("plugin API major version change refused")
	// ErrAPIMinor: the plugin's API minor version differs and consent was not given.
	ErrAPIMinor = errors.New("plugin API minor version change needs consent")
	// ErrNoPrevious: a rollback found nothing to go back to.
	ErrNoPrevious = errors.New("no previous version to roll back to")
	// ErrNotServable: the version failed to load, or the request would not change anything
	// (it is already current).
	ErrNotServable = errors.New("version cannot serve")
	// ErrNoHandoff: a re-exec was asked of a slot created without a Handoff, or a hand-off
	// is already running.
	ErrNoHandoff = errors.New("re-exec hand-off unavailable")
	// ErrPathOutside: a control request named a file outside the shared directory.
	ErrPathOutside = errors.New("path is outside the shared directory")
	// ErrPathNotFound: a control request named a file that does not exist.
	ErrPathNotFound = errors.New("plugin file not found")
)

// PanicError is what a call through the slot returns when the plugin panicked. The panic was
// recovered on the calling goroutine and counted against the version.
type PanicError struct {
	// Digest names the version that panicked.
	Digest string
	// Value is what was passed to panic.
	Value any
	// Stack is the panicking goroutine's stack.
	Stack []byte
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("plugin %s panicked: %v", e.Digest, e.Value)
}

// Reasons refine ErrLoad and ErrPreflight for machines (the preflight's own reasons, such as
// PackageHashMismatch, refine ErrPreflight too). The control endpoint sends them beside the
// code, and a failed version's status carries them, so that an agent never has to read
// messages.
const (
	// ReasonInitPanic: the plugin's init panicked inside plugin.Open.
	ReasonInitPanic = "InitPanic"
	// ReasonSymbolLookupFailed: the constructor or API version symbol is missing, has the
	// wrong type, or its constructor panicked or returned nil.
	ReasonSymbolLookupFailed = "SymbolLookupFailed"
	// ReasonLoadFailed: plugin.Open failed otherwise, or did not return in time.
	ReasonLoadFailed = "LoadFailed"
	// ReasonPreflightRefused: the preflight could not read the file's build facts.
	ReasonPreflightRefused = "PreflightRefused"
)

// reasonError attaches a reason to an error and unwraps to it.
type reasonError struct {
	reason string
	err    error
}

func (e *reasonError) Error() string { return e.err.Error() }
func (e *reasonError) Unwrap() error { return e.err }

func withReason(reason string, err error) error { return &reasonError{reason: reason, err: err} }

// Reason returns the CamelCase reason attached to err, or "" when it has none.
func Reason(err error) string {
	var re *reasonError
	if errors.As(err, &re) {
		return re.reason
	}
	return ""
}
