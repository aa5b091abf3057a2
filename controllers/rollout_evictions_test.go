package controllers

import (
	"fmt"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

const (
	rsA = "ReplicaSet/greeter-7d9f@7d9f"
	rsB = "ReplicaSet/billing-5c4b@5c4b"
)

// templatePod is a pod of a template, told to run newArt, in the given state (nil: no answer yet).
func templatePod(name, template string, state splicev1.SwapState) podState {
	p := podState{name: name, uid: "uid-" + name, template: template, target: splicev1.DesiredState{Artifact: newArt.Ref}}
	if state != "" {
		p.report = &splicev1.PodReport{Digest: digestA, Running: digestB, State: state, Reason: "GoVersionMismatch"}
		p.ready = true
		if state == splicev1.SwapReady {
			p.report.Running = digestA
		}
	}
	return p
}

func evictionInput(pods ...podState) *rolloutInput {
	in := baseInput(strict(true), pods)
	in.status.RolloutDigest = digestA
	in.goVersion = "1.26.8"
	return in
}

// recorded checks the eviction record the plan keeps: the artifact and, per template, the pods.
func recorded(want map[string][]string) check {
	return func(pl *rolloutPlan) (bool, string) {
		got := map[string][]string{}
		if r := pl.evictions; r != nil {
			if r.Digest != digestA {
				return false, "record for " + r.Digest
			}
			for _, tpl := range r.Templates {
				got[tpl.Template] = tpl.PodUIDs
			}
		}
		return fmt.Sprint(got) == fmt.Sprint(want), fmt.Sprintf("record %v, want %v", got, want)
	}
}

// Strict evicts the incompatible pods of a pod template once per artifact: once all of the
// template's pods have answered, it records and evicts those that cannot load the artifact; it
// tries again for a recorded pod whose eviction has not happened yet; and a pod of the template
// that is not recorded and cannot load it either — a replacement — proves the template's image
// wrong: it is left as it is and the rollout is Degraded, saying what the image needs.
func TestPlanStrictEvictsOncePerTemplate(t *testing.T) {
	inc := splicev1.SwapIncompatible
	in := evictionInput(templatePod("a1", rsA, inc), templatePod("a2", rsA, inc), templatePod("a3", rsA, ""),
		templatePod("b1", rsB, inc), templatePod("solo", "", splicev1.SwapReady))
	pl := plan(in)
	expect(t, "a3 has not answered", pl, evicts("b1"), recorded(map[string][]string{rsB: {"uid-b1"}}),
		phaseIs(splicev1.PhaseProgressing), says("waiting for every pod of "+rsA))

	in = carry(in, pl, []podState{templatePod("a1", rsA, inc), templatePod("a2", rsA, inc), templatePod("a3", rsA, inc),
		templatePod("solo", "", splicev1.SwapReady)}, t0)
	pl = plan(in)
	expect(t, "every pod of rsA answered", pl, evicts("a1", "a2", "a3"), phaseIs(splicev1.PhaseProgressing),
		recorded(map[string][]string{rsA: {"uid-a1", "uid-a2", "uid-a3"}, rsB: {"uid-b1"}}), degradedBy(splicev1.ReasonIncompatiblePods))

	// a2's eviction was refused (a disruption budget): it is asked again; a1's replacement runs it.
	in = carry(in, pl, []podState{templatePod("a2", rsA, inc), templatePod("a1-new", rsA, splicev1.SwapReady),
		templatePod("solo", "", splicev1.SwapReady)}, t0)
	pl = plan(in)
	expect(t, "a2 still there", pl, evicts("a2"), phaseIs(splicev1.PhaseProgressing),
		recorded(map[string][]string{rsA: {"uid-a1", "uid-a2", "uid-a3"}, rsB: {"uid-b1"}}))

	// a3's replacement cannot load it either: no more evictions from rsA, not even a2's.
	in = carry(in, pl, []podState{templatePod("a2", rsA, inc), templatePod("a1-new", rsA, splicev1.SwapReady),
		templatePod("a3-new", rsA, inc), templatePod("solo", "", splicev1.SwapReady)}, t0)
	pl = plan(in)
	stopped := []check{evicts(), phaseIs(splicev1.PhaseDegraded), degradedBy(splicev1.ReasonIncompatibleAfterRecreate),
		degradedSays("a3-new"), degradedSays(rsA), degradedSays("rebuild the image with go1.26.8"),
		recorded(map[string][]string{rsA: {"uid-a1", "uid-a2", "uid-a3"}, rsB: {"uid-b1"}})}
	expect(t, "a3's replacement incompatible", pl, append(stopped, says("a3-new"))...)
	in = carry(in, pl, in.pods, t0)
	expect(t, "and on the next pass", plan(in), stopped...)

	// Another template's pods are still evicted once.
	in = carry(in, pl, append(slices.Clone(in.pods), templatePod("c1", "StatefulSet/db@db-6f7", inc)), t0)
	expect(t, "another template", plan(in), evicts("c1"), phaseIs(splicev1.PhaseDegraded),
		recorded(map[string][]string{rsA: {"uid-a1", "uid-a2", "uid-a3"}, rsB: {"uid-b1"}, "StatefulSet/db@db-6f7": {"uid-c1"}}))

	// A retry forgets the record: the template's pods are evicted once more.
	in = carry(in, pl, []podState{templatePod("a3-new", rsA, inc)}, t0)
	in.controls.retry = true
	pl = plan(in)
	expect(t, "retry", pl, phaseIs(splicev1.PhaseProgressing), onNew(1))
	in = carry(in, pl, []podState{templatePod("a3-new", rsA, inc)}, t0)
	expect(t, "after the retry", plan(in), evicts("a3-new"), recorded(map[string][]string{rsA: {"uid-a3-new"}}))
}

func TestPlanStrictEvictionRecordBounds(t *testing.T) {
	t.Run("a record of another artifact is replaced", func(t *testing.T) {
		in := evictionInput(templatePod("a1", rsA, splicev1.SwapIncompatible))
		in.evictions = &splicev1.IncompatibleEvictions{Digest: digestB, Templates: []splicev1.EvictedTemplate{
			{Template: rsA, PodUIDs: []string{"uid-a0"}}}}
		expect(t, "stale record", plan(in), evicts("a1"), recorded(map[string][]string{rsA: {"uid-a1"}}))
	})
	t.Run("a full record evicts no more, and says so", func(t *testing.T) {
		var tpls []splicev1.EvictedTemplate
		for i := range splicev1.MaxEvictedPods {
			tpls = append(tpls, splicev1.EvictedTemplate{Template: fmt.Sprintf("Pod/gone-%03d", i), PodUIDs: []string{fmt.Sprint(i)}})
		}
		in := evictionInput(templatePod("a1", rsA, splicev1.SwapIncompatible))
		in.evictions = &splicev1.IncompatibleEvictions{Digest: digestA, Templates: tpls}
		pl := plan(in)
		expect(t, "full", pl, evicts(), phaseIs(splicev1.PhaseDegraded), degradedSays(fmt.Sprint(splicev1.MaxEvictedPods)),
			degradedSays("a1"))
		if n := len(pl.evictions.Templates); n != splicev1.MaxEvictedPods {
			t.Fatalf("record holds %d templates, want %d", n, splicev1.MaxEvictedPods)
		}
	})
	t.Run("the record belongs to Strict's rollout: other policies keep it as it is", func(t *testing.T) {
		rec := &splicev1.IncompatibleEvictions{Digest: digestA, Templates: []splicev1.EvictedTemplate{{Template: rsA, PodUIDs: []string{"x"}}}}
		in := baseInput(splicev1.RolloutStrategy{Type: splicev1.StrategyRollingPatch}, fleet(2))
		in.evictions = rec
		in.status.RolloutDigest = digestA
		expect(t, "rolling patch", plan(in), recorded(map[string][]string{rsA: {"x"}}))
	})
}

func TestTemplateOf(t *testing.T) {
	owner := func(kind, name string, controller bool) metav1.OwnerReference {
		return metav1.OwnerReference{APIVersion: "apps/v1", Kind: kind, Name: name, UID: "u", Controller: ptr.To(controller)}
	}
	pod := func(refs []metav1.OwnerReference, labels map[string]string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p-1", OwnerReferences: refs, Labels: labels}}
	}
	tests := []struct {
		name string
		pod  *corev1.Pod
		want string
	}{
		{name: "ReplicaSet", pod: pod([]metav1.OwnerReference{owner("ReplicaSet", "greeter-7d9f", true)},
			map[string]string{"app": "greeter", "pod-template-hash": "7d9f"}), want: "ReplicaSet/greeter-7d9f@7d9f"},
		{name: "StatefulSet", pod: pod([]metav1.OwnerReference{owner("StatefulSet", "db", true)},
			map[string]string{"controller-revision-hash": "db-6f7"}), want: "StatefulSet/db@db-6f7"},
		{name: "a controller without a template hash", pod: pod([]metav1.OwnerReference{owner("Job", "batch", true)}, nil), want: "Job/batch"},
		{name: "an owner that is not the controller", pod: pod([]metav1.OwnerReference{owner("ConfigMap", "cm", false)}, nil), want: "Pod/p-1"},
		{name: "no owner", pod: pod(nil, map[string]string{"pod-template-hash": "x"}), want: "Pod/p-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := templateOf(tt.pod); got != tt.want {
				t.Fatalf("templateOf = %q, want %q", got, tt.want)
			}
		})
	}
}
