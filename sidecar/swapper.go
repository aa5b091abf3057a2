package sidecar

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/artifact"
	"github.com/splice-dev/splice/host/control"
	"github.com/splice-dev/splice/host/preflight"
	"github.com/splice-dev/splice/internal/trust"
)

// SwapperOptions configure a Swapper.
type SwapperOptions struct {
	// SharedDir is the directory shared with the host, as this process sees it; artifacts
	// are pulled into it. Required.
	SharedDir string
	// Host is the client of the host's control socket. Required.
	Host *control.Client
	// Pull are the registry options (credentials, plain HTTP, the layer bound).
	Pull []artifact.Option
	// Trust, when set, is the namespace's trust policy (the webhook passes it in
	// $SPLICE_TRUST_POLICY): an artifact is pulled only once its signature verifies against
	// it, so nothing unsigned reaches the shared volume, let alone the host.
	Trust *trust.Policy
	// AllowMinor is the consent to a plugin API minor version change that Swap gives its
	// targets: for callers without a pod (the benchmark). Apply uses each target's own
	// (Target.AllowMinor, which the agent reads from the pod's annotations) and ignores this. A
	// major change is refused whatever either says.
	AllowMinor bool
	// CrashWindow is how long a version must serve in one host process before a crash of that
	// process is no longer blamed on it (see Observe). Default DefaultCrashWindow.
	CrashWindow time.Duration
	// PullTimeout bounds one pull (default 5m); LoadTimeout one load, swap or route request
	// (default 3m, longer than the host library's 2m plugin.Open bound so that the host
	// answers first); HostTimeout every other control request (default 10s).
	PullTimeout time.Duration
	LoadTimeout time.Duration
	HostTimeout time.Duration
	// Logger receives the pipeline's structured logs. Default: discard.
	Logger logr.Logger
	// Metrics, when set, records loads, refusals and timings.
	Metrics *Metrics
	// Clock measures the pipeline's steps and the request in flight. Default: the real clock.
	Clock clock.PassiveClock
}

// Swapper runs the agent's pipeline against one host: pull by digest, verify, preflight, and
// only then load and swap (or route). It needs no Kubernetes: the agent drives it from its
// pod's annotations, and the benchmark drives it directly. It is safe for concurrent use;
// pipelines run one at a time (the host serializes loads anyway, and the preflight must see
// every earlier load).
type Swapper struct {
	opts  SwapperOptions
	log   logr.Logger
	clock clock.PassiveClock
	mu    sync.Mutex
	// busySince is when the control request in flight began (unix nanos, 0: none), for the
	// liveness check: a host that sits on a load past every bound is wedged.
	busySince atomic.Int64
	// facts caches the build facts of the plugins the host opened, by digest: a plugin file
	// never changes under its digest, and reading the ELF of every tried version on every swap
	// made the preflight grow from 9 ms to 100 ms over ten versions.
	facts sync.Map // digest -> *preflight.Facts
	// verified are the references whose signatures the trust policy accepted.
	verified verifiedRefs

	// stateMu guards the agent's state files (the attempt marker, the crashed list) and the
	// crashed list read from them; it is never held across a host request.
	stateMu     sync.Mutex
	crashed     []Crash
	crashedRead bool
}

// NewSwapper checks the options and returns a Swapper.
func NewSwapper(o SwapperOptions) (*Swapper, error) {
	if o.SharedDir == "" || o.Host == nil {
		return nil, errors.New("sidecar.NewSwapper: SharedDir and Host are required")
	}
	if o.PullTimeout <= 0 {
		o.PullTimeout = 5 * time.Minute
	}
	if o.LoadTimeout <= 0 {
		o.LoadTimeout = 3 * time.Minute
	}
	if o.HostTimeout <= 0 {
		o.HostTimeout = 10 * time.Second
	}
	if o.CrashWindow <= 0 {
		o.CrashWindow = DefaultCrashWindow
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	log := o.Logger
	if log.GetSink() == nil {
		log = logr.Discard()
	}
	return &Swapper{opts: o, log: log, clock: o.Clock}, nil
}

// Outcome is what one Apply did.
type Outcome struct {
	Target Target
	// State is Ready, Incompatible, Failed or Crashed; or, when Retry is set, the step that must
	// be tried again (Pending: the host did not answer, or refused the memory bound; Pulling;
	// Swapping).
	State splicev1.SwapState
	// Reason is a CamelCase cause for anything but Ready (see the Reason constants and the
	// preflight's reasons).
	Reason string
	// Err says what failed and what to fix.
	Err error
	// Retry is set for failures worth retrying with backoff; nothing was refused by the host.
	Retry bool
	// Changed is set when this call changed what the host serves.
	Changed bool
	// Pulled are the artifacts pulled by this call (stable first, for a canary).
	Pulled []*artifact.Pulled
	// Verdict is the preflight's last verdict (the refusal, for Incompatible).
	Verdict *preflight.Verdict
	// PullDuration and PreflightDuration sum the steps over the artifacts pulled;
	// SwapLatency is from asking the host to load-and-swap, swap or route, to the answer
	// that the new version serves (a load-only step for a canary is not in it).
	PullDuration      time.Duration
	PreflightDuration time.Duration
	SwapLatency       time.Duration
	// HostSwap is the host's record of the routing change this call made.
	HostSwap *control.SwapResult
	// Status is the host's status after the call (or the last one read).
	Status *control.Status
}

func (o *Outcome) fail(f failure, err error) *Outcome {
	o.State, o.Reason, o.Retry, o.Err = f.state, f.reason, f.retry, err
	return o
}

// Swap makes ref (pinned by digest) the only version serving calls, with SwapperOptions'
// consent to a minor API change.
func (s *Swapper) Swap(ctx context.Context, ref string) *Outcome {
	t, err := SwapTarget(ref)
	if err != nil {
		return (&Outcome{Target: Target{Ref: ref, Percent: 100}}).fail(failure{splicev1.SwapFailed, ReasonInvalidDesiredArtifact, false}, err)
	}
	t.AllowMinor = s.opts.AllowMinor
	return s.Apply(ctx, t, nil)
}

// step is one version Apply brings in: the desired one, or a canary's stable one first.
type step struct {
	ref, digest string
	// swap makes it current (else it is only loaded, for a canary to route to).
	swap bool
	// desired: the target's own version. Only it is blamed for a crash of the host (the
	// attempt marker names it); the stable version never is.
	desired bool
}

// Apply brings the host to the target, doing only what is missing: nothing when the host
// already serves it; a swap when the version is loaded; pull, preflight and load-and-swap
// otherwise. For a canary the stable version is made current first, then the new one is
// loaded and routed Percent of calls. Before anything is loaded it hands the target's memory
// bound to the host, refuses a plugin API step the target does not consent to (any major one),
// and refuses a version that crashed this pod's host before. A version the host tried and
// failed is never tried again. progress (may be nil) is called as the pipeline enters Pulling
// and Swapping.
func (s *Swapper) Apply(ctx context.Context, t Target, progress func(splicev1.SwapState)) *Outcome {
	s.mu.Lock()
	defer s.mu.Unlock()
	if progress == nil {
		progress = func(splicev1.SwapState) {}
	}
	out := &Outcome{Target: t, State: splicev1.SwapPending}
	st, err := s.status(ctx)
	if err != nil {
		return out.fail(failure{splicev1.SwapPending, ReasonHostUnavailable, true}, err)
	}
	s.observe(ctx, st)
	out.Status = st
	if Satisfied(t, st) {
		out.State = splicev1.SwapReady
		return out
	}
	log := s.log.WithValues("artifact", t.Ref, "digest", t.Digest)
	ctx = logr.NewContext(ctx, log)
	if !s.setLimits(ctx, out, t, st) {
		return out
	}
	if t.Canary() {
		if !s.canary(ctx, out, t, st, progress) {
			return out
		}
	} else if !s.ensure(ctx, out, st, t, step{ref: t.Ref, digest: t.Digest, swap: true, desired: true}, progress) {
		return out
	}

	if out.SwapLatency > 0 && s.opts.Metrics != nil {
		s.opts.Metrics.SwapLatency.Observe(out.SwapLatency.Seconds())
	}
	if after, err := s.status(ctx); err == nil {
		out.Status = after
	}
	out.State = splicev1.SwapReady
	log.Info("host serves the target", "want", t.String(), "swapLatency", out.SwapLatency, "pull", out.PullDuration, "preflight", out.PreflightDuration)
	return out
}

// canary makes the stable version current, loads the new one and routes Percent of calls to
// it (Percent 0: ends any split, leaving it loaded).
func (s *Swapper) canary(ctx context.Context, out *Outcome, t Target, st *control.Status, progress func(splicev1.SwapState)) bool {
	if st.Current != t.StableDigest {
		if !s.ensure(ctx, out, st, t, step{ref: t.StableRef, digest: t.StableDigest, swap: true}, progress) {
			return false
		}
		var err error
		if st, err = s.status(ctx); err != nil {
			out.fail(failure{splicev1.SwapSwapping, ReasonHostUnavailable, true}, err)
			return false
		}
	}
	if !s.ensure(ctx, out, st, t, step{ref: t.Ref, digest: t.Digest, desired: true}, progress) {
		return false
	}
	progress(splicev1.SwapSwapping)
	req := control.RouteRequest{Canary: t.Digest, Percent: t.Percent, AllowMinor: t.AllowMinor}
	if t.Percent == 0 {
		req = control.RouteRequest{}
	} else if !s.mark(out, st, step{digest: t.Digest, desired: true}, attemptRoute) {
		return false
	}
	start := s.clock.Now()
	res, err := s.call(ctx, s.opts.LoadTimeout, func(ctx context.Context) (*control.SwapResult, error) { return s.opts.Host.Route(ctx, req) })
	if err != nil {
		hostFailed(out, t, err, fmt.Sprintf("route %d%% of calls to %s", t.Percent, t.Digest))
		return false
	}
	out.SwapLatency = s.clock.Since(start)
	out.HostSwap, out.Changed = res, true
	return true
}

// ensure makes the step's version loaded (and current, with swap) in the host: a version the
// host holds already is only swapped to; any other is pulled, checked (plugin API step,
// preflight) and then loaded. It reports false with out set to the failure.
func (s *Swapper) ensure(ctx context.Context, out *Outcome, st *control.Status, t Target, p step, progress func(splicev1.SwapState)) bool {
	if c := s.CrashOf(p.digest); c != nil {
		out.fail(failure{splicev1.SwapCrashed, ReasonHostCrashed, false},
			fmt.Errorf("%s crashed this pod's host before (host instance %s died while the agent was bringing it in, seen %s); it is never loaded again in this pod: roll out another artifact",
				p.ref, c.Instance, c.DetectedAt.UTC().Format(time.RFC3339)))
		return false
	}
	if v := st.Version(p.digest); v != nil {
		return s.reuse(ctx, out, st, t, *v, p, progress)
	}
	progress(splicev1.SwapPulling)
	pulled, ok := s.pull(ctx, out, p.ref)
	if !ok || !s.checkAPI(ctx, out, st, t, p.ref, pulled.Config.APIVersion) || !s.preflight(ctx, out, st, pulled, p.ref) {
		return false
	}
	progress(splicev1.SwapSwapping)
	op := attemptLoad
	if p.swap {
		op = attemptLoadSwap
	}
	return s.mark(out, st, p, op) && s.load(ctx, out, t, pulled, p)
}

// reuse makes a version the host already holds current (with swap), or reports why it cannot:
// it failed before, which is final, it is still loading, which is retried, or its plugin API
// step is refused.
func (s *Swapper) reuse(ctx context.Context, out *Outcome, st *control.Status, t Target, v control.VersionStatus, p step, progress func(splicev1.SwapState)) bool {
	switch {
	case v.State == control.StateFailed:
		// Never again: reopening a path whose init panicked hangs plugin.Open forever.
		out.fail(classifyVersion(v), fmt.Errorf("the host already tried %s and it failed (a version is tried once per host process): %s", p.ref, v.Error))
		return false
	case v.LoadedAt.IsZero():
		out.fail(failure{splicev1.SwapSwapping, ReasonRetrying, true}, fmt.Errorf("the host is still loading %s", p.digest))
		return false
	case !s.checkAPI(ctx, out, st, t, p.ref, v.APIVersion):
		return false
	case !p.swap || (st.Current == p.digest && st.Canary == ""):
		return true
	}
	progress(splicev1.SwapSwapping)
	if !s.mark(out, st, p, attemptSwap) {
		return false
	}
	start := s.clock.Now()
	res, err := s.call(ctx, s.opts.LoadTimeout, func(ctx context.Context) (*control.SwapResult, error) {
		return s.opts.Host.Swap(ctx, control.SwapRequest{Digest: p.digest, AllowMinor: t.AllowMinor})
	})
	if err != nil {
		hostFailed(out, t, err, fmt.Sprintf("swap to %s (already loaded)", p.ref))
		return false
	}
	out.SwapLatency = s.clock.Since(start)
	out.HostSwap, out.Changed = res, true
	logr.FromContextOrDiscard(ctx).Info("swapped to a loaded version", "ref", p.ref, "seconds", res.Seconds)
	return true
}

// checkAPI refuses, before anything reaches the host, a version whose declared plugin API step
// from what the host serves the target does not consent to, and any major step (apiRefusal).
func (s *Swapper) checkAPI(ctx context.Context, out *Outcome, st *control.Status, t Target, ref, declared string) bool {
	serving := ""
	if cur := st.Version(st.Current); cur != nil {
		serving = cur.APIVersion
	}
	f, err := apiRefusal(apiCheck{hostAPI: st.APIVersion, serving: serving, plugin: declared, consent: t.AllowMinor, compilerVersion: t.CompilerVersion, ref: ref})
	if err == nil {
		return true
	}
	s.count(LoadIncompatible)
	logr.FromContextOrDiscard(ctx).Info("plugin API step refused; nothing loaded", "ref", ref, "reason", f.reason, "pluginAPI", declared, "servingAPI", serving, "hostAPI", st.APIVersion)
	out.fail(f, err)
	return false
}

// mark writes the attempt marker for a desired version new in this host process before the
// host is asked to bring it in (see Observe). The marker is what keeps a version that kills
// the host from being loaded again, so a failure to write it stops the step (retried).
func (s *Swapper) mark(out *Outcome, st *control.Status, p step, op string) bool {
	if !p.desired || !newInInstance(st, p.digest) {
		return true
	}
	if err := s.markAttempt(st, p.digest, op); err != nil {
		out.fail(failure{splicev1.SwapSwapping, ReasonRetrying, true}, fmt.Errorf("before bringing %s in: %w (the agent records each attempt in the shared directory, so that a version that kills the host is never loaded again)", p.digest, err))
		return false
	}
	return true
}

// observe runs crash detection on a status Apply read (the agent runs it on every sync too).
func (s *Swapper) observe(ctx context.Context, st *control.Status) {
	if _, err := s.Observe(st); err != nil {
		logr.FromContextOrDiscard(ctx).Info("crash detection", "error", err.Error())
	}
}

// setLimits hands the target's memory bound to the host when it differs from the host's
// (keeping the host's RSS bound); a refusal is retried, and nothing is loaded meanwhile.
func (s *Swapper) setLimits(ctx context.Context, out *Outcome, t Target, st *control.Status) bool {
	n := t.MaxLoadedVersions
	if n == 0 || st.Limits.MaxVersions == n {
		return true
	}
	want := control.Limits{MaxVersions: n, MaxExtraRSSBytes: st.Limits.MaxExtraRSSBytes}
	got, err := call(ctx, s, s.opts.HostTimeout, false, func(ctx context.Context) (*control.Limits, error) {
		return s.opts.Host.SetLimits(ctx, control.LimitsRequest{Limits: want})
	})
	if err != nil {
		out.fail(limitsFailure(err), fmt.Errorf("hand the pod's memory bound (annotation %s: %d loaded versions) to the host: %w%s",
			splicev1.AnnotationMaxLoadedVersions, n, err, limitsHint(err)))
		return false
	}
	logr.FromContextOrDiscard(ctx).Info("memory bound handed to the host", "maxVersions", got.MaxVersions, "maxExtraRSSBytes", got.MaxExtraRSSBytes,
		"previousMaxVersions", st.Limits.MaxVersions)
	return true
}

// limitsFailure classifies a failed limits request: always retried, the host's refusal under
// its own reason.
func limitsFailure(err error) failure {
	var ce *control.Error
	if errors.As(err, &ce) {
		return failure{splicev1.SwapPending, ReasonHostLimitsRefused, true}
	}
	return failure{splicev1.SwapPending, ReasonHostUnavailable, true}
}

// limitsHint says what to do about a host without the limits request.
func limitsHint(err error) string {
	if control.IsCode(err, control.CodeNotFound) {
		return " (a host built with a host library older than the limits request has no /v1/limits: rebuild the app with a current host library, or remove spec.maxLoadedVersions)"
	}
	return ""
}

// hostFailed records a load, swap or route the host refused or did not answer, adding what to
// do about a refused plugin API step.
func hostFailed(out *Outcome, t Target, err error, what string) {
	f := classifyHost(err)
	err = fmt.Errorf("%s: %w", what, err)
	switch f.reason {
	case ReasonMinorAPIChangeNotAllowed:
		err = fmt.Errorf("%w; %s", err, consentHint(t))
	case ReasonMajorAPIChange:
		err = fmt.Errorf("%w; a major plugin API change cannot be swapped in place: the pod must be recreated from an image whose host is built against the plugin's API major version", err)
	}
	out.fail(f, err)
}

// pull fetches ref into the shared directory, verified against its digest.
func (s *Swapper) pull(ctx context.Context, out *Outcome, ref string) (*artifact.Pulled, bool) {
	start := s.clock.Now()
	pctx, cancel := context.WithTimeout(ctx, s.opts.PullTimeout)
	if !s.verify(pctx, out, ref) {
		cancel()
		return nil, false
	}
	p, err := artifact.Pull(pctx, ref, s.opts.SharedDir, s.opts.Pull...)
	cancel()
	elapsed := s.clock.Since(start)
	out.PullDuration += elapsed
	if err != nil {
		out.fail(classifyPull(err), err)
		return nil, false
	}
	out.Pulled = append(out.Pulled, p)
	if m := s.opts.Metrics; m != nil {
		m.PullDuration.Observe(elapsed.Seconds())
	}
	logr.FromContextOrDiscard(ctx).Info("pulled", "ref", ref, "path", p.Path, "reused", p.Reused, "seconds", elapsed.Seconds(),
		"pluginPath", p.Facts.PluginPath, "apiVersion", p.Config.APIVersion)
	return p, true
}

// preflight checks the pulled plugin against the host's build and every plugin the host has
// tried; it reports false, with the refusal as Incompatible, when plugin.Open would fail or
// load an unsupported build. Nothing reaches the host before it passes.
func (s *Swapper) preflight(ctx context.Context, out *Outcome, st *control.Status, p *artifact.Pulled, ref string) bool {
	if v := st.SameBuild(p.LayerDigest); v != nil {
		// The host already runs these bytes (a cold-start plugin named by its file's sha256,
		// say): the load makes the artifact's digest an alias of that version, opening nothing.
		logr.FromContextOrDiscard(ctx).Info("the host already runs this build; its digest becomes an alias", "ref", ref, "version", v.Digest)
		return true
	}
	start := s.clock.Now()
	hostFacts, err := call(ctx, s, s.opts.HostTimeout, false, s.opts.Host.Facts)
	if err != nil {
		out.fail(failure{splicev1.SwapPulling, ReasonHostUnavailable, true}, fmt.Errorf("read the host's build facts for the preflight: %w", err))
		return false
	}
	loaded, err := s.triedFacts(st)
	if err != nil {
		out.fail(failure{splicev1.SwapFailed, ReasonPreflightFactsUnavailable, false}, err)
		return false
	}
	verdict := preflight.Check(hostFacts, p.Facts, loaded)
	elapsed := s.clock.Since(start)
	out.PreflightDuration += elapsed
	out.Verdict = &verdict
	if m := s.opts.Metrics; m != nil {
		m.PreflightTime.Observe(elapsed.Seconds())
	}
	if verdict.OK {
		return true
	}
	s.count(LoadIncompatible)
	s.countRefusals(verdict)
	logr.FromContextOrDiscard(ctx).Info("preflight refused the plugin; nothing loaded", "ref", ref, "reasons", verdict.Error())
	out.fail(failure{splicev1.SwapIncompatible, verdict.Problems[0].Reason, false},
		fmt.Errorf("preflight: %s cannot be loaded into this host: %s", ref, verdict.Error()))
	return false
}

// countRefusals counts a refused plugin once under each reason the preflight gave.
func (s *Swapper) countRefusals(verdict preflight.Verdict) {
	if s.opts.Metrics == nil {
		return
	}
	seen := map[string]bool{}
	for _, pr := range verdict.Problems {
		if !seen[pr.Reason] {
			s.opts.Metrics.PreflightRefused.WithLabelValues(pr.Reason).Inc()
		}
		seen[pr.Reason] = true
	}
}

// load asks the host to open the pulled plugin (and make it current, with swap).
func (s *Swapper) load(ctx context.Context, out *Outcome, t Target, pulled *artifact.Pulled, p step) bool {
	// The path is relative to the shared directory: the host resolves it against its own
	// mount of the volume, which may sit elsewhere in its container.
	req := control.LoadRequest{Path: filepath.Base(pulled.Path), Digest: p.digest, FileDigest: pulled.LayerDigest, Swap: p.swap, AllowMinor: p.swap && t.AllowMinor}
	start := s.clock.Now()
	resp, err := call(ctx, s, s.opts.LoadTimeout, true, func(ctx context.Context) (*control.LoadResponse, error) { return s.opts.Host.Load(ctx, req) })
	if err != nil {
		f := classifyHost(err)
		if !f.retry {
			s.count(LoadFailed)
			if f.reason == ReasonSymbolLookupFailed && s.opts.Metrics != nil {
				s.opts.Metrics.SymbolErrors.Inc()
			}
		}
		hostFailed(out, t, err, "host load of "+p.ref)
		return false
	}
	s.count(LoadSuccess)
	if p.swap {
		out.SwapLatency = s.clock.Since(start)
		out.HostSwap, out.Changed = resp.Swap, true
	}
	logr.FromContextOrDiscard(ctx).Info("host loaded the plugin", "ref", p.ref, "swap", p.swap, "seconds", s.clock.Since(start).Seconds(),
		"hostLoadSeconds", resp.Version.LoadSeconds)
	return true
}

// triedFacts reads the build facts of every plugin the host has handed to plugin.Open, in
// order, failed ones included: their packages stay in the process.
func (s *Swapper) triedFacts(st *control.Status) ([]*preflight.Facts, error) {
	var out []*preflight.Facts
	for _, v := range st.Versions {
		if v.State == control.StateFailed && preflightRefused(v) {
			continue // the preflight refused it before plugin.Open: nothing of it is in the process
		}
		if f, ok := s.facts.Load(v.Digest); ok && v.Digest != "" {
			out = append(out, f.(*preflight.Facts))
			continue
		}
		// The host reports its own path; the agent may mount the volume elsewhere.
		f, err := preflight.ReadFactsFirst(v.Path, filepath.Join(s.opts.SharedDir, filepath.Base(v.Path)))
		if err != nil {
			return nil, fmt.Errorf("read the build facts of %s, which the host already opened, for the preflight: %w (plugin files must stay in the shared directory for the life of the pod)",
				v.Digest, err)
		}
		if v.Digest != "" {
			s.facts.Store(v.Digest, f)
		}
		out = append(out, f)
	}
	return out, nil
}

func (s *Swapper) count(result string) {
	if s.opts.Metrics != nil {
		s.opts.Metrics.Loads.WithLabelValues(result).Inc()
	}
}

func (s *Swapper) status(ctx context.Context) (*control.Status, error) {
	st, err := call(ctx, s, s.opts.HostTimeout, false, s.opts.Host.Status)
	if err != nil {
		s.opts.Metrics.observeStatus(nil)
		return nil, fmt.Errorf("read the host's status on %s: %w", s.opts.Host.Socket(), err)
	}
	s.opts.Metrics.observeStatus(st)
	return st, nil
}

// Status reads the host's status (for probes and the agent's polling).
func (s *Swapper) Status(ctx context.Context) (*control.Status, error) { return s.status(ctx) }

// BusyFor is how long the load, swap or route request in flight has been waiting (0: none).
func (s *Swapper) BusyFor() time.Duration {
	if t := s.busySince.Load(); t != 0 {
		return s.clock.Since(time.Unix(0, t))
	}
	return 0
}

func (s *Swapper) call(ctx context.Context, timeout time.Duration, fn func(context.Context) (*control.SwapResult, error)) (*control.SwapResult, error) {
	return call(ctx, s, timeout, true, fn)
}

// call runs one control request with a deadline. track marks a request that changes the host
// (load, swap, route) as in flight; only the pipeline makes those, one at a time, while
// status reads also come from probes, concurrently.
func call[T any](ctx context.Context, s *Swapper, timeout time.Duration, track bool, fn func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if track {
		s.busySince.Store(s.clock.Now().UnixNano())
		defer s.busySince.Store(0)
	}
	return fn(ctx)
}

// Satisfied reports whether the host serves the target already.
func Satisfied(t Target, st *control.Status) bool {
	if !t.Canary() {
		return st.IsCurrent(t.Digest) && st.Canary == ""
	}
	if !st.IsCurrent(t.StableDigest) {
		return false
	}
	if t.Percent == 0 {
		v := st.Version(t.Digest)
		return st.Canary == "" && v != nil && v.State != control.StateFailed && !v.LoadedAt.IsZero()
	}
	return st.IsCanary(t.Digest) && st.CanaryPercent == t.Percent
}
