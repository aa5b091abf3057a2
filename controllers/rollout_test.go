package controllers

import (
	"context"
	"fmt"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/internal/simagent"
)

const digestC = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"

func artifactRef(d string) string { return "registry.example.com/greeter@" + d }

// rolloutFixture is a namespace with n pods, a CompilerVersion over them and simulated agents.
type rolloutFixture struct {
	ns     string
	cv     *splicev1.CompilerVersion
	agents *simagent.Agents
	pods   []string
}

func newRollout(n int, strategy splicev1.RolloutStrategy) *rolloutFixture {
	return newRolloutWith(n, strategy, func(*splicev1.CompilerVersion) {})
}

// newRolloutWith is newRollout with the CompilerVersion changed by edit before it is created.
func newRolloutWith(n int, strategy splicev1.RolloutStrategy, edit func(*splicev1.CompilerVersion)) *rolloutFixture {
	f := &rolloutFixture{ns: newNamespace()}
	sel := map[string]string{"app": "greeter"}
	f.cv = &splicev1.CompilerVersion{
		ObjectMeta: metav1.ObjectMeta{Name: "greeter", Namespace: f.ns},
		Spec: splicev1.CompilerVersionSpec{
			GoVersion: "1.26.8",
			Plugin:    splicev1.PluginSpec{Source: splicev1.PluginSource{Artifact: artifactRef(digestA)}},
			Selector:  metav1.LabelSelector{MatchLabels: sel},
			Strategy:  strategy,
		},
	}
	edit(f.cv)
	Expect(k8sClient.Create(ctx, f.cv)).To(Succeed())
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("greeter-%02d", i)
		newPod(f.ns, name, sel)
		f.pods = append(f.pods, name)
	}
	f.agents = simagent.New(kubernetes.NewForConfigOrDie(restConfig), f.ns)
	actx, stop := context.WithCancel(ctx)
	DeferCleanup(stop)
	Expect(f.agents.Start(actx)).To(Succeed())
	return f
}

// publish stands in for the build controller: it records a built artifact for the current
// generation.
func (f *rolloutFixture) publish(digest, apiVersion string) { publishFor(f.cv, digest, apiVersion) }

func (f *rolloutFixture) annotate(key, value string) {
	Eventually(func(g Gomega) {
		cv := getCV(f.cv)(g)
		if cv.Annotations == nil {
			cv.Annotations = map[string]string{}
		}
		if value == "" {
			delete(cv.Annotations, key)
		} else {
			cv.Annotations[key] = value
		}
		g.Expect(k8sClient.Update(ctx, cv)).To(Succeed())
	}).Should(Succeed())
}

func (f *rolloutFixture) waitPhase(phase splicev1.Phase) *splicev1.CompilerVersion {
	var got *splicev1.CompilerVersion
	Eventually(func(g Gomega) {
		got = getCV(f.cv)(g)
		g.Expect(got.Status.Phase).To(Equal(phase), "status: %s", conditionsOf(got))
	}).Should(Succeed())
	return got
}

// desired returns how many pods are told to run digest.
func (f *rolloutFixture) desired(g Gomega, digest string) int {
	var pods corev1.PodList
	g.Expect(k8sClient.List(ctx, &pods, client.InNamespace(f.ns))).To(Succeed())
	n := 0
	for _, p := range pods.Items {
		if strings.HasSuffix(p.Annotations[splicev1.AnnotationDesiredArtifact], "@"+digest) {
			n++
		}
	}
	return n
}

func conditionsOf(cv *splicev1.CompilerVersion) string {
	var b strings.Builder
	for _, c := range cv.Status.Conditions {
		fmt.Fprintf(&b, "%s=%s(%s: %s) ", c.Type, c.Status, c.Reason, c.Message)
	}
	return b.String()
}

func hasEvent(g Gomega, ns, reason, text string) {
	var events eventsv1.EventList
	g.Expect(k8sClient.List(ctx, &events, client.InNamespace(ns))).To(Succeed())
	for _, e := range events.Items {
		if e.Reason == reason && strings.Contains(e.Note, text) {
			return
		}
	}
	g.Expect(fmt.Sprintf("%d events", len(events.Items))).To(Equal("an event " + reason + " containing " + text))
}

var _ = Describe("Rollouts with simulated agents", func() {
	It("RollingPatch: first rollout completes, the next goes batch by batch and becomes stable", func() {
		f := newRollout(4, splicev1.RolloutStrategy{Type: splicev1.StrategyRollingPatch,
			RollingPatch: &splicev1.RollingPatchStrategy{MaxUnavailable: ptr.To(intstr.FromInt32(1))}})
		f.publish(digestA, "1.0.0")
		cv := f.waitPhase(splicev1.PhaseCompleted)
		Expect(cv.Status.StableArtifact.Digest).To(Equal(digestA))
		Expect(cv.Status.Updated).To(Equal(int32(4)))
		Expect(apimeta.IsStatusConditionTrue(cv.Status.Conditions, splicev1.ConditionReady)).To(BeTrue())
		Expect(apimeta.IsStatusConditionTrue(cv.Status.Conditions, splicev1.ConditionAvailable)).To(BeTrue())
		Expect(cv.Status.Pods).To(HaveLen(4))
		Expect(cv.Status.Pods[0].ScanGlobalsDeltaBytes).To(Equal(int64(142 << 10)))

		f.publish(digestB, "1.1.0")
		f.waitPhase(splicev1.PhaseCompleted)
		Eventually(func(g Gomega) {
			got := getCV(f.cv)(g)
			g.Expect(got.Status.StableArtifact.Digest).To(Equal(digestB))
			g.Expect(f.desired(g, digestB)).To(Equal(4))
		}).Should(Succeed())
		Expect(f.agents.MaxSwaps()).To(Equal(1), "a pod was swapped twice to the same artifact")
		Eventually(func(g Gomega) { hasEvent(g, f.ns, "Completed", digestB) }).Should(Succeed())
	})

	It("RollingPatch refuses a major plugin API change", func() {
		f := newRollout(2, splicev1.RolloutStrategy{Type: splicev1.StrategyRollingPatch})
		f.publish(digestA, "1.0.0")
		f.waitPhase(splicev1.PhaseCompleted)
		f.publish(digestB, "2.0.0")
		cv := f.waitPhase(splicev1.PhaseDegraded)
		Expect(apimeta.FindStatusCondition(cv.Status.Conditions, splicev1.ConditionProgressing).Reason).To(Equal(splicev1.ReasonMajorAPIChange))
		Eventually(func(g Gomega) { g.Expect(f.desired(g, digestB)).To(Equal(0)) }).Should(Succeed())
	})

	It("Canary: pauses for promotion, advances on promote, completes", func() {
		f := newRollout(10, splicev1.RolloutStrategy{Type: splicev1.StrategyCanary, Canary: &splicev1.CanaryStrategy{Steps: []splicev1.CanaryStep{
			{SetWeight: 20, TrafficPercent: ptr.To[int32](10), Pause: &splicev1.CanaryPause{}},
			{SetWeight: 60},
		}}})
		f.publish(digestA, "1.0.0")
		f.waitPhase(splicev1.PhaseCompleted)
		f.publish(digestB, "1.1.0")
		cv := f.waitPhase(splicev1.PhasePaused)
		Expect(apimeta.FindStatusCondition(cv.Status.Conditions, splicev1.ConditionPaused).Reason).To(Equal(splicev1.ReasonAwaitingPromotion))
		Expect(cv.Status.CurrentStepIndex).To(HaveValue(Equal(int32(0))))
		Eventually(func(g Gomega) {
			g.Expect(f.desired(g, digestB)).To(Equal(2))
			var pods corev1.PodList
			g.Expect(k8sClient.List(ctx, &pods, client.InNamespace(f.ns))).To(Succeed())
			for _, p := range pods.Items {
				if strings.HasSuffix(p.Annotations[splicev1.AnnotationDesiredArtifact], digestB) {
					g.Expect(p.Annotations[splicev1.AnnotationTrafficPercent]).To(Equal("10"))
					g.Expect(p.Annotations[splicev1.AnnotationStableArtifact]).To(Equal(artifactRef(digestA)))
				}
			}
		}).Should(Succeed())

		f.annotate(splicev1.AnnotationPromote, "1")
		cv = f.waitPhase(splicev1.PhaseCompleted)
		Expect(cv.Status.StableArtifact.Digest).To(Equal(digestB))
		Expect(cv.Status.ObservedControls.Promote).To(Equal("1"))
		Eventually(func(g Gomega) { g.Expect(f.desired(g, digestB)).To(Equal(10)) }).Should(Succeed())
		Expect(f.agents.MaxSwaps()).To(Equal(1))
	})

	It("Canary: a failing analysis rolls back, or pauses when told", func() {
		f := newRollout(4, splicev1.RolloutStrategy{Type: splicev1.StrategyCanary, Canary: &splicev1.CanaryStrategy{Steps: []splicev1.CanaryStep{
			{SetWeight: 50, Analysis: &splicev1.CanaryAnalysis{MaxErrorRatePercent: ptr.To[int32](2)}, Pause: &splicev1.CanaryPause{}},
		}}})
		f.publish(digestA, "1.0.0")
		f.waitPhase(splicev1.PhaseCompleted)
		f.agents.SetErrorRate(digestB, 100) // 10% of calls fail on the new version
		f.publish(digestB, "1.0.1")
		cv := f.waitPhase(splicev1.PhaseRolledBack)
		Expect(apimeta.FindStatusCondition(cv.Status.Conditions, splicev1.ConditionDegraded).Reason).To(Equal(splicev1.ReasonAnalysisFailed))
		Eventually(func(g Gomega) { g.Expect(f.desired(g, digestA)).To(Equal(4)) }).Should(Succeed())
		Eventually(func(g Gomega) { hasEvent(g, f.ns, "RolledBack", "error rate") }).Should(Succeed())

		// Told to pause instead: the canary pods stay where they are.
		Eventually(func(g Gomega) {
			got := getCV(f.cv)(g)
			got.Spec.Strategy.Canary.OnFailure = splicev1.FailurePause
			g.Expect(k8sClient.Update(ctx, got)).To(Succeed())
		}).Should(Succeed())
		f.publish(digestC, "1.0.2")
		f.agents.SetErrorRate(digestC, 100)
		cv = f.waitPhase(splicev1.PhasePaused)
		Expect(apimeta.FindStatusCondition(cv.Status.Conditions, splicev1.ConditionPaused).Reason).To(Equal(splicev1.ReasonAnalysisFailed))
		Eventually(func(g Gomega) { g.Expect(f.desired(g, digestC)).To(Equal(2)) }).Should(Succeed())

		// Abort returns everyone to stable.
		f.annotate(splicev1.AnnotationAbort, "true")
		cv = f.waitPhase(splicev1.PhaseRolledBack)
		Expect(apimeta.FindStatusCondition(cv.Status.Conditions, splicev1.ConditionProgressing).Reason).To(Equal(splicev1.ReasonAborted))
		Eventually(func(g Gomega) { g.Expect(f.desired(g, digestA)).To(Equal(4)) }).Should(Succeed())
	})

	It("pause and resume hold the pods where they are", func() {
		f := newRollout(4, splicev1.RolloutStrategy{Type: splicev1.StrategyRollingPatch,
			RollingPatch: &splicev1.RollingPatchStrategy{MaxUnavailable: ptr.To(intstr.FromInt32(1))}})
		f.annotate(splicev1.AnnotationPaused, "true")
		f.publish(digestA, "1.0.0")
		cv := f.waitPhase(splicev1.PhasePaused)
		Expect(apimeta.FindStatusCondition(cv.Status.Conditions, splicev1.ConditionPaused).Reason).To(Equal(splicev1.ReasonPausedByUser))
		Consistently(func(g Gomega) int { return f.desired(g, digestA) }, "1s", "100ms").Should(Equal(0))
		f.annotate(splicev1.AnnotationPaused, "")
		f.waitPhase(splicev1.PhaseCompleted)
	})

	It("Strict: evicts an incompatible pod unless a disruption budget forbids it, and rolls back on a failed swap", func() {
		f := newRollout(3, splicev1.RolloutStrategy{Type: splicev1.StrategyStrict, Strict: &splicev1.StrictStrategy{RecreateIncompatible: true}})
		f.publish(digestA, "1.0.0")
		f.waitPhase(splicev1.PhaseCompleted)

		// A budget that allows no disruption protects greeter-01 (no disruption controller
		// runs here, so its status allows nothing).
		pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "guard", Namespace: f.ns},
			Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr.To(intstr.FromInt32(1)),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"guard": "yes"}}}}
		Expect(k8sClient.Create(ctx, pdb)).To(Succeed())
		guard := &corev1.Pod{}
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: "greeter-01"}, guard)).To(Succeed())
		guard.Labels["guard"] = "yes"
		Expect(k8sClient.Update(ctx, guard)).To(Succeed())
		// The Eviction API ignores budgets for pods that are not running, and nothing runs
		// pods here: report it running and ready, as a kubelet would.
		guard.Status.Phase = corev1.PodRunning
		guard.Status.Conditions = append(guard.Status.Conditions, corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionTrue})
		Expect(k8sClient.Status().Update(ctx, guard)).To(Succeed())

		f.agents.FailNext("greeter-00", digestB, splicev1.SwapIncompatible)
		f.agents.FailNext("greeter-01", digestB, splicev1.SwapIncompatible)
		f.publish(digestB, "1.0.1")
		Eventually(func(g Gomega) {
			err := k8sClient.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: "greeter-00"}, &corev1.Pod{})
			g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "greeter-00 should have been evicted")
		}).Should(Succeed())
		Consistently(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: "greeter-01"}, &corev1.Pod{})).To(Succeed())
		}, "1s", "200ms").Should(Succeed())
		Eventually(func(g Gomega) {
			cv := getCV(f.cv)(g)
			g.Expect(cv.Status.Incompatible).To(Equal(int32(1)))
			g.Expect(apimeta.FindStatusCondition(cv.Status.Conditions, splicev1.ConditionDegraded).Reason).To(Equal(splicev1.ReasonIncompatiblePods))
		}).Should(Succeed())
		Eventually(func(g Gomega) { hasEvent(g, f.ns, "EvictedIncompatible", "greeter-00") }).Should(Succeed())

		// The budget goes; the pod is evicted, its replacement (a new name) swaps, and the
		// rollout completes.
		Expect(k8sClient.Delete(ctx, pdb)).To(Succeed())
		Eventually(func(g Gomega) {
			err := k8sClient.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: "greeter-01"}, &corev1.Pod{})
			g.Expect(apierrors.IsNotFound(err)).To(BeTrue())
		}).Should(Succeed())
		newPod(f.ns, "greeter-replacement", map[string]string{"app": "greeter"})
		f.waitPhase(splicev1.PhaseCompleted)

		// One failed swap rolls every pod back.
		f.agents.FailNext("greeter-02", digestC, splicev1.SwapFailed)
		f.publish(digestC, "1.0.2")
		f.waitPhase(splicev1.PhaseRolledBack)
		Eventually(func(g Gomega) { g.Expect(f.desired(g, digestB)).To(Equal(2)) }).Should(Succeed())
	})

	It("a restarted manager resumes the rollout without swapping any pod twice", func() {
		f := newRollout(8, splicev1.RolloutStrategy{Type: splicev1.StrategyRollingPatch,
			RollingPatch: &splicev1.RollingPatchStrategy{MaxUnavailable: ptr.To(intstr.FromInt32(2))}})
		f.publish(digestA, "1.0.0")
		f.waitPhase(splicev1.PhaseCompleted)
		f.publish(digestB, "1.0.1")
		Eventually(func(g Gomega) { g.Expect(f.desired(g, digestB)).To(BeNumerically(">=", 2)) }).Should(Succeed())
		stopManager()
		stopManager = startManager()
		cv := f.waitPhase(splicev1.PhaseCompleted)
		Expect(cv.Status.StableArtifact.Digest).To(Equal(digestB))
		Expect(f.agents.MaxSwaps()).To(Equal(1))
	})

	It("scale-up mid-canary keeps the members and tops the step up", func() {
		f := newRollout(5, splicev1.RolloutStrategy{Type: splicev1.StrategyCanary, Canary: &splicev1.CanaryStrategy{Steps: []splicev1.CanaryStep{
			{SetWeight: 40, Pause: &splicev1.CanaryPause{}},
		}}})
		f.publish(digestA, "1.0.0")
		f.waitPhase(splicev1.PhaseCompleted)
		f.publish(digestB, "1.0.1")
		f.waitPhase(splicev1.PhasePaused)
		var before []string
		Eventually(func(g Gomega) {
			before = f.members(g, digestB)
			g.Expect(before).To(HaveLen(2))
		}).Should(Succeed())
		for i := 5; i < 10; i++ {
			newPod(f.ns, fmt.Sprintf("greeter-%02d", i), map[string]string{"app": "greeter"})
		}
		Eventually(func(g Gomega) {
			now := f.members(g, digestB)
			g.Expect(now).To(HaveLen(4))
			g.Expect(now).To(ContainElements(before))
		}).Should(Succeed())
	})
})

func (f *rolloutFixture) members(g Gomega, digest string) []string {
	var pods corev1.PodList
	g.Expect(k8sClient.List(ctx, &pods, client.InNamespace(f.ns))).To(Succeed())
	var out []string
	for _, p := range pods.Items {
		if strings.HasSuffix(p.Annotations[splicev1.AnnotationDesiredArtifact], "@"+digest) {
			out = append(out, p.Name)
		}
	}
	return out
}
