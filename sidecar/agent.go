package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

// AgentOptions configure an Agent.
type AgentOptions struct {
	// PodName and PodNamespace name the agent's own pod. Required.
	PodName      string
	PodNamespace string
	// Kube is the API client; the agent gets, watches and patches its pod and patches its
	// pod's status, nothing else. Required.
	Kube kubernetes.Interface
	// Swapper runs the pipeline against the host. Required.
	Swapper *Swapper
	// Logger receives structured logs. Default: discard.
	Logger logr.Logger
	// Metrics, when set, counts syncs and observed rollbacks (pass the Swapper's).
	Metrics *Metrics
	// PollInterval is how often the host's status is read when nothing happens on the pod:
	// automatic rollbacks and counters are visible only there. Default 10s.
	PollInterval time.Duration
	// CountersInterval is the shortest time between report writes caused only by changed
	// call counters. Default 1m; negative: counters are written only with other changes. The
	// first counters-only write after a change of state comes sooner (FirstCountersAfter).
	CountersInterval time.Duration
	// MinBackoff and MaxBackoff bound the retry delay after a transient failure (default 1s
	// and 2m, doubling, with jitter).
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// ProbeTimeout bounds the host request behind /readyz and /livez (default 5s).
	ProbeTimeout time.Duration
	// WedgeAfter: /livez fails once a load, swap or route request has waited this long
	// (default 5m, past every bound the host library puts on a load).
	WedgeAfter time.Duration
	// Clock is where the agent reads the time and runs its timers: polling, counters,
	// backoff, and the times in what it writes. Default: the real clock. A test that is about
	// when the agent writes passes a fake one and moves it, rather than waiting.
	Clock clock.WithTicker
}

// Agent is the sidecar: it watches its own pod, brings the host to the target the pod's
// annotations name through its Swapper, and writes the outcome back (the report annotation
// and the plugin-ready condition). It serves /readyz, /livez and /metrics through Handler.
type Agent struct {
	opts  AgentOptions
	log   logr.Logger
	clock clock.WithTicker
	sw    *Swapper
	pods  typedcorev1.PodInterface

	pod  atomic.Pointer[corev1.Pod] // the newest pod seen by Get or the watch
	wake chan struct{}

	// lastWritten is the report this agent last wrote. Its own write may reach the watch
	// after the next sync; deciding from it rather than from a stale annotation keeps a
	// finished outcome from being redone. Only the sync loop touches it.
	lastWritten *splicev1.PodReport
	countersAt  time.Time
	// settling is true after a write that changed more than the counters (a swap, a new
	// state): the first counters-only write then comes after FirstCountersAfter rather than
	// CountersInterval, so a canary analysis sees the new version's calls within seconds.
	settling bool
	syncs    atomic.Int64
}

// FirstCountersAfter is how soon after a change of state the counters are written once, when
// CountersInterval is longer.
const FirstCountersAfter = 10 * time.Second

// countersIntervalOf reads the controller's request for fresher counters
// (splicev1.AnnotationCountersInterval) from the pod's desired state. Malformed annotations ask
// for nothing: the agent reports their target Failed, and has no counters to write about it.
func countersIntervalOf(pod *corev1.Pod) (time.Duration, bool) {
	d, err := splicev1.ParseDesiredState(pod.Annotations)
	if err != nil || d.CountersInterval == 0 {
		return 0, false
	}
	return d.CountersInterval, true
}

// NewAgent checks the options and returns an Agent.
func NewAgent(o AgentOptions) (*Agent, error) {
	if o.PodName == "" || o.PodNamespace == "" {
		return nil, fmt.Errorf("sidecar.NewAgent: the pod's name and namespace are required (flags --%s and --%s, or $%s and $%s from the downward API)",
			FlagPodName, FlagPodNamespace, EnvPodName, EnvPodNamespace)
	}
	if o.Kube == nil || o.Swapper == nil {
		return nil, errors.New("sidecar.NewAgent: Kube and Swapper are required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.PollInterval, 10*time.Second)
	def(&o.CountersInterval, time.Minute)
	def(&o.MinBackoff, time.Second)
	def(&o.MaxBackoff, 2*time.Minute)
	def(&o.ProbeTimeout, 5*time.Second)
	def(&o.WedgeAfter, 5*time.Minute)
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	log := o.Logger
	if log.GetSink() == nil {
		log = logr.Discard()
	}
	log = log.WithValues("pod", klog.KRef(o.PodNamespace, o.PodName))
	return &Agent{
		opts: o, log: log, clock: o.Clock, sw: o.Swapper,
		pods: o.Kube.CoreV1().Pods(o.PodNamespace),
		wake: make(chan struct{}, 1),
	}, nil
}

// Syncs is how many times the agent has compared its pod with the host.
func (a *Agent) Syncs() int64 { return a.syncs.Load() }

// Run watches the pod and syncs until ctx ends. It returns nil then; it never gives up on
// errors, which it retries with backoff and reports on the pod.
func (a *Agent) Run(ctx context.Context) error {
	ctx = logr.NewContext(ctx, a.log)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); a.watchPod(ctx) }()
	defer wg.Wait()

	poll := a.clock.NewTicker(a.opts.PollInterval)
	defer poll.Stop()
	// retry is armed after a failed sync; counters when the call counters are next due.
	var retry, counters loopTimer
	defer retry.stop()
	defer counters.stop()
	backoff := a.newBackoff()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-a.wake:
		case <-retry.c():
		case <-poll.C():
			if retry.armed() {
				continue // a retry is scheduled; polling must not shorten its backoff
			}
		case <-counters.c():
			if retry.armed() {
				continue
			}
		}
		pod := a.pod.Load()
		if pod == nil {
			continue
		}
		if a.sync(ctx, pod) {
			d := backoff()
			a.log.V(1).Info("retrying", "after", d)
			retry.after(a.clock, d)
		} else {
			backoff = a.newBackoff()
			retry.stop()
		}
		// The counters are read when they fall due, not at the next poll after that: polling
		// alone wrote a canary's first counters 10 to 20 s after its swap, which delayed its
		// analysis by as much.
		if due, ok := a.countersDue(pod); ok {
			counters.until(a.clock, due)
		} else {
			counters.stop()
		}
	}
}

// loopTimer is one of Run's timers. A timer armed for an instant stays armed while the instant
// does not change, so that one already due still fires when the loop comes by in between (a
// pod event, the agent's own writes).
type loopTimer struct {
	t  clock.Timer
	at time.Time
}

// c is the timer's channel; nil, which never delivers, while it is not armed.
func (l *loopTimer) c() <-chan time.Time {
	if l.t == nil {
		return nil
	}
	return l.t.C()
}

// armed reports whether the timer is set (it may have fired and not yet been re-armed).
func (l *loopTimer) armed() bool { return l.t != nil }

// after arms the timer d from now, whatever it was set to.
func (l *loopTimer) after(c clock.Clock, d time.Duration) {
	l.stop()
	l.t, l.at = c.NewTimer(d), c.Now().Add(d)
}

// until arms the timer for the instant at, unless it is armed for it already (fired or not: an
// instant fires once). An instant already past fires at once: it fell due while the loop was
// busy, after the sync that just ran had read what it needed.
func (l *loopTimer) until(c clock.Clock, at time.Time) {
	if l.t != nil && l.at.Equal(at) {
		return
	}
	l.stop()
	l.t, l.at = c.NewTimer(at.Sub(c.Now())), at
}

func (l *loopTimer) stop() {
	if l.t != nil {
		l.t.Stop()
		l.t = nil
	}
}

// countersInterval is the shortest time between counters-only writes for pod: the agent's
// CountersInterval, the controller's counters-interval annotation when it asks for fresher
// counters, and at most FirstCountersAfter after a change of state. 0 or less: never.
func (a *Agent) countersInterval(pod *corev1.Pod) time.Duration {
	interval := a.opts.CountersInterval
	if d, ok := countersIntervalOf(pod); ok && (interval <= 0 || d < interval) {
		interval = d
	}
	if a.settling && interval > FirstCountersAfter {
		interval = FirstCountersAfter
	}
	return interval
}

// countersDue says when the counters may be written next, once this agent has written a
// report. It says nothing (false) when counters are off.
func (a *Agent) countersDue(pod *corev1.Pod) (time.Time, bool) {
	interval := a.countersInterval(pod)
	if interval <= 0 || a.lastWritten == nil {
		return time.Time{}, false
	}
	return a.countersAt.Add(interval), true
}

// newBackoff returns successive retry delays: doubling from MinBackoff to MaxBackoff, each
// with up to 20% jitter so that a fleet of agents does not retry a registry in lockstep.
func (a *Agent) newBackoff() func() time.Duration {
	d := a.opts.MinBackoff
	return func() time.Duration {
		cur := d
		d = min(2*d, a.opts.MaxBackoff)
		return cur + time.Duration(rand.Int64N(int64(cur)/5+1))
	}
}

// sync compares the pod with the host and acts. It reports whether to retry soon.
func (a *Agent) sync(ctx context.Context, pod *corev1.Pod) (retry bool) {
	a.syncs.Add(1)
	t, desired, terr := TargetFromAnnotations(pod.Annotations)
	st, serr := a.sw.Status(ctx)
	log := a.log.WithValues("target", t.Ref)

	switch {
	case !desired:
		if serr != nil {
			log.Info("host does not answer", "error", serr.Error())
			return true
		}
		return a.setCondition(ctx, pod, conditionNoDesired(st)) != nil
	case terr != nil:
		log.Info("desired-state annotations are malformed", "error", terr.Error())
		return a.write(ctx, pod, newReport(t, splicev1.SwapFailed, ReasonInvalidDesiredArtifact, terr, st)) != nil
	}

	last := a.lastReport(pod)
	if serr != nil {
		log.Info("host does not answer on its control socket; retrying", "error", serr.Error())
		if !sameTarget(t, last) {
			// A new target: say why nothing happens yet. An outcome already reported for
			// this target stands through a blip of the host.
			a.write(ctx, pod, newReport(t, splicev1.SwapPending, ReasonHostUnavailable, serr, nil))
		}
		return true
	}

	// Before deciding: a host that died bringing the target's version in makes it Crashed.
	if _, err := a.sw.Observe(st); err != nil {
		log.Info("crash detection", "error", err.Error())
	}
	crash := a.sw.CrashOf(t.Digest)
	act, reason, msg := decide(t, st, last, crash != nil)
	switch act {
	case actKeep:
		return a.write(ctx, pod, keptReport(last, st)) != nil
	case actReady:
		return a.write(ctx, pod, readyReport(t, st, last)) != nil
	case actRolledBack:
		log.Info("the host no longer serves the desired version", "reason", reason, "detail", msg)
		if a.opts.Metrics != nil {
			a.opts.Metrics.Rollbacks.Inc()
		}
		return a.write(ctx, pod, newReport(t, splicev1.SwapRolledBack, reason, errors.New(msg), st)) != nil
	case actCrashed:
		return a.write(ctx, pod, newReport(t, splicev1.SwapCrashed, reason, crashError(crash, pod), st)) != nil
	}

	log.Info("bringing the host to the desired target", "want", t.String(), "running", st.Current)
	out := a.sw.Apply(ctx, t, func(state splicev1.SwapState) {
		a.write(ctx, pod, newReport(t, state, "", nil, st))
	})
	r := outcomeReport(out)
	if out.Err != nil {
		log.Info("target not reached", "state", out.State, "reason", out.Reason, "retry", out.Retry, "error", out.Err.Error())
	}
	werr := a.write(ctx, pod, r)
	return out.Retry || werr != nil
}

// lastReport is the report this agent last wrote, else the pod's (after a restart).
func (a *Agent) lastReport(pod *corev1.Pod) *splicev1.PodReport {
	if a.lastWritten != nil {
		return a.lastWritten
	}
	raw, ok := pod.Annotations[splicev1.AnnotationReport]
	if !ok {
		return nil
	}
	r, err := splicev1.DecodeReport(raw)
	if err != nil {
		a.log.Info("ignoring the pod's malformed report annotation", "error", err.Error())
		return nil
	}
	return r
}

// write puts the report on the pod, then the condition that goes with it, each only when it
// differs from what the pod carries.
func (a *Agent) write(ctx context.Context, pod *corev1.Pod, r *splicev1.PodReport) error {
	now := a.clock.Now()
	r.ObservedAt = metav1.NewTime(now)
	interval := a.countersInterval(pod)
	withCounters := interval > 0 && now.Sub(a.countersAt) >= interval
	var cur *splicev1.PodReport
	if raw, ok := pod.Annotations[splicev1.AnnotationReport]; ok {
		cur, _ = splicev1.DecodeReport(raw)
	}
	// cur may predate our last write (the watch lags the patch): then an identical report is
	// written once more, which is harmless, and a report someone else changed is restored.
	if cur == nil || !sameReport(cur, r, withCounters) {
		fitReport(r)
		enc, err := r.Encode()
		if err != nil {
			// A bug, not a condition of the world: the agent builds reports itself.
			a.log.Error(err, "refusing to write an invalid report", "report", fmt.Sprintf("%+v", r))
			return err
		}
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{splicev1.AnnotationReport: enc}}})
		if _, err := a.pods.Patch(ctx, a.opts.PodName, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: fieldManager}); err != nil {
			a.log.Error(err, "write the report annotation", "state", r.State)
			return fmt.Errorf("patch the report annotation of pod %s/%s: %w", a.opts.PodNamespace, a.opts.PodName, err)
		}
		a.settling = cur == nil || !sameReport(cur, r, false)
		a.lastWritten = r
		a.countersAt = now
		a.log.V(1).Info("report written", "state", r.State, "reason", r.Reason)
	}
	return a.setCondition(ctx, pod, conditionFor(r))
}

// fieldManager names the agent in managedFields.
const fieldManager = "splice-agent"

// setCondition writes the plugin-ready condition through the status subresource when its
// status, reason or message differ; the transition time moves only with the status.
func (a *Agent) setCondition(ctx context.Context, pod *corev1.Pod, c corev1.PodCondition) error {
	c.LastTransitionTime = metav1.NewTime(a.clock.Now())
	for _, old := range pod.Status.Conditions {
		if old.Type != c.Type {
			continue
		}
		if old.Status == c.Status && old.Reason == c.Reason && old.Message == c.Message {
			return nil
		}
		if old.Status == c.Status {
			c.LastTransitionTime = old.LastTransitionTime
		}
	}
	// A strategic merge patch merges conditions by type, so the kubelet's own conditions
	// are left alone.
	patch, _ := json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.PodCondition{c}}})
	if _, err := a.pods.Patch(ctx, a.opts.PodName, types.StrategicMergePatchType, patch, metav1.PatchOptions{FieldManager: fieldManager}, "status"); err != nil {
		a.log.Error(err, "write the plugin-ready condition", "status", c.Status, "reason", c.Reason)
		return fmt.Errorf("patch condition %s of pod %s/%s: %w", c.Type, a.opts.PodNamespace, a.opts.PodName, err)
	}
	a.log.V(1).Info("condition written", "status", c.Status, "reason", c.Reason)
	return nil
}

// watchPod keeps a.pod current: a GET, then a watch of that one pod (by field selector) from
// the GET's resourceVersion, again from a fresh GET whenever the watch ends. GET and WATCH,
// never LIST: the agent's Role grants no list.
func (a *Agent) watchPod(ctx context.Context) {
	backoff := a.newBackoff()
	sel := fields.OneTermEqualSelector("metadata.name", a.opts.PodName).String()
	lw := &cache.ListWatch{WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
		o.FieldSelector = sel
		return a.pods.Watch(ctx, o)
	}}
	for ctx.Err() == nil {
		pod, err := a.pods.Get(ctx, a.opts.PodName, metav1.GetOptions{})
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d := backoff()
			if apierrors.IsNotFound(err) {
				a.log.Info("own pod not found (yet?); check --pod-name/--pod-namespace", "retryAfter", d)
			} else {
				a.log.Error(err, "get own pod", "retryAfter", d)
			}
			select {
			case <-ctx.Done():
				return
			case <-a.clock.After(d):
			}
			continue
		}
		backoff = a.newBackoff()
		a.observe(pod)
		rw, err := watchtools.NewRetryWatcherWithContext(ctx, pod.ResourceVersion, lw)
		if err != nil {
			a.log.Error(err, "watch own pod")
			continue
		}
		a.consume(ctx, rw)
		rw.Stop()
	}
}

// consume applies watch events until the watch ends (410 Gone, or ctx).
func (a *Agent) consume(ctx context.Context, rw *watchtools.RetryWatcher) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-rw.ResultChan():
			if !ok {
				return
			}
			switch ev.Type {
			case watch.Added, watch.Modified:
				if pod, ok := ev.Object.(*corev1.Pod); ok {
					a.observe(pod)
				}
			case watch.Error:
				a.log.V(1).Info("pod watch ended; reading the pod again", "status", apierrors.FromObject(ev.Object).Error())
				return
			}
		}
	}
}

func (a *Agent) observe(pod *corev1.Pod) {
	a.pod.Store(pod)
	select {
	case a.wake <- struct{}{}:
	default:
	}
}
