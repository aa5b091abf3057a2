// Package simagent plays the agent sidecar of many pods at once, following the real pod
// protocol (api/v1alpha1): when a pod's desired-artifact annotation names a digest it does not
// run, it writes the report annotation and the plugin-ready condition, as the agent would after
// a swap. Only the pod side is simulated — for envtest suites and the fleet benchmark, where no
// kubelet runs pods — and outcomes can be scripted per pod.
//
// It watches pods through an informer (one watch, no polling) and answers from a work queue,
// so it scales to thousands of pods. It never touches anything but pods in its namespace.
package simagent

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

// Agents answers for every pod in one namespace.
type Agents struct {
	cs kubernetes.Interface
	ns string
	// Latency is the swap latency the simulated agents report.
	Latency time.Duration
	// Workers is how many pods are answered at once.
	Workers int

	informer cache.SharedIndexInformer
	queue    workqueue.TypedRateLimitingInterface[string]

	mu            sync.Mutex
	fail          map[string]failure
	errorsPer1000 map[string]uint64
	swaps         map[string]map[string]int
	running       map[string]string

	writes atomic.Int64
}

type failure struct {
	digest string
	state  splicev1.SwapState
}

// New returns agents for the pods of namespace ns.
func New(cs kubernetes.Interface, ns string) *Agents {
	return &Agents{cs: cs, ns: ns, Latency: 8 * time.Millisecond, Workers: 4,
		fail: map[string]failure{}, errorsPer1000: map[string]uint64{}, swaps: map[string]map[string]int{}, running: map[string]string{}}
}

// FailNext makes pod's next swap to digest end in state (Failed, Incompatible, RolledBack).
func (a *Agents) FailNext(pod, digest string, state splicev1.SwapState) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fail[pod] = failure{digest, state}
}

// SetErrorRate makes pods running digest report that many plugin errors per 1000 calls.
func (a *Agents) SetErrorRate(digest string, per1000 uint64) {
	a.mu.Lock()
	a.errorsPer1000[digest] = per1000
	a.mu.Unlock()
	for _, key := range a.informerKeys() {
		a.queue.Add(key)
	}
}

// MaxSwaps returns the most swaps any pod made to one digest: a rollout that asks a pod twice
// to load the same artifact makes it 2 (a routing change of a version it serves does not count).
func (a *Agents) MaxSwaps() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := 0
	for _, per := range a.swaps {
		for _, n := range per {
			m = max(m, n)
		}
	}
	return m
}

// Writes is how many API writes the agents made.
func (a *Agents) Writes() int64 { return a.writes.Load() }

// Start runs the agents until ctx ends and waits for the informer's first sync.
func (a *Agents) Start(ctx context.Context) error {
	factory := informers.NewSharedInformerFactoryWithOptions(a.cs, 0, informers.WithNamespace(a.ns))
	a.informer = factory.Core().V1().Pods().Informer()
	a.queue = workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	enqueue := func(obj any) {
		if key, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
			a.queue.Add(key)
		}
	}
	if _, err := a.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
	}); err != nil {
		return err
	}
	go a.informer.Run(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), a.informer.HasSynced) {
		return fmt.Errorf("pod informer for namespace %s did not sync", a.ns)
	}
	for i := 0; i < max(a.Workers, 1); i++ {
		go a.work(ctx)
	}
	go func() { <-ctx.Done(); a.queue.ShutDown() }()
	return nil
}

func (a *Agents) informerKeys() []string {
	if a.informer == nil {
		return nil
	}
	return a.informer.GetStore().ListKeys()
}

func (a *Agents) work(ctx context.Context) {
	for {
		key, quit := a.queue.Get()
		if quit {
			return
		}
		err := a.answer(ctx, key)
		if err != nil && ctx.Err() == nil {
			a.queue.AddRateLimited(key)
		} else {
			a.queue.Forget(key)
		}
		a.queue.Done(key)
	}
}

// answer brings one pod's report in line with its desired state, read as the agent reads it
// (splicev1.ParseDesiredState).
func (a *Agents) answer(ctx context.Context, key string) error {
	obj, exists, err := a.informer.GetStore().GetByKey(key)
	if err != nil || !exists {
		return err
	}
	pod := obj.(*corev1.Pod)
	if pod.DeletionTimestamp != nil {
		return nil
	}
	want, err := splicev1.ParseDesiredState(pod.Annotations)
	switch {
	case err != nil:
		return a.refuse(ctx, pod, want, err)
	case want.Artifact == "":
		return nil
	}
	old, _ := splicev1.DecodeReport(pod.Annotations[splicev1.AnnotationReport])
	r, ready := a.outcome(pod.Name, want, old)
	if r == nil {
		return nil
	}
	return a.write(ctx, pod, r, ready)
}

// refuse reports malformed desired-state annotations as the agent does: Failed, touching
// nothing, once per distinct refusal.
func (a *Agents) refuse(ctx context.Context, pod *corev1.Pod, want splicev1.DesiredState, why error) error {
	r := &splicev1.PodReport{Artifact: want.Artifact, State: splicev1.SwapFailed, Reason: splicev1.ReasonInvalidDesiredArtifact,
		Error: why.Error(), ObservedAt: metav1.Now()}
	if d := splicev1.DigestOf(want.Artifact); splicev1.ValidDigest(d) {
		r.Digest = d
	}
	a.mu.Lock()
	r.Running = a.running[pod.Name]
	a.mu.Unlock()
	if old, err := splicev1.DecodeReport(pod.Annotations[splicev1.AnnotationReport]); err == nil &&
		old.State == r.State && old.Artifact == r.Artifact && old.Error == r.Error {
		return nil
	}
	return a.write(ctx, pod, r, false)
}

// outcome is the report the pod's agent would write now, and whether it is ready; nil when the
// report it has already answers want.
func (a *Agents) outcome(pod string, want splicev1.DesiredState, old *splicev1.PodReport) (*splicev1.PodReport, bool) {
	digest := splicev1.DigestOf(want.Artifact)
	a.mu.Lock()
	defer a.mu.Unlock()
	errs := a.errorsPer1000[digest]
	if old != nil && old.Digest == digest && sameTraffic(old, want.TrafficPercent) && old.State.Terminal() {
		// Already answered; only the error counters may move (a scripted error rate).
		if old.State != splicev1.SwapReady || old.Errors == errs {
			return nil, false
		}
		old.Errors = errs
		return old, true
	}
	r := &splicev1.PodReport{Artifact: want.Artifact, Digest: digest, TrafficPercent: want.TrafficPercent, ObservedAt: metav1.Now(), LoadedVersions: 2,
		Before: &splicev1.RuntimeSnapshot{GCCycles: 10, HeapLiveBytes: 4 << 20, ScanGlobalsBytes: 300 << 10},
		After:  &splicev1.RuntimeSnapshot{GCCycles: 11, HeapLiveBytes: 5 << 20, ScanGlobalsBytes: 442 << 10}}
	if f, failing := a.fail[pod]; failing && f.digest == digest {
		delete(a.fail, pod)
		r.State, r.Reason, r.Error, r.Running = f.state, "Simulated", "scripted "+string(f.state), a.running[pod]
		return r, false
	}
	if a.swaps[pod] == nil {
		a.swaps[pod] = map[string]int{}
	}
	// Moving a version already serving from its canary share to all calls (or back) is a
	// routing change in the host, not a load: it does not count as a swap.
	if old == nil || old.Digest != digest || old.State != splicev1.SwapReady {
		a.swaps[pod][digest]++
	}
	r.State, r.Running, r.SwapLatencySeconds = splicev1.SwapReady, digest, a.Latency.Seconds()
	if want.Split() {
		// A request-level canary: the host keeps the stable artifact as Running and routes the
		// share to the desired one, as the real agent reports it.
		r.Running = splicev1.DigestOf(want.Stable)
	}
	a.running[pod] = r.Running
	r.Calls, r.Errors = 1000, errs
	return r, true
}

// sameTraffic reports whether a report is about the traffic share wanted (nil: all calls).
func sameTraffic(r *splicev1.PodReport, traffic *int32) bool {
	return (r.TrafficPercent == nil) == (traffic == nil) && (traffic == nil || *r.TrafficPercent == *traffic)
}

// write patches the report annotation, then the plugin-ready condition, as the agent does.
func (a *Agents) write(ctx context.Context, pod *corev1.Pod, r *splicev1.PodReport, ready bool) error {
	raw, err := r.Encode()
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, splicev1.AnnotationReport, raw)
	if _, err := a.cs.CoreV1().Pods(a.ns).Patch(ctx, pod.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("patch report of %s: %w", pod.Name, err)
	}
	a.writes.Add(1)
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	// A strategic merge patch merges conditions by type, like the agent's own patch.
	cond := fmt.Sprintf(`{"status":{"conditions":[{"type":%q,"status":%q,"lastTransitionTime":%q}]}}`,
		splicev1.PodConditionPluginReady, status, time.Now().UTC().Format(time.RFC3339))
	if _, err := a.cs.CoreV1().Pods(a.ns).Patch(ctx, pod.Name, types.StrategicMergePatchType, []byte(cond), metav1.PatchOptions{}, "status"); err != nil {
		return fmt.Errorf("patch condition of %s: %w", pod.Name, err)
	}
	a.writes.Add(1)
	return nil
}
