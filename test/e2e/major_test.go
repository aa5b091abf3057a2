//go:build e2e

package e2e

import (
	"fmt"
	"slices"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

const (
	majorApp = "greeter-major"
	// api2Image is the greeter host declaring plugin API 2.0.0 and serving the major drill
	// plugin from the start (hack/images): the image a major API change needs.
	api2Image = "splice-greeter:api2"
)

// The story: a plugin's contract changes major version (1.x to 2.0.0). No host built against
// 1.x may load it, so the pods must be recreated from an image whose host is built against 2.x.
// The team changes its StatefulSet's image (OnDelete: nothing moves yet) and points a Strict
// CompilerVersion with recreateIncompatible at the 2.0.0 plugin. Every old pod refuses it before
// loading anything (MajorAPIChange) and stays Ready; Splice evicts each once, through the
// Eviction API, so the PodDisruptionBudget holds; the StatefulSet recreates them from the new
// template, whose hosts load the plugin, and the rollout completes.
var _ = Describe("Strict and a major API change", Ordered, func() {
	It("recreates the pods from their template's new image, one at a time under its disruption budget, and completes", func(ctx SpecContext) {
		cli, err := client.New(restConfig, client.Options{Scheme: scheme()})
		Expect(err).NotTo(HaveOccurred())
		ensureServiceAccount(ctx, strictServiceAccount)
		ensureInfra(ctx)

		By("building and pushing the major drill plugin (API 2.0.0)")
		ref, digest := pushGreeterPlugin(ctx, "major", "greeter-major", "2.0.0")

		By("running 2 pods of a StatefulSet (OnDelete updates) on the usual image, with a disruption budget of one")
		startOnDeleteFleet(ctx, majorApp, greeterImage)
		pdb := &policyv1.PodDisruptionBudget{
			ObjectMeta: metav1.ObjectMeta{Name: majorApp, Namespace: testNamespace},
			Spec: policyv1.PodDisruptionBudgetSpec{MaxUnavailable: ptr.To(intstr.FromInt32(1)),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": majorApp}}},
		}
		_, err = kube.PolicyV1().PodDisruptionBudgets(testNamespace).Create(ctx, pdb, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		readyPods := func(g Gomega, want int) map[string]*corev1.Pod { return readyPodsOf(ctx, g, majorApp, want) }
		var before map[string]*corev1.Pod
		Eventually(func(g Gomega) { before = readyPods(g, 2) }).WithContext(ctx).WithTimeout(3 * time.Minute).Should(Succeed())

		By("changing the template's image to a host built against API 2.x (OnDelete: no pod moves)")
		setTemplateImage(ctx, majorApp, api2Image)

		By("rolling the 2.0.0 plugin out with Strict and recreateIncompatible")
		start := time.Now()
		cv := strictRecreating(majorApp, ref, "2.0.0")
		Expect(cli.Create(ctx, cv)).To(Succeed())
		leastReady := 2
		var got *splicev1.CompilerVersion
		Eventually(func(g Gomega) {
			leastReady = min(leastReady, len(liveReadyPods(ctx, g, majorApp)))
			got = &splicev1.CompilerVersion{}
			g.Expect(cli.Get(ctx, client.ObjectKeyFromObject(cv), got)).To(Succeed())
			g.Expect(got.Status.Phase).To(Equal(splicev1.PhaseCompleted), "%s", got.Status.Progress)
		}).WithContext(ctx).WithTimeout(5 * time.Minute).WithPolling(100 * time.Millisecond).Should(Succeed())
		took := time.Since(start)

		By("checking that each old pod refused the change before loading, was evicted once and came back from the new image")
		for name := range before {
			i := slices.IndexFunc(got.Status.RecentFailures, func(f splicev1.PodFailure) bool {
				return f.Pod == name && f.State == splicev1.SwapIncompatible && f.Reason == splicev1.ReasonMajorAPIChange
			})
			Expect(i).To(BeNumerically(">=", 0), "pod %s refused the major change: %+v", name, got.Status.RecentFailures)
			Expect(got.Status.RecentFailures[i].Message).To(ContainSubstring("API 2.x"))
		}
		evs, err := kube.CoreV1().Events(testNamespace).List(ctx, metav1.ListOptions{FieldSelector: "reason=EvictedIncompatible"})
		Expect(err).NotTo(HaveOccurred())
		evicted := slices.DeleteFunc(evs.Items, func(e corev1.Event) bool {
			return e.InvolvedObject.Name != majorApp && !strings.Contains(e.Message, majorApp)
		})
		Expect(evicted).NotTo(BeEmpty(), "an EvictedIncompatible Event for %s", majorApp)
		GinkgoWriter.Printf("EvictedIncompatible events for %s: %d\n", majorApp, len(evicted))
		var after map[string]*corev1.Pod
		Eventually(func(g Gomega) { after = readyPods(g, 2) }).WithContext(ctx).WithTimeout(time.Minute).Should(Succeed())
		for name, p := range after {
			Expect(p.UID).NotTo(Equal(before[name].UID), "pod %s was not recreated", name)
			Expect(p.Spec.Containers[0].Image).To(Equal(api2Image))
			for _, cs := range p.Status.ContainerStatuses {
				Expect(cs.RestartCount).To(BeZero(), "pod %s container %s restarted", name, cs.Name)
			}
		}
		checkPodsServe(ctx, "app="+majorApp, ref, digest, 2)
		Expect(leastReady).To(BeNumerically(">=", 1), "the disruption budget keeps one pod Ready")
		fmt.Printf("ROLLOUT Strict with a major API change (2 pods, new image in the template): Completed in %s; each old pod refused it (MajorAPIChange), was evicted once and recreated; fewest Ready pods %d of 2\n",
			took.Round(10*time.Millisecond), leastReady)
	}, SpecTimeout(10*time.Minute))
})
