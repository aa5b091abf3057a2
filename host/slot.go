package host

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	"github.com/splice-dev/splice/host/control"
	"github.com/splice-dev/splice/host/preflight"
)

// Options configure a Slot. The zero value works: symbol "Plugin", API version symbol
// "APIVersion", host facts read from the running executable, rollback after 5 panics, no
// memory bound, logs discarded.
type Options struct {
	// Name keys the slot's state in a re-exec hand-off; two slots sharing a Handoff need
	// different names. Default "default".
	Name string
	// Logger receives structured logs at V(0): loads, swaps, rollbacks, and a plugin's
	// panics with their value and first stack frames (the first 5 per version, then one per
	// 10 s with the count suppressed meanwhile). Default: discard.
	Logger logr.Logger
	// FactsFile is a preflight facts file (JSON) recorded when the host was built. Required
	// for hosts stripped with -s -w, which carry no package hashes; otherwise the facts are
	// read from os.Executable().
	FactsFile string
	// Symbol is the exported constructor every plugin must define as `func Symbol() T`.
	// Default control.DefaultSymbol ("Plugin").
	Symbol string
	// APIVersionSymbol is the exported variable every plugin must define as
	// `var APIVersionSymbol = "MAJOR.MINOR.PATCH"`. Default "APIVersion".
	APIVersionSymbol string
	// APIVersion is the version of T's contract this host was built against. When set, a
	// plugin with another major version is refused at load, and it is the baseline for the
	// first swap. Empty: no load-time check; the first swap accepts any version.
	APIVersion string
	// PanicThreshold: once a version has panicked this many times since it began serving,
	// the slot rolls back (drops it as canary, or returns to the previous current version).
	// 0 means 5; negative disables automatic rollback.
	PanicThreshold int
	// MaxVersions: after a routing change, if more plugin files than this have been opened
	// in this image (failed opens included), the host re-execs itself. 0: no bound. The new
	// image opens what this one must keep: the version Rollback (and the automatic rollback)
	// would return to, then the current version and the canary. Neither bound re-execs an
	// image that holds only those — the new image would be the same — so the restored image
	// never re-execs on its own. A bound of 2 therefore holds the current version and the one
	// to roll back to, and re-execs at every swap to a version not yet loaded; while a canary
	// runs, 3 may be held. A bound of 1 acts as 2 (SetLimits refuses it).
	MaxVersions int
	// MaxExtraRSSBytes: the same, when RSS exceeds the RSS measured at New by more. 0: no
	// bound. An image holding only what it must keep is not re-executed, whatever its RSS.
	MaxExtraRSSBytes uint64
	// Handoff enables re-exec with listener hand-off (memory bound, Reexec) and restores the
	// slot's versions in the new image. Nil: the slot never re-execs.
	Handoff *Handoff
	// OpenTimeout bounds how long Load waits for plugin.Open (a plugin init that never
	// returns). When it expires Load fails, and further loads wait until that Open returns:
	// a half-initialised plugin leaves the process in a state nothing should be loaded on
	// top of. Default 2 minutes.
	OpenTimeout time.Duration
	// PrivateDir is where the host copies every plugin file it loads before opening the copy
	// (see LoadSource): a directory only the host can write, mode 0700. Default
	// $TMPDIR/splice-host-<instance>, kept across re-execs.
	PrivateDir string
}

// SwapOptions qualify a swap or route change.
type SwapOptions struct {
	// AllowMinor consents to a minor API version change from the version being replaced.
	AllowMinor bool
}

// ReexecTarget names the single version the new image should load after a re-exec; the zero
// value means the current version (and canary, if any).
type ReexecTarget struct {
	Path       string
	Digest     string
	AllowMinor bool
}

type entry[T any] struct {
	v    *Version
	impl T
}

// table is the routing state; it is immutable once published, so the hot path reads all of
// it with one atomic load.
type table[T any] struct {
	current *entry[T]
	canary  *entry[T]
	percent int
}

func (t *table[T]) has(e *entry[T]) bool { return e != nil && (t.current == e || t.canary == e) }

func (t *table[T]) entries() []*entry[T] {
	var es []*entry[T]
	if t.current != nil {
		es = append(es, t.current)
	}
	if t.canary != nil {
		es = append(es, t.canary)
	}
	return es
}

// Slot holds the versions of one plugin interface T and routes calls to them.
//
// Plugin convention: a plugin built with `go build -buildmode=plugin` exports
//
//	var APIVersion = "1.2.0"        // the semver of the contract it implements
//	func Plugin() T { return impl{} } // called once, at load, under recover
//
// (names configurable in Options). The symbols are looked up with a Go type assertion:
// APIVersion must be a string variable (Lookup yields *string) and Plugin exactly func() T.
// Nothing is reinterpreted through unsafe; a mismatch fails the load and names both types.
type Slot[T any] struct {
	opts        Options
	log         logr.Logger
	typ         reflect.Type
	hostFacts   *preflight.Facts
	handoff     *Handoff
	baselineRSS uint64

	tbl atomic.Pointer[table[T]]

	// now is the clock of the panic log's rate limit.
	now func() time.Time

	// loadMu serializes loads: plugin.Open is never run concurrently with itself, and the
	// preflight of one load must see every file opened before it.
	loadMu sync.Mutex

	mu       sync.Mutex // guards the fields below; never held across plugin.Open
	versions []*Version
	byDigest map[string]*Version
	entries  map[string]*entry[T]
	tried    map[string]string  // real path -> digest it was tried under
	opened   []*preflight.Facts // every file handed to plugin.Open, failed ones included
	history  []*entry[T]        // earlier current versions, most recent last
	lastSwap *control.SwapResult
	limits   control.Limits // Options' bounds until SetLimits replaces them

	limitFired  atomic.Bool
	limitWarned atomic.Bool
	// restoring is set while New restores the previous image's versions: those routing
	// changes must not trip the memory bound. Restored whole, the image holds only what it
	// must keep (see mustKeep) and would not re-exec anyway; but when a version failed to load
	// there, the failed file counts as opened, and New must return before any re-exec.
	restoring atomic.Bool
}

// New creates a slot for plugin interface T, which must be an interface type. When
// opts.Handoff carries state from a previous image (this process was re-executed), New loads
// the versions that were serving before it returns, so the application serves them from its
// first request; a failure there is logged and shown in Status().LastSwap, and the slot is
// returned anyway so the host keeps running and the agent can load again.
func New[T any](opts Options) (*Slot[T], error) {
	typ := reflect.TypeFor[T]()
	if typ.Kind() != reflect.Interface {
		return nil, fmt.Errorf("host.New[%v]: T must be an interface type shared by host and plugins", typ)
	}
	if opts.Name == "" {
		opts.Name = "default"
	}
	if opts.Symbol == "" {
		opts.Symbol = control.DefaultSymbol
	}
	if opts.APIVersionSymbol == "" {
		opts.APIVersionSymbol = "APIVersion"
	}
	if opts.PanicThreshold == 0 {
		opts.PanicThreshold = 5
	}
	if opts.OpenTimeout <= 0 {
		opts.OpenTimeout = 2 * time.Minute
	}
	if opts.APIVersion != "" {
		if _, err := parseAPIVersion(opts.APIVersion); err != nil {
			return nil, fmt.Errorf("host.New: Options.APIVersion: %w", err)
		}
	}
	log := opts.Logger
	if log.GetSink() == nil {
		log = logr.Discard()
	}
	log = log.WithValues("slot", opts.Name)

	facts, err := readHostFacts(opts.FactsFile)
	if err != nil {
		return nil, err
	}
	s := &Slot[T]{
		opts:        opts,
		log:         log,
		typ:         typ,
		hostFacts:   facts,
		handoff:     opts.Handoff,
		baselineRSS: ReadRSS(),
		byDigest:    map[string]*Version{},
		entries:     map[string]*entry[T]{},
		tried:       map[string]string{},
		now:         time.Now,
		limits:      control.Limits{MaxVersions: opts.MaxVersions, MaxExtraRSSBytes: opts.MaxExtraRSSBytes},
	}
	s.tbl.Store(&table[T]{})
	if s.handoff != nil {
		raw, err := s.handoff.register(opts.Name, s)
		if err != nil {
			return nil, err
		}
		if raw != nil {
			s.restore(raw)
		}
	}
	return s, nil
}

func readHostFacts(factsFile string) (*preflight.Facts, error) {
	path := factsFile
	if path == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("host facts: find the running executable: %w (pass Options.FactsFile)", err)
		}
		path = exe
	}
	f, err := preflight.ReadFacts(path)
	if err != nil {
		if factsFile == "" {
			return nil, fmt.Errorf("host facts: read build facts of the running executable %s: %w (a host stripped with -s -w needs Options.FactsFile recorded at build time)", path, err)
		}
		return nil, fmt.Errorf("host facts: read facts file %s: %w", path, err)
	}
	return f, nil
}

// Call runs fn on the version that serves key: the canary when one is routed and key's
// RouteBucket falls below its percent, else the current version. The routing table is read
// with one atomic load, and the call finishes on that version whatever swaps happen meanwhile.
// A panic inside fn is recovered on this goroutine, counted against the version and returned
// as *PanicError; past the panic threshold the slot rolls back. Put only the plugin call (and
// what depends on it) inside fn: panics from the application's own code count too.
//
// It returns ErrNoVersion before the first swap. A panic in a goroutine the plugin starts
// cannot be recovered by anyone and kills the process, as in any Go program.
func (s *Slot[T]) Call(key string, fn func(T) error) (err error) {
	e, stripe := s.acquire(key)
	if e == nil {
		return ErrNoVersion
	}
	defer s.done(e, stripe, &err)
	if err = fn(e.impl); err != nil {
		e.v.ctr.failed(stripe)
	}
	return err
}

// CallVersion is Call, also passing the version that serves the call (to label a response
// with its digest, for instance).
func (s *Slot[T]) CallVersion(key string, fn func(T, *Version) error) (err error) {
	e, stripe := s.acquire(key)
	if e == nil {
		return ErrNoVersion
	}
	defer s.done(e, stripe, &err)
	if err = fn(e.impl, e.v); err != nil {
		e.v.ctr.failed(stripe)
	}
	return err
}

// acquire picks the version for key and counts the call in, on the stripe of the version's
// counters it returns. One atomic load of the table and one atomic add on the stripe in the
// common case; it loops only when a swap retired the picked version between the two.
func (s *Slot[T]) acquire(key string) (*entry[T], int) {
	for {
		t := s.tbl.Load()
		e := t.current
		if e == nil {
			return nil, 0
		}
		if t.canary != nil && RouteBucket(key) < t.percent {
			e = t.canary
		}
		if stripe, ok := e.v.enter(); ok {
			return e, stripe
		}
	}
}

// done is deferred directly by Call, so recover works here.
func (s *Slot[T]) done(e *entry[T], stripe int, errp *error) {
	if r := recover(); r != nil {
		*errp = s.panicked(e.v, r)
	}
	e.v.exit(stripe)
}

func (s *Slot[T]) panicked(v *Version, r any) error {
	n := v.panics.Add(1)
	perr := &PanicError{Digest: v.digest, Value: r, Stack: debug.Stack()}
	s.logPanic(v, r, n)
	if th := s.opts.PanicThreshold; th > 0 && n-v.panicBase.Load() >= uint64(th) && v.rollbackFired.CompareAndSwap(false, true) {
		// Not on the caller's goroutine: the rollback takes the slot's lock, and the caller
		// is serving a request.
		go s.autoRollback(v, n-v.panicBase.Load())
	}
	return perr
}

// Current returns the current version, or nil before the first swap.
func (s *Slot[T]) Current() *Version {
	if e := s.tbl.Load().current; e != nil {
		return e.v
	}
	return nil
}

// Facts returns the host binary's build facts, the baseline of every preflight.
func (s *Slot[T]) Facts() *preflight.Facts { return s.hostFacts }

// WaitDrained waits until the version with the given digest serves no call and cannot start
// one (it is neither current nor canary). A version that is still routed is an error:
// it would never drain.
func (s *Slot[T]) WaitDrained(ctx context.Context, digest string) error {
	s.mu.Lock()
	v := s.byDigest[digest]
	s.mu.Unlock()
	if v == nil {
		return fmt.Errorf("wait for %s to drain: %w", digest, ErrUnknownDigest)
	}
	for {
		n, retired, ch := v.drainState()
		if !retired {
			return fmt.Errorf("wait for %s to drain: it is still routed (current or canary); swap or route away first", digest)
		}
		if n == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for %s to drain (%d calls still running): %w", digest, n, ctx.Err())
		}
	}
}

// Status reports every version tried, the routing and the last swap.
func (s *Slot[T]) Status() control.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tbl.Load()
	st := control.Status{
		PID:              os.Getpid(),
		Instance:         instance,
		HostGoVersion:    s.hostFacts.GoVersion,
		APIVersion:       s.opts.APIVersion,
		LoadedVersions:   len(s.opened),
		Versions:         make([]control.VersionStatus, 0, len(s.versions)),
		RSSBytes:         ReadRSS(),
		BaselineRSSBytes: s.baselineRSS,
		Limits:           s.limits,
	}
	if t.current != nil {
		st.Current = t.current.v.digest
	}
	if t.canary != nil {
		st.Canary, st.CanaryPercent = t.canary.v.digest, t.percent
	}
	for _, v := range s.versions {
		st.Versions = append(st.Versions, v.status())
	}
	if s.lastSwap != nil {
		ls := *s.lastSwap
		st.LastSwap = &ls
	}
	if s.handoff != nil {
		hs := s.handoff.Status()
		st.Handoff = &hs
	}
	return st
}

// errNoChange tells change that nothing needs doing and nothing should be recorded.
var errNoChange = errors.New("no change")

// inputError marks a refusal caused by the request itself (an unknown digest, nothing to roll
// back to, a canary that cannot be one). It is returned but not recorded as the last swap: a
// malformed or hostile request must change nothing at all, not even the status. Refusals on
// policy (an API version change) are recorded: they are outcomes the agent reports.
type inputError struct{ error }

func (e inputError) Unwrap() error { return e.error }

// change applies a routing decision under the slot's lock, publishes the new table and
// records the result with snapshots. before and start come from the caller so that a
// load-and-swap reports the load inside the swap.
func (s *Slot[T]) change(op control.Operation, reason string, start time.Time, before Snapshot, decide func(old *table[T]) (*table[T], string, error)) (control.SwapResult, error) {
	s.mu.Lock()
	old := s.tbl.Load()
	res := control.SwapResult{Op: op, StartedAt: start, Reason: reason, Before: &before, From: digestOf(old.current)}
	nt, why, err := decide(old)
	var ie inputError
	if errors.As(err, &ie) {
		s.mu.Unlock()
		res.To, res.Error = res.From, ie.error.Error()
		return res, ie.error
	}
	if errors.Is(err, errNoChange) {
		s.mu.Unlock()
		return res, err
	}
	if why != "" {
		res.Reason = why
	}
	if err == nil {
		s.publish(old, nt)
	} else {
		nt = old
		res.Error = err.Error()
	}
	res.To = digestOf(nt.current)
	if nt.canary != nil {
		res.Canary, res.CanaryPercent = nt.canary.v.digest, nt.percent
	}
	after := TakeSnapshot()
	res.After = &after
	res.GCDuringSwap = gcDuring(before, after)
	res.Seconds = time.Since(start).Seconds()
	rec := res
	s.lastSwap = &rec
	s.mu.Unlock()

	if err != nil {
		s.log.Info("routing change refused", "op", op, "from", res.From, "to", digestOf(old.current), "error", err.Error())
		return res, err
	}
	s.log.Info("routing changed", "op", op, "from", res.From, "to", res.To, "canary", res.Canary, "percent", res.CanaryPercent,
		"seconds", res.Seconds, "gcDuringSwap", res.GCDuringSwap, "reason", res.Reason)
	s.checkLimits()
	return res, nil
}

// publish swaps the routing table: versions entering are made routable before the table is
// stored, versions leaving are retired after (see retiredBit for why that order drains
// exactly). Called with s.mu held.
func (s *Slot[T]) publish(old, nt *table[T]) {
	for _, e := range nt.entries() {
		if !old.has(e) {
			e.v.unretire()
		}
	}
	s.tbl.Store(nt)
	for _, e := range old.entries() {
		if !nt.has(e) {
			e.v.retire()
			e.v.state = control.StateRetired
		}
	}
	if nt.current != nil {
		nt.current.v.state = control.StateCurrent
	}
	if nt.canary != nil {
		nt.canary.v.state = control.StateCanary
	}
}

func digestOf[T any](e *entry[T]) string {
	if e == nil {
		return ""
	}
	return e.v.digest
}

// servable returns the loaded entry for digest or says why there is none. s.mu held.
func (s *Slot[T]) servable(digest string) (*entry[T], error) {
	if e := s.entries[digest]; e != nil {
		return e, nil
	}
	if v := s.byDigest[digest]; v != nil {
		return nil, fmt.Errorf("%w: %s failed to load: %s", ErrNotServable, digest, v.err)
	}
	return nil, fmt.Errorf("%w: %s (load it first)", ErrUnknownDigest, digest)
}

// baselineAPI is what a new current version is compared with. s.mu held.
func (s *Slot[T]) baselineAPI(t *table[T]) string {
	if t.current != nil {
		return t.current.v.apiVersion
	}
	return s.opts.APIVersion
}

const maxHistory = 64

func (s *Slot[T]) pushHistory(e *entry[T]) {
	if e == nil {
		return
	}
	s.history = append(s.history, e)
	if len(s.history) > maxHistory {
		s.history = s.history[len(s.history)-maxHistory:]
	}
}

// previous returns the version Rollback would return to from cur — the most recent earlier
// current version that is not cur — without taking it from the history. s.mu held.
func (s *Slot[T]) previous(cur *entry[T]) *entry[T] {
	for i := len(s.history) - 1; i >= 0; i-- {
		if e := s.history[i]; e != cur {
			return e
		}
	}
	return nil
}

// popPrevious returns what previous(cur) returns and takes it from the history, with the
// entries of cur above it. s.mu held.
func (s *Slot[T]) popPrevious(cur *entry[T]) *entry[T] {
	for len(s.history) > 0 {
		e := s.history[len(s.history)-1]
		s.history = s.history[:len(s.history)-1]
		if e != cur {
			return e
		}
	}
	return nil
}

// Swap makes the loaded version with the given digest current. Calls in flight finish on the
// version they started on (WaitDrained tells when). An active canary ends: promoted when it is
// the version swapped to, dropped otherwise. Swapping to the current version changes nothing
// and succeeds, so a retried request is harmless.
func (s *Slot[T]) Swap(ctx context.Context, digest string, opts SwapOptions) (control.SwapResult, error) {
	return s.swap(control.OpSwap, "", digest, opts, time.Now(), TakeSnapshot())
}

// swap is Swap as op, with reason recorded in the result.
func (s *Slot[T]) swap(op control.Operation, reason, digest string, opts SwapOptions, start time.Time, before Snapshot) (control.SwapResult, error) {
	return s.change(op, reason, start, before, func(old *table[T]) (*table[T], string, error) {
		e, err := s.servable(digest)
		if err != nil {
			return nil, "", inputError{err}
		}
		if old.current == e && old.canary == nil {
			return old, "already current", nil
		}
		if old.current != e {
			if err := checkAPIChange(s.baselineAPI(old), e.v.apiVersion, opts.AllowMinor); err != nil {
				return nil, "", err
			}
			s.pushHistory(old.current)
		}
		return &table[T]{current: e}, "", nil
	})
}

// LoadAndSwap loads a plugin file and makes it current. The result's snapshots and time span
// the load too. The version status is returned even when only the swap failed.
func (s *Slot[T]) LoadAndSwap(ctx context.Context, path, digest string, opts SwapOptions) (control.VersionStatus, control.SwapResult, error) {
	return s.LoadSourceAndSwap(ctx, Source{Path: path}, digest, opts)
}

// LoadSourceAndSwap is LoadAndSwap of a Source (see LoadSource).
func (s *Slot[T]) LoadSourceAndSwap(ctx context.Context, src Source, digest string, opts SwapOptions) (control.VersionStatus, control.SwapResult, error) {
	start, before := time.Now(), TakeSnapshot()
	vs, err := s.LoadSource(ctx, src, digest)
	if err != nil {
		res := control.SwapResult{Op: control.OpSwap, StartedAt: start, Before: &before, Error: err.Error(), From: digestOf(s.tbl.Load().current)}
		res.To = res.From
		return vs, res, err
	}
	res, err := s.swap(control.OpSwap, "", digest, opts, start, before)
	s.mu.Lock()
	vs = s.byDigest[digest].status()
	s.mu.Unlock()
	return vs, res, err
}

// Rollback drops an active canary; without one, it makes the previous current version current
// again. No API version check applies: the version being returned to served before.
func (s *Slot[T]) Rollback(ctx context.Context) (control.SwapResult, error) {
	return s.change(control.OpRollback, "", time.Now(), TakeSnapshot(), s.rollbackDecision(nil))
}

// rollbackDecision backs out of `from` (nil: whatever is newest — the canary, else current).
func (s *Slot[T]) rollbackDecision(from *Version) func(old *table[T]) (*table[T], string, error) {
	return func(old *table[T]) (*table[T], string, error) {
		if old.canary != nil && (from == nil || old.canary.v == from) {
			return &table[T]{current: old.current}, "canary " + old.canary.v.digest + " dropped", nil
		}
		if old.current == nil || (from != nil && old.current.v != from) {
			if from != nil {
				return nil, "", errNoChange // already routed away
			}
			return nil, "", inputError{fmt.Errorf("%w: nothing is serving", ErrNoPrevious)}
		}
		prev := s.popPrevious(old.current)
		if prev == nil {
			return nil, "", inputError{fmt.Errorf("%w: %s is the only version that has served", ErrNoPrevious, old.current.v.digest)}
		}
		return &table[T]{current: prev}, "", nil
	}
}

func (s *Slot[T]) autoRollback(v *Version, panics uint64) {
	reason := fmt.Sprintf("%s panicked %d times since it began serving (threshold %d)", v.digest, panics, s.opts.PanicThreshold)
	_, err := s.change(control.OpAutoRollback, reason, time.Now(), TakeSnapshot(), s.rollbackDecision(v))
	switch {
	case errors.Is(err, errNoChange):
	case err != nil:
		s.log.Error(err, "automatic rollback impossible; the version keeps serving", "digest", v.digest, "panics", panics)
	default:
		s.log.Info("rolled back automatically", "digest", v.digest, "panics", panics)
	}
}

// Route sends percent of calls (by RouteBucket of the call's key) to the loaded version named
// canary, the rest to the current version. Percent 0 ends the canary. The canary is checked
// against the current version's API like a swap.
func (s *Slot[T]) Route(ctx context.Context, canary string, percent int, opts SwapOptions) (control.SwapResult, error) {
	return s.change(control.OpRoute, "", time.Now(), TakeSnapshot(), func(old *table[T]) (*table[T], string, error) {
		if percent < 0 || percent > 100 {
			return nil, "", inputError{fmt.Errorf("route: percent %d must be between 0 and 100", percent)}
		}
		if percent == 0 {
			return &table[T]{current: old.current}, "canary ended", nil
		}
		e, err := s.servable(canary)
		if err != nil {
			return nil, "", inputError{err}
		}
		if old.current == nil {
			return nil, "", inputError{fmt.Errorf("%w: no current version to split traffic with; swap one in first", ErrNotServable)}
		}
		if old.current == e {
			return nil, "", inputError{fmt.Errorf("%w: %s is the current version; a canary must be another one", ErrNotServable, canary)}
		}
		if err := checkAPIChange(old.current.v.apiVersion, e.v.apiVersion, opts.AllowMinor); err != nil {
			return nil, "", err
		}
		return &table[T]{current: old.current, canary: e, percent: percent}, "", nil
	})
}

// SetLimits replaces the memory bounds (Options.MaxVersions and MaxExtraRSSBytes) from now on,
// for this image and the images it re-execs into; it takes effect at the next routing change.
// A MaxVersions of 1 is refused: an image must keep the version to roll back to. It returns the
// bounds now in force.
func (s *Slot[T]) SetLimits(l control.Limits) (control.Limits, error) {
	req := control.LimitsRequest{Limits: l}
	if err := req.Validate(); err != nil {
		return control.Limits{}, control.Errorf(control.CodeBadRequest, "%v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.limits != l {
		s.log.Info("memory bounds replaced", "maxVersions", l.MaxVersions, "maxExtraRSSBytes", l.MaxExtraRSSBytes,
			"previousMaxVersions", s.limits.MaxVersions, "previousMaxExtraRSSBytes", s.limits.MaxExtraRSSBytes)
	}
	s.limits = l
	return l, nil
}

// mustKeep counts the versions a re-exec hands to the new image: those routed in t and the one
// Rollback would return to. s.mu held.
func (s *Slot[T]) mustKeep(t *table[T]) int {
	n := len(t.entries())
	if p := s.previous(t.current); p != nil && !t.has(p) {
		n++
	}
	return n
}

// checkLimits re-execs the host (asynchronously) when the memory bound is passed and a new
// image would hold less than this one.
func (s *Slot[T]) checkLimits() {
	if s.restoring.Load() {
		return
	}
	s.mu.Lock()
	opened := len(s.opened)
	keep := s.mustKeep(s.tbl.Load())
	lim := s.limits
	s.mu.Unlock()
	if opened <= keep {
		// A new image would open exactly what this one holds: nothing to shed.
		return
	}
	var reason string
	if max := lim.MaxVersions; max > 0 && opened > max {
		reason = fmt.Sprintf("%d plugin files opened, bound %d", opened, max)
	} else if extra := lim.MaxExtraRSSBytes; extra > 0 {
		if rss := ReadRSS(); rss > s.baselineRSS+extra {
			reason = fmt.Sprintf("RSS %d bytes, %d over the baseline; bound %d", rss, rss-s.baselineRSS, extra)
		}
	}
	if reason == "" {
		return
	}
	if s.handoff == nil {
		if s.limitWarned.CompareAndSwap(false, true) {
			s.log.Info("memory bound passed but the slot has no Handoff; it will not re-exec", "reason", reason)
		}
		return
	}
	if !s.limitFired.CompareAndSwap(false, true) {
		return
	}
	go func() {
		err := s.Reexec(context.Background(), ReexecTarget{}, "memory bound: "+reason)
		// Reexec returns only when the hand-off did not happen; try again at the next change.
		s.log.Error(err, "re-exec for the memory bound did not happen; the host keeps serving")
		s.limitFired.Store(false)
	}()
}
