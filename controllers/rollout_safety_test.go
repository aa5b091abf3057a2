package controllers

import (
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

// countEvents counts the Events about the object named regarding with this reason and a note
// containing every part.
func countEvents(g Gomega, ns, regarding, reason string, parts ...string) int {
	var events eventsv1.EventList
	g.Expect(k8sClient.List(ctx, &events, client.InNamespace(ns))).To(Succeed())
	n := 0
	for _, e := range events.Items {
		if e.Regarding.Name != regarding || e.Reason != reason {
			continue
		}
		all := true
		for _, p := range parts {
			all = all && strings.Contains(e.Note, p)
		}
		if all {
			n++
		}
	}
	return n
}

func degradedOf(g Gomega, cv *splicev1.CompilerVersion) *metav1.Condition {
	d := apimeta.FindStatusCondition(cv.Status.Conditions, splicev1.ConditionDegraded)
	g.Expect(d).NotTo(BeNil(), "no Degraded condition yet")
	return d
}

// podExists reports whether the pod is still there.
func podExists(g Gomega, ns, name string) bool {
	err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &corev1.Pod{})
	if apierrors.IsNotFound(err) {
		return false
	}
	g.Expect(err).NotTo(HaveOccurred())
	return true
}

var _ = Describe("Rollouts that fail safely", func() {
	It("Strict: a host that crashed running the artifact rolls every pod back, and status and Events say so", func() {
		f := newRollout(3, strict(false))
		f.publish(digestA, "1.0.0")
		f.waitPhase(splicev1.PhaseCompleted)
		f.agents.FailNext("greeter-01", digestB, splicev1.SwapCrashed)
		f.publish(digestB, "1.0.1")
		cv := f.waitPhase(splicev1.PhaseRolledBack)
		Expect(cv.Status.RecentFailures).To(ContainElement(And(HaveField("Pod", "greeter-01"), HaveField("State", splicev1.SwapCrashed),
			HaveField("Message", ContainSubstring("the host crashed running "+digestB)))))
		Expect(degradedOf(Default, cv).Message).To(And(ContainSubstring("greeter-01"), ContainSubstring("the host crashed running "+digestB)))
		// status.failed counts the pods failing now: greeter-01 may already be back on the
		// stable artifact when the phase is read, so the count is TestCountPodsAndReady's to
		// check (Crashed counts as failed); the failure list above keeps what happened.
		Eventually(func(g Gomega) {
			g.Expect(f.desired(g, digestA)).To(Equal(3))
			g.Expect(countEvents(g, f.ns, f.cv.Name, string(splicev1.PhaseRolledBack), "greeter-01", "the host crashed running "+digestB)).To(Equal(1))
			g.Expect(countEvents(g, f.ns, f.cv.Name, "HostCrashed", "greeter-01", "the host crashed running "+digestB)).To(Equal(1))
		}).Should(Succeed())
	})

	It("RollingPatch rolls a failed swap back by default", func() {
		f := newRollout(4, splicev1.RolloutStrategy{Type: splicev1.StrategyRollingPatch,
			RollingPatch: &splicev1.RollingPatchStrategy{MaxUnavailable: ptr.To(intstr.FromInt32(1))}})
		f.publish(digestA, "1.0.0")
		f.waitPhase(splicev1.PhaseCompleted)
		for _, p := range f.pods {
			f.agents.FailNext(p, digestB, splicev1.SwapFailed)
		}
		f.publish(digestB, "1.0.1")
		cv := f.waitPhase(splicev1.PhaseRolledBack)
		Expect(degradedOf(Default, cv).Reason).To(Equal(splicev1.ReasonSwapFailed))
		Expect(cv.Status.StableArtifact.Digest).To(Equal(digestA))
		Eventually(func(g Gomega) {
			g.Expect(f.desired(g, digestA)).To(Equal(4))
			g.Expect(countEvents(g, f.ns, f.cv.Name, string(splicev1.PhaseRolledBack), digestA)).To(Equal(1))
		}).Should(Succeed())
	})

	It("tells every targeted pod the CompilerVersion's consent to a minor API change and its bound on loaded versions", func() {
		consenting := newRolloutWith(2, splicev1.RolloutStrategy{Type: splicev1.StrategyStrict}, func(cv *splicev1.CompilerVersion) {
			cv.Spec.Plugin.AllowMinorAPIChange = true
			cv.Spec.MaxLoadedVersions = ptr.To[int32](3)
		})
		defaults := newRollout(2, splicev1.RolloutStrategy{Type: splicev1.StrategyStrict})
		consenting.publish(digestA, "1.0.0")
		defaults.publish(digestA, "1.0.0")
		consenting.waitPhase(splicev1.PhaseCompleted)
		defaults.waitPhase(splicev1.PhaseCompleted)
		for _, tc := range []struct {
			f              *rolloutFixture
			allow, maxLoad string
		}{{consenting, "true", "3"}, {defaults, "", "8"}} {
			for _, name := range tc.f.pods {
				p := &corev1.Pod{}
				Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: tc.f.ns, Name: name}, p)).To(Succeed())
				Expect(p.Annotations[splicev1.AnnotationAllowMinorAPIChange]).To(Equal(tc.allow), "pod %s/%s", tc.f.ns, name)
				Expect(p.Annotations[splicev1.AnnotationMaxLoadedVersions]).To(Equal(tc.maxLoad), "pod %s/%s", tc.f.ns, name)
			}
		}
	})

	It("Strict evicts a ReplicaSet's incompatible pod once; a replacement from the same template is left, Degraded, with one Event", func() {
		ns := newNamespace()
		sel := map[string]string{"app": "greeter", "pod-template-hash": "7d9f"}
		rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "greeter-7d9f", Namespace: ns},
			Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To[int32](1), Selector: &metav1.LabelSelector{MatchLabels: sel},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: sel},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.com/greeter:1"}}}}}}
		Expect(k8sClient.Create(ctx, rs)).To(Succeed())
		// No ReplicaSet controller runs here: the test creates the pods it would.
		rsPod := func(name string) *corev1.Pod {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: sel,
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: ptr.To(true)}}},
				Spec: rs.Spec.Template.Spec}
			Expect(k8sClient.Create(ctx, pod)).To(Succeed())
			return pod
		}
		cv := &splicev1.CompilerVersion{ObjectMeta: metav1.ObjectMeta{Name: "greeter", Namespace: ns},
			Spec: splicev1.CompilerVersionSpec{GoVersion: "1.26.8",
				Plugin:   splicev1.PluginSpec{Source: splicev1.PluginSource{Artifact: artifactRef(digestA)}},
				Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "greeter"}},
				Strategy: strict(true)}}
		Expect(k8sClient.Create(ctx, cv)).To(Succeed())
		first := rsPod("greeter-7d9f-aaaaa")
		publishFor(cv, digestA, "2.0.0")
		incompatible := func(pod *corev1.Pod) {
			Eventually(func(g Gomega) {
				d, _ := toldBy(g, ns, pod.Name)
				g.Expect(d).To(Equal(digestA))
			}).Should(Succeed())
			report(pod, splicev1.PodReport{Artifact: artifactRef(digestA), Digest: digestA, State: splicev1.SwapIncompatible,
				Reason: splicev1.ReasonMajorAPIChange, Error: "the plugin declares API 2.0.0; this host serves API 1.x"}, true)
		}
		image := "its image must carry a host built against plugin API 2.x"

		incompatible(first)
		Eventually(func(g Gomega) {
			g.Expect(podExists(g, ns, first.Name)).To(BeFalse(), "the incompatible pod should have been evicted")
			got := getCV(cv)(g)
			g.Expect(got.Status.IncompatibleEvictions).To(HaveValue(Equal(splicev1.IncompatibleEvictions{Digest: digestA,
				Templates: []splicev1.EvictedTemplate{{Template: "ReplicaSet/greeter-7d9f@7d9f", PodUIDs: []string{string(first.UID)}}}})))
			g.Expect(countEvents(g, ns, cv.Name, "EvictedIncompatible", first.Name)).To(Equal(1))
		}).Should(Succeed())

		replacement := rsPod("greeter-7d9f-bbbbb")
		incompatible(replacement)
		Eventually(func(g Gomega) {
			got := getCV(cv)(g)
			g.Expect(got.Status.Phase).To(Equal(splicev1.PhaseDegraded), conditionsOf(got))
			d := degradedOf(g, got)
			g.Expect(d.Reason).To(Equal(splicev1.ReasonIncompatibleAfterRecreate))
			g.Expect(d.Message).To(And(ContainSubstring(replacement.Name), ContainSubstring(image), ContainSubstring("ReplicaSet/greeter-7d9f")))
			g.Expect(countEvents(g, ns, cv.Name, string(splicev1.PhaseDegraded), replacement.Name, image)).To(Equal(1))
		}).Should(Succeed())
		never := func(g Gomega) {
			g.Expect(podExists(g, ns, replacement.Name)).To(BeTrue(), "the replacement must not be evicted")
			g.Expect(countEvents(g, ns, cv.Name, "EvictedIncompatible")).To(Equal(1))
			g.Expect(countEvents(g, ns, cv.Name, string(splicev1.PhaseDegraded))).To(Equal(1))
			g.Expect(getCV(cv)(g).Status.Phase).To(Equal(splicev1.PhaseDegraded))
		}
		Consistently(never, "2s", "200ms").Should(Succeed())

		// The record is in status: a restarted manager does not evict the replacement either.
		stopManager()
		stopManager = startManager()
		Consistently(never, "3s", "200ms").Should(Succeed())
	})
})
