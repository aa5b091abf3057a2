package host

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/splice-dev/splice/host/control"
	"github.com/splice-dev/splice/host/preflight"
)

// Version is one plugin version the slot has tried. Its identity is its digest.
type Version struct {
	digest string
	path   string
	// openPath is the host's private copy of the file, which facts and plugin.Open read.
	openPath   string
	fileDigest string
	pluginPath string
	apiVersion string
	facts      *preflight.Facts

	loadedAt time.Time
	loadDur  time.Duration

	// Guarded by the slot's mu.
	// aliases are the other digests naming this build (see Slot.Load).
	aliases []string
	state   control.VersionState
	err     string
	// errCode and errReason are err's control code and reason.
	errCode   control.Code
	errReason string

	ctr    counters // calls running, calls and errors; see counters.go
	panics atomic.Uint64

	// panicBase is the panic count when the version last became routable; the rollback
	// threshold applies to panics since then. rollbackFired makes the automatic rollback fire
	// once per routing.
	panicBase     atomic.Uint64
	rollbackFired atomic.Bool

	drainMu sync.Mutex
	drained chan struct{} // closed when retired and the count reached zero

	panicLog panicLimiter
}

// Digest is the artifact digest the version was loaded under.
func (v *Version) Digest() string { return v.digest }

// Path is the plugin file, symlinks resolved.
func (v *Version) Path() string { return v.path }

// PluginPath is the Go plugin path plugin.Open identified the file by.
func (v *Version) PluginPath() string { return v.pluginPath }

// APIVersion is the API version the plugin declared.
func (v *Version) APIVersion() string { return v.apiVersion }

func newVersion(digest, path string) *Version {
	// Born retired: a version receives calls only once a routing table names it.
	v := &Version{digest: digest, path: path, state: control.StateLoaded, ctr: newCounters()}
	v.drained = make(chan struct{})
	close(v.drained)
	return v
}

// enter counts a call starting on v, on the calling goroutine's stripe, which the call must
// exit on. It returns false when v was retired before the increment landed; the caller must
// then re-read the routing table, and not exit.
func (v *Version) enter() (stripe int, ok bool) {
	stripe = v.ctr.pick()
	return stripe, v.ctr.enter(stripe)
}

// exit counts a call leaving v.
func (v *Version) exit(stripe int) {
	if v.ctr.exit(stripe) {
		v.signalDrained()
	}
}

// unretire makes v routable. It runs before the routing table naming v is published.
func (v *Version) unretire() {
	v.panicBase.Store(v.panics.Load())
	v.rollbackFired.Store(false)
	v.ctr.unretire()
}

// retire marks v not routable. It runs after the table without v is published, so a caller
// that still sees v either got counted first (and is waited for) or sees the bit and retries.
func (v *Version) retire() {
	v.drainMu.Lock()
	v.drained = make(chan struct{})
	v.drainMu.Unlock()
	if v.ctr.retire() {
		v.signalDrained()
	}
}

func (v *Version) signalDrained() {
	v.drainMu.Lock()
	defer v.drainMu.Unlock()
	select {
	case <-v.drained:
	default:
		close(v.drained)
	}
}

// drainState returns the calls in flight, whether v is retired, and a channel closed once v
// has drained (meaningful only when retired).
func (v *Version) drainState() (inflight int64, retired bool, ch <-chan struct{}) {
	v.drainMu.Lock()
	ch = v.drained
	v.drainMu.Unlock()
	inflight, retired = v.ctr.inflight()
	return inflight, retired, ch
}

func (v *Version) status() control.VersionStatus {
	n, _, _ := v.drainState()
	calls, errs := v.ctr.totals()
	return control.VersionStatus{
		Digest:      v.digest,
		Path:        v.path,
		FileDigest:  v.fileDigest,
		Aliases:     slices.Clone(v.aliases),
		PluginPath:  v.pluginPath,
		APIVersion:  v.apiVersion,
		State:       v.state,
		Error:       v.err,
		ErrorCode:   v.errCode,
		ErrorReason: v.errReason,
		InFlight:    n,
		Calls:       calls,
		Errors:      errs,
		Panics:      v.panics.Load(),
		LoadedAt:    v.loadedAt,
		LoadSeconds: v.loadDur.Seconds(),
	}
}
