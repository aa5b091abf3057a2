package host

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/splice-dev/splice/host/control"
	"github.com/splice-dev/splice/preflight"
)

// retiredBit is set in Version.inflight while the version is not routable. Keeping it in the
// same word as the in-flight count is what makes draining exact with a single atomic add on
// the hot path: a caller that read a routing table just before a swap increments the count of
// the version it picked and, in the same instruction, learns whether that version was retired
// meanwhile — if so it backs off and reads the new table. So once the bit is set and the count
// below it reaches zero, no call can start on the version again until it is routed again.
const retiredBit = int64(1) << 62

// Version is one plugin version the slot has tried. Its identity is its digest.
type Version struct {
	digest     string
	path       string
	fileDigest string
	pluginPath string
	apiVersion string
	facts      *preflight.Facts

	loadedAt time.Time
	loadDur  time.Duration

	// Guarded by the slot's mu.
	state control.VersionState
	err   string
	// errCode and errReason are err's control code and reason.
	errCode   control.Code
	errReason string

	inflight atomic.Int64 // low bits: calls running; retiredBit: not routable
	calls    atomic.Uint64
	errors   atomic.Uint64
	panics   atomic.Uint64

	// panicBase is the panic count when the version last became routable; the rollback
	// threshold applies to panics since then. rollbackFired makes the automatic rollback fire
	// once per routing.
	panicBase     atomic.Uint64
	rollbackFired atomic.Bool

	drainMu sync.Mutex
	drained chan struct{} // closed when retired and the count reached zero
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
	v := &Version{digest: digest, path: path, state: control.StateLoaded}
	// Born retired: a version receives calls only once a routing table names it.
	v.drained = make(chan struct{})
	close(v.drained)
	v.inflight.Store(retiredBit)
	return v
}

// enter counts a call starting on v. It returns false, having undone the count, when v was
// retired before the increment landed; the caller must then re-read the routing table.
func (v *Version) enter() bool {
	if v.inflight.Add(1)&retiredBit == 0 {
		return true
	}
	v.exit()
	return false
}

// exit counts a call leaving v.
func (v *Version) exit() {
	if v.inflight.Add(-1) == retiredBit {
		v.signalDrained()
	}
}

// unretire makes v routable. It runs before the routing table naming v is published.
func (v *Version) unretire() {
	v.panicBase.Store(v.panics.Load())
	v.rollbackFired.Store(false)
	v.inflight.Add(-retiredBit)
}

// retire marks v not routable. It runs after the table without v is published, so a caller
// that still sees v either got counted first (and is waited for) or sees the bit and retries.
func (v *Version) retire() {
	v.drainMu.Lock()
	v.drained = make(chan struct{})
	v.drainMu.Unlock()
	if v.inflight.Add(retiredBit) == retiredBit {
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
	n := v.inflight.Load()
	return n &^ retiredBit, n&retiredBit != 0, ch
}

func (v *Version) status() control.VersionStatus {
	n, _, _ := v.drainState()
	return control.VersionStatus{
		Digest:      v.digest,
		Path:        v.path,
		FileDigest:  v.fileDigest,
		PluginPath:  v.pluginPath,
		APIVersion:  v.apiVersion,
		State:       v.state,
		Error:       v.err,
		ErrorCode:   v.errCode,
		ErrorReason: v.errReason,
		InFlight:    n,
		Calls:       v.calls.Load(),
		Errors:      v.errors.Load(),
		Panics:      v.panics.Load(),
		LoadedAt:    v.loadedAt,
		LoadSeconds: v.loadDur.Seconds(),
	}
}
