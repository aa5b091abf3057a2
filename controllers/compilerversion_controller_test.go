package controllers

import (
	"context"
	"fmt"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

const (
	digestA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	digestB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func newNamespace() string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "cv-test-"}}
	Expect(k8sClient.Create(ctx, ns)).To(Succeed())
	return ns.Name
}

func newCV(ns string, matchLabels map[string]string) *splicev1.CompilerVersion {
	cv := &splicev1.CompilerVersion{
		ObjectMeta: metav1.ObjectMeta{Name: "greeter", Namespace: ns},
		Spec: splicev1.CompilerVersionSpec{
			GoVersion: "1.26.8",
			Plugin:    splicev1.PluginSpec{Source: splicev1.PluginSource{Artifact: "registry.example.com/greeter@" + digestA}},
			Selector:  metav1.LabelSelector{MatchLabels: matchLabels},
		},
	}
	Expect(k8sClient.Create(ctx, cv)).To(Succeed())
	return cv
}

func newPod(ns, name string, podLabels map[string]string) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: podLabels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.com/greeter:1"}}},
	}
	Expect(k8sClient.Create(ctx, pod)).To(Succeed())
	return pod
}

// report makes a pod look as its agent would leave it: the report annotation and the
// plugin-ready condition.
func report(pod *corev1.Pod, r splicev1.PodReport, ready bool) {
	raw, err := r.Encode()
	Expect(err).NotTo(HaveOccurred())
	Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(pod), pod)).To(Succeed())
	patch := client.MergeFrom(pod.DeepCopy())
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[splicev1.AnnotationReport] = raw
	Expect(k8sClient.Patch(ctx, pod, patch)).To(Succeed())
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	statusPatch := client.MergeFrom(pod.DeepCopy())
	pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{Type: splicev1.PodConditionPluginReady, Status: status})
	Expect(k8sClient.Status().Patch(ctx, pod, statusPatch)).To(Succeed())
}

func getCV(cv *splicev1.CompilerVersion) func(Gomega) *splicev1.CompilerVersion {
	return func(g Gomega) *splicev1.CompilerVersion {
		got := &splicev1.CompilerVersion{}
		g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(cv), got)).To(Succeed())
		return got
	}
}

func readyOf(g Gomega, cv *splicev1.CompilerVersion) *metav1.Condition {
	c := apimeta.FindStatusCondition(cv.Status.Conditions, splicev1.ConditionReady)
	g.Expect(c).NotTo(BeNil(), "no Ready condition yet")
	return c
}

var _ = Describe("CompilerVersion reconciler", func() {
	It("counts the pods its selector targets as they come, change labels and go", func() {
		ns := newNamespace()
		sel := map[string]string{"app": "greeter"}
		cv := newCV(ns, sel)

		Eventually(func(g Gomega) {
			got := getCV(cv)(g)
			g.Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))
			c := readyOf(g, got)
			g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(c.Reason).To(Equal(splicev1.ReasonNoTargetPods))
			g.Expect(c.ObservedGeneration).To(Equal(got.Generation))
			g.Expect(got.Status.Phase).To(Equal(splicev1.PhasePending))
		}).Should(Succeed())

		pods := []*corev1.Pod{}
		for i := 0; i < 3; i++ {
			pods = append(pods, newPod(ns, fmt.Sprintf("greeter-%d", i), sel))
		}
		newPod(ns, "other", map[string]string{"app": "other"})
		Eventually(func(g Gomega) {
			got := getCV(cv)(g)
			g.Expect(got.Status.Targeted).To(Equal(int32(3)))
			g.Expect(got.Status.Progress).To(Equal("0/3"))
			g.Expect(readyOf(g, got).Reason).To(Equal(splicev1.ReasonAwaitingArtifact))
		}).Should(Succeed())

		// A pod that leaves the selection is seen through its old labels.
		p := pods[0]
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(p), p)).To(Succeed())
		p.Labels = map[string]string{"app": "retired"}
		Expect(k8sClient.Update(ctx, p)).To(Succeed())
		Expect(k8sClient.Delete(ctx, pods[1])).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(getCV(cv)(g).Status.Targeted).To(Equal(int32(1)))
		}).Should(Succeed())

		// A spec change is observed: observedGeneration follows generation.
		got := getCV(cv)(Default)
		got.Spec.Selector.MatchLabels = map[string]string{"app": "retired"}
		Expect(k8sClient.Update(ctx, got)).To(Succeed())
		Eventually(func(g Gomega) {
			now := getCV(cv)(g)
			g.Expect(now.Generation).To(BeNumerically(">", 1))
			g.Expect(now.Status.ObservedGeneration).To(Equal(now.Generation))
			g.Expect(readyOf(g, now).ObservedGeneration).To(Equal(now.Generation))
			g.Expect(now.Status.Targeted).To(Equal(int32(1)))
		}).Should(Succeed())
	})

	It("aggregates agent reports against the current artifact and records failures", func() {
		ns := newNamespace()
		sel := map[string]string{"app": "greeter"}
		cv := newCV(ns, sel)
		pods := []*corev1.Pod{newPod(ns, "a", sel), newPod(ns, "b", sel), newPod(ns, "c", sel)}

		// Stand in for the build controller, which owns status.artifact.
		Eventually(func(g Gomega) {
			got := getCV(cv)(g)
			got.Status.Artifact = &splicev1.ArtifactStatus{Ref: "registry.example.com/greeter@" + digestA, Digest: digestA, GoVersion: "go1.26.8"}
			g.Expect(k8sClient.Status().Update(ctx, got)).To(Succeed())
		}).Should(Succeed())

		report(pods[0], splicev1.PodReport{Digest: digestA, Running: digestA, State: splicev1.SwapReady, SwapLatencySeconds: 0.007}, true)
		report(pods[1], splicev1.PodReport{Digest: digestA, Running: digestB, State: splicev1.SwapFailed, Reason: "LoadFailed",
			Error: "plugin.Open: plugin was built with a different version of package example.com/shared"}, false)
		report(pods[2], splicev1.PodReport{Digest: digestA, Running: digestB, State: splicev1.SwapIncompatible, Reason: "PackageHashMismatch"}, false)

		Eventually(func(g Gomega) {
			got := getCV(cv)(g)
			g.Expect(got.Status.Targeted).To(Equal(int32(3)))
			g.Expect(got.Status.Updated).To(Equal(int32(1)))
			g.Expect(got.Status.Ready).To(Equal(int32(1)))
			g.Expect(got.Status.Failed).To(Equal(int32(1)))
			g.Expect(got.Status.Incompatible).To(Equal(int32(1)))
			g.Expect(got.Status.Progress).To(Equal("1/3"))
			g.Expect(readyOf(g, got).Reason).To(Equal(splicev1.ReasonPodsNotUpdated))
			g.Expect(got.Status.RecentFailures).To(ConsistOf(
				And(HaveField("Pod", "b"), HaveField("Reason", "LoadFailed"), HaveField("Message", ContainSubstring("different version of package"))),
				And(HaveField("Pod", "c"), HaveField("State", splicev1.SwapIncompatible)),
			))
		}).Should(Succeed())

		// The pods recover: Ready turns True, and the failures stay on record.
		report(pods[1], splicev1.PodReport{Digest: digestA, Running: digestA, State: splicev1.SwapReady}, true)
		report(pods[2], splicev1.PodReport{Digest: digestA, Running: digestA, State: splicev1.SwapReady}, true)
		Eventually(func(g Gomega) {
			got := getCV(cv)(g)
			c := readyOf(g, got)
			g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
			g.Expect(c.Reason).To(Equal(splicev1.ReasonAllPodsReady))
			g.Expect(got.Status.Progress).To(Equal("3/3"))
			g.Expect(got.Status.RecentFailures).To(HaveLen(2))
		}).Should(Succeed())

		// A malformed report is recorded against its pod instead of being trusted or dropped.
		p := pods[0]
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(p), p)).To(Succeed())
		p.Annotations[splicev1.AnnotationReport] = `{"digest":"nope","state":"Ready"}`
		Expect(k8sClient.Update(ctx, p)).To(Succeed())
		Eventually(func(g Gomega) {
			got := getCV(cv)(g)
			g.Expect(got.Status.RecentFailures).To(ContainElement(And(HaveField("Pod", "a"), HaveField("Reason", "MalformedReport"),
				HaveField("Message", ContainSubstring("report.digest")))))
			g.Expect(got.Status.Updated).To(Equal(int32(2)))
		}).Should(Succeed())
	})

	// The status has two writers (this reconciler and the build reconciler, each with its own
	// fields); a write that lost the optimistic-lock race must reach the workqueue as an error,
	// so controller-runtime retries it with its rate-limited backoff, never be swallowed.
	It("returns a status write conflict to the workqueue", func() {
		ns := newNamespace()
		cv := newCV(ns, map[string]string{"app": "greeter"})
		// Once the suite's manager has written its status, nothing more triggers it here: a
		// status update by another writer is no event its predicates pass.
		stale := &splicev1.CompilerVersion{}
		Eventually(func(g Gomega) {
			*stale = *getCV(cv)(g)
			g.Expect(stale.Status.ObservedGeneration).To(Equal(stale.Generation))
		}).Should(Succeed())
		// What the cache held differs from what this pass decides, so it has something to write.
		stale.Status.Progress = "an older pass's"
		// Another writer changes the object after our read.
		Eventually(func(g Gomega) {
			cur := getCV(cv)(g)
			cur.Status.Progress = "written by another"
			g.Expect(k8sClient.Status().Update(ctx, cur)).To(Succeed())
		}).Should(Succeed())
		r := &CompilerVersionReconciler{Client: staleReader{Client: k8sClient, stale: stale},
			Recorder: events.NewFakeRecorder(16), Clock: clock.RealClock{}}
		_, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(cv)})
		Expect(apierrors.IsConflict(err)).To(BeTrue(), "Reconcile returned %v", err)
		Expect(getCV(cv)(Default).Status.Progress).To(Equal("written by another"), "the stale write must not land")
	})

	It("does not write status when nothing changed", func() {
		ns := newNamespace()
		sel := map[string]string{"app": "quiet"}
		cv := newCV(ns, sel)
		newPod(ns, "q", sel)
		var rv string
		Eventually(func(g Gomega) {
			got := getCV(cv)(g)
			g.Expect(got.Status.Targeted).To(Equal(int32(1)))
			rv = got.ResourceVersion
		}).Should(Succeed())
		// An annotation change triggers a reconcile (the For predicate passes annotation
		// changes) but leaves status as it was: the object must not be written again.
		got := getCV(cv)(Default)
		got.Annotations = map[string]string{"touch": "1"}
		Expect(k8sClient.Update(ctx, got)).To(Succeed())
		rv = got.ResourceVersion
		Consistently(func(g Gomega) string {
			return getCV(cv)(g).ResourceVersion
		}, "2s", "200ms").Should(Equal(rv))
	})

	It("explains a selector the schema cannot check, in status and an Event", func() {
		ns := newNamespace()
		cv := &splicev1.CompilerVersion{
			ObjectMeta: metav1.ObjectMeta{Name: "bad-selector", Namespace: ns},
			Spec: splicev1.CompilerVersionSpec{
				GoVersion: "1.26.8",
				Plugin:    splicev1.PluginSpec{Source: splicev1.PluginSource{Artifact: "registry.example.com/greeter@" + digestA}},
				Selector: metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: "app", Operator: "Within", Values: []string{"x"}}}},
			},
		}
		Expect(k8sClient.Create(ctx, cv)).To(Succeed())
		Eventually(func(g Gomega) {
			c := readyOf(g, getCV(cv)(g))
			g.Expect(c.Reason).To(Equal(splicev1.ReasonInvalidSelector))
			g.Expect(c.Message).To(ContainSubstring("spec.selector"))
			g.Expect(c.Message).To(ContainSubstring("Within"))
		}).Should(Succeed())
		Eventually(func(g Gomega) {
			var events eventsv1.EventList
			g.Expect(k8sClient.List(ctx, &events, client.InNamespace(ns))).To(Succeed())
			found := false
			for _, e := range events.Items {
				if e.Regarding.Name == cv.Name && e.Reason == splicev1.ReasonInvalidSelector && strings.Contains(e.Note, "Within") {
					found = true
				}
			}
			g.Expect(found).To(BeTrue(), "no InvalidSelector event among %d events", len(events.Items))
		}).Should(Succeed())
	})
})

// staleReader answers Gets of one CompilerVersion with a copy read earlier, as a cache that has
// not caught up yet does.
type staleReader struct {
	client.Client
	stale *splicev1.CompilerVersion
}

func (s staleReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if cv, ok := obj.(*splicev1.CompilerVersion); ok && key == client.ObjectKeyFromObject(s.stale) {
		s.stale.DeepCopyInto(cv)
		return nil
	}
	return s.Client.Get(ctx, key, obj, opts...)
}
