package controllers

import (
	"context"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

// simAgents plays the agent sidecar of every pod in a namespace, following the real pod
// protocol: when a pod's desired-artifact annotation names a digest the pod does not run, it
// writes a report and the plugin-ready condition. Only the pod side is simulated; the manager
// under test is real. Outcomes can be scripted per pod.
type simAgents struct {
	c  client.Client
	ns string

	mu sync.Mutex
	// fail maps a pod name to the state its next swap of digest ends in (Failed, Incompatible…).
	fail map[string]simFailure
	// errorsPer1000 makes pods running the digest report that many errors per 1000 calls.
	errorsPer1000 map[string]uint64
	// swaps counts swaps per pod and digest: a pod asked twice for the same digest is a bug.
	swaps map[string]map[string]int
	// running is what each pod runs, like a host would keep it.
	running map[string]string
}

type simFailure struct {
	digest string
	state  splicev1.SwapState
}

func newSimAgents(c client.Client, ns string) *simAgents {
	return &simAgents{c: c, ns: ns, fail: map[string]simFailure{}, errorsPer1000: map[string]uint64{},
		swaps: map[string]map[string]int{}, running: map[string]string{}}
}

func (a *simAgents) failNext(pod, digest string, state splicev1.SwapState) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fail[pod] = simFailure{digest, state}
}

func (a *simAgents) setErrorRate(digest string, per1000 uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.errorsPer1000[digest] = per1000
}

// swapCount returns how often pod swapped to digest.
func (a *simAgents) swapCount(pod, digest string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.swaps[pod][digest]
}

// maxSwaps returns the highest number of swaps any pod made to one digest.
func (a *simAgents) maxSwaps() int {
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

// run answers pods until ctx ends, polling like an informer's resync would (bounded work: one
// list per tick).
func (a *simAgents) run(ctx context.Context) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var pods corev1.PodList
		if err := a.c.List(ctx, &pods, client.InNamespace(a.ns)); err != nil {
			continue
		}
		for i := range pods.Items {
			a.answer(ctx, &pods.Items[i])
		}
	}
}

func (a *simAgents) answer(ctx context.Context, pod *corev1.Pod) {
	desired := pod.Annotations[splicev1.AnnotationDesiredArtifact]
	if desired == "" || pod.DeletionTimestamp != nil {
		return
	}
	digest := desired[strings.LastIndex(desired, "@")+1:]
	if old, err := splicev1.DecodeReport(pod.Annotations[splicev1.AnnotationReport]); err == nil && old.Digest == digest && old.State.Terminal() {
		a.refreshCounters(ctx, pod, old)
		return
	}
	a.mu.Lock()
	f, failing := a.fail[pod.Name]
	if failing && f.digest == digest {
		delete(a.fail, pod.Name)
	} else {
		failing = false
	}
	r := splicev1.PodReport{Artifact: desired, Digest: digest, ObservedAt: metav1.Now(), LoadedVersions: 2,
		Before: &splicev1.RuntimeSnapshot{GCCycles: 10, HeapLiveBytes: 4 << 20, ScanGlobalsBytes: 300 << 10},
		After:  &splicev1.RuntimeSnapshot{GCCycles: 11, HeapLiveBytes: 5 << 20, ScanGlobalsBytes: 442 << 10}}
	if failing {
		r.State, r.Reason, r.Error = f.state, "Simulated", "scripted "+string(f.state)
		r.Running = a.running[pod.Name]
	} else {
		if a.swaps[pod.Name] == nil {
			a.swaps[pod.Name] = map[string]int{}
		}
		a.swaps[pod.Name][digest]++
		a.running[pod.Name] = digest
		r.State, r.Running, r.SwapLatencySeconds = splicev1.SwapReady, digest, 0.008
		r.Calls, r.Errors = 1000, a.errorsPer1000[digest]
	}
	a.mu.Unlock()
	a.write(ctx, pod, &r, !failing)
}

// refreshCounters keeps the error counters in step with a scripted error rate changed after
// the swap.
func (a *simAgents) refreshCounters(ctx context.Context, pod *corev1.Pod, r *splicev1.PodReport) {
	a.mu.Lock()
	want := a.errorsPer1000[r.Running]
	a.mu.Unlock()
	if r.State != splicev1.SwapReady || r.Errors == want {
		return
	}
	r.Errors = want
	a.write(ctx, pod, r, true)
}

func (a *simAgents) write(ctx context.Context, pod *corev1.Pod, r *splicev1.PodReport, ready bool) {
	raw, err := r.Encode()
	if err != nil {
		panic(err)
	}
	patch := client.MergeFrom(pod.DeepCopy())
	pod.Annotations[splicev1.AnnotationReport] = raw
	if err := a.c.Patch(ctx, pod, patch); err != nil {
		return
	}
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	statusPatch := client.MergeFrom(pod.DeepCopy())
	found := false
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == splicev1.PodConditionPluginReady {
			pod.Status.Conditions[i].Status, found = status, true
		}
	}
	if !found {
		pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{Type: splicev1.PodConditionPluginReady, Status: status})
	}
	_ = a.c.Status().Patch(ctx, pod, statusPatch)
}
