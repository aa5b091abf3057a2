package controllers

import (
	"context"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/internal/simagent"
)

// A pod two CompilerVersions select belongs to the oldest of them, then to the first by name;
// one being deleted, or whose selector is unusable, claims nothing.
func TestOwnerOf(t *testing.T) {
	at := func(sec int) metav1.Time { return metav1.NewTime(t0.Add(time.Duration(sec) * time.Second)) }
	cv := func(name string, created metav1.Time, sel map[string]string) splicev1.CompilerVersion {
		return splicev1.CompilerVersion{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: created},
			Spec: splicev1.CompilerVersionSpec{Selector: metav1.LabelSelector{MatchLabels: sel}}}
	}
	deleting := cv("oldest-but-deleted", at(-10), map[string]string{"app": "greeter"})
	deleting.DeletionTimestamp = ptrTime(at(5))
	bad := cv("bad-selector", at(-20), nil)
	bad.Spec.Selector.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "app", Operator: "Within"}}
	empty := cv("empty-selector", at(-30), nil)
	cvs := []splicev1.CompilerVersion{
		cv("zeta", at(0), map[string]string{"app": "greeter"}),
		cv("beta", at(1), map[string]string{"tier": "backend"}),
		cv("alpha", at(1), map[string]string{"tier": "backend", "app": "greeter"}),
		deleting, bad, empty,
	}
	tests := []struct {
		labels labels.Set
		want   string
	}{
		{labels: labels.Set{"app": "greeter", "tier": "backend"}, want: "zeta"}, // the oldest, though last by name
		{labels: labels.Set{"tier": "backend"}, want: "beta"},
		{labels: labels.Set{"tier": "backend", "app": "greeter", "x": "y"}, want: "zeta"},
		{labels: labels.Set{"other": "pod"}, want: ""},
	}
	cs := claimants(cvs)
	for _, tt := range tests {
		if got := ownerOf(cs, tt.labels); got != tt.want {
			t.Errorf("owner of a pod labelled %s = %q, want %q", tt.labels, got, tt.want)
		}
	}
	// Created in the same second: the first by name wins, whatever the list order.
	same := []splicev1.CompilerVersion{cv("b", at(0), map[string]string{"app": "x"}), cv("a", at(0), map[string]string{"app": "x"})}
	if got := ownerOf(claimants(same), labels.Set{"app": "x"}); got != "a" {
		t.Errorf("tie: owner %q, want a", got)
	}
}

func ptrTime(t metav1.Time) *metav1.Time { return &t }

// publishFor stands in for the build controller: a built artifact at the current generation.
func publishFor(cv *splicev1.CompilerVersion, digest, apiVersion string) {
	Eventually(func(g Gomega) {
		got := getCV(cv)(g)
		got.Status.Artifact = &splicev1.ArtifactStatus{Ref: artifactRef(digest), Digest: digest, GoVersion: "go1.26.8", APIVersion: apiVersion}
		apimeta.SetStatusCondition(&got.Status.Conditions, metav1.Condition{Type: splicev1.ConditionBuilt, Status: metav1.ConditionTrue,
			Reason: "Built", Message: "test", ObservedGeneration: got.Generation})
		g.Expect(k8sClient.Status().Update(ctx, got)).To(Succeed())
	}).Should(Succeed())
}

// toldBy returns the artifact digest a pod is told and the CompilerVersion its annotation names.
func toldBy(g Gomega, ns, pod string) (digest, cv string) {
	p := &corev1.Pod{}
	g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: pod}, p)).To(Succeed())
	return splicev1.DigestOf(p.Annotations[splicev1.AnnotationDesiredArtifact]), p.Annotations[splicev1.AnnotationCompilerVersion]
}

var _ = Describe("Two CompilerVersions selecting the same pod", func() {
	It("the older one owns it, the other is Degraded and never tells it anything, and takes over when the owner goes", func() {
		ns := newNamespace()
		agents := simagent.New(kubernetes.NewForConfigOrDie(restConfig), ns)
		actx, stop := context.WithCancel(ctx)
		DeferCleanup(stop)
		Expect(agents.Start(actx)).To(Succeed())
		newPod(ns, "shared", map[string]string{"app": "greeter", "tier": "backend"})
		newPod(ns, "only-a", map[string]string{"app": "greeter"})
		newPod(ns, "only-b", map[string]string{"tier": "backend"})

		// Both created directly, as two creates racing past the admission webhook would be.
		a := newCV(ns, map[string]string{"app": "greeter"})
		b := &splicev1.CompilerVersion{ObjectMeta: metav1.ObjectMeta{Name: "greeter-b", Namespace: ns}, Spec: *a.Spec.DeepCopy()}
		b.Spec.Selector = metav1.LabelSelector{MatchLabels: map[string]string{"tier": "backend"}}
		Expect(k8sClient.Create(ctx, b)).To(Succeed())
		publishFor(a, digestA, "1.0.0")
		publishFor(b, digestB, "1.0.0")

		owned := func(g Gomega, pod, digest, cv string) {
			d, by := toldBy(g, ns, pod)
			g.Expect(d).To(Equal(digest), "pod %s", pod)
			g.Expect(by).To(Equal(cv), "pod %s", pod)
		}
		Eventually(func(g Gomega) {
			owned(g, "shared", digestA, a.Name)
			owned(g, "only-a", digestA, a.Name)
			owned(g, "only-b", digestB, b.Name)
			got := getCV(b)(g)
			d := apimeta.FindStatusCondition(got.Status.Conditions, splicev1.ConditionDegraded)
			g.Expect(d).NotTo(BeNil())
			g.Expect(d.Status).To(Equal(metav1.ConditionTrue))
			g.Expect(d.Reason).To(Equal(splicev1.ReasonOverlappingSelector))
			g.Expect(d.Message).To(And(ContainSubstring(`"greeter"`), ContainSubstring("shared")))
			g.Expect(got.Status.Targeted).To(Equal(int32(1)))
			g.Expect(got.Status.Phase).To(Equal(splicev1.PhaseDegraded))
			g.Expect(getCV(a)(g).Status.Targeted).To(Equal(int32(2)))
			g.Expect(apimeta.IsStatusConditionFalse(getCV(a)(g).Status.Conditions, splicev1.ConditionDegraded)).To(BeTrue())
		}).Should(Succeed())
		Consistently(func(g Gomega) { owned(g, "shared", digestA, a.Name) }, "1s", "100ms").Should(Succeed())

		// A label change later: only-b now matches the older one too, which claims it.
		p := &corev1.Pod{}
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "only-b"}, p)).To(Succeed())
		p.Labels["app"] = "greeter"
		Expect(k8sClient.Update(ctx, p)).To(Succeed())
		Eventually(func(g Gomega) {
			owned(g, "only-b", digestA, a.Name)
			got := getCV(b)(g)
			g.Expect(got.Status.Targeted).To(Equal(int32(0)))
			g.Expect(apimeta.FindStatusCondition(got.Status.Conditions, splicev1.ConditionDegraded).Message).To(ContainSubstring("only-b"))
		}).Should(Succeed())

		// The owner goes: the other takes its pods over.
		Expect(k8sClient.Delete(ctx, a)).To(Succeed())
		Eventually(func(g Gomega) {
			owned(g, "shared", digestB, b.Name)
			owned(g, "only-b", digestB, b.Name)
			got := getCV(b)(g)
			g.Expect(got.Status.Targeted).To(Equal(int32(2)))
			g.Expect(apimeta.IsStatusConditionFalse(got.Status.Conditions, splicev1.ConditionDegraded)).To(BeTrue(), conditionsOf(got))
			g.Expect(got.Status.Phase).To(Equal(splicev1.PhaseCompleted))
		}).Should(Succeed())
		Expect(strings.Contains(conditionsOf(getCV(b)(Default)), splicev1.ReasonOverlappingSelector)).To(BeFalse())
	})
})

// The loser of an overlap is Degraded, saying which CompilerVersion owns which pods; a phase
// that is a decision the next plan reads back is kept, and once the overlap is gone a rolled
// back rollout goes on saying why it failed, not that selectors overlapped.
func TestWithOverlap(t *testing.T) {
	foreign := []foreignPod{{pod: "p2", owner: "billing"}, {pod: "p1", owner: "billing"}, {pod: "q", owner: "alpha"}}
	in := baseInput(strict(false), fleet(2))
	in.stable = newArt
	pl := plan(in)
	withOverlap(pl, foreign)
	expect(t, "completed", pl, phaseIs(splicev1.PhaseDegraded), degradedBy(splicev1.ReasonOverlappingSelector),
		degradedSays(`CompilerVersion "alpha" owns q, CompilerVersion "billing" owns p1, p2`), says("make the selectors disjoint"))

	// A rollback, with the overlap: RolledBack stays, the failure is said after the overlap.
	in = baseInput(strict(false), fleet(2))
	pl = plan(in)
	in = carry(in, pl, applyPlan(in.pods, pl, map[string]splicev1.SwapState{"p00": splicev1.SwapFailed}), t0)
	pl = plan(in)
	withOverlap(pl, foreign)
	expect(t, "rolled back", pl, phaseIs(splicev1.PhaseRolledBack), degradedBy(splicev1.ReasonOverlappingSelector),
		degradedSays("Strict: the swap of "+digestA+" failed on p00"))
	// The overlap is gone: the next pass says the rollback's own reason again.
	in = carry(in, pl, in.pods, t0)
	expect(t, "overlap gone", plan(in), phaseIs(splicev1.PhaseRolledBack), degradedBy(splicev1.ReasonRolledBack))

	pl = plan(in)
	withOverlap(pl, nil)
	expect(t, "no overlap", pl, phaseIs(splicev1.PhaseRolledBack), degradedBy(splicev1.ReasonRolledBack))
}
