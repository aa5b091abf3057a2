//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/artifact"
	"github.com/splice-dev/splice/examples/greeter/greeterbuild"
)

const (
	strictApp = "greeter-strict"
	// strictServiceAccount: the chart binds the agent's role to it (suite_test.go).
	strictServiceAccount = "greeter-strict"
	// variantImage is a greeter host built with -gcflags=fmt=-N -l (hack/images): usual plugins
	// cannot load in it (PackageHashMismatch on fmt).
	variantImage = "splice-greeter:variant"
)

// The story: an application was first built with other compiler flags than the plugins. Its
// template is fixed (the usual image) but, with the OnDelete update strategy, one pod still
// runs the old build. Strict with recreateIncompatible finds that pod Incompatible in its
// preflight, evicts it, its StatefulSet recreates it from the fixed template, and the rollout
// completes on every pod.
var _ = Describe("Strict and an incompatible pod", Ordered, func() {
	It("evicts the pod whose host cannot load the plugin; it is recreated from its fixed template and the rollout completes", func(ctx SpecContext) {
		cli, err := client.New(restConfig, client.Options{Scheme: scheme()})
		Expect(err).NotTo(HaveOccurred())
		ensureServiceAccount(ctx, strictServiceAccount)
		ensureInfra(ctx)

		By("building and pushing plugin v2 the usual way")
		ref, digest := pushGreeterPlugin(ctx, "v2", "greeter-strict", "1.0.1")

		By("running 2 pods of a StatefulSet (OnDelete updates) from the variant build")
		startOnDeleteFleet(ctx, strictApp, variantImage)
		readyPods := func(g Gomega, want int) map[string]*corev1.Pod { return readyPodsOf(ctx, g, strictApp, want) }
		Eventually(func(g Gomega) { readyPods(g, 2) }).WithContext(ctx).WithTimeout(3 * time.Minute).Should(Succeed())

		By("fixing the template (the usual image) and replacing pod 0 only")
		setTemplateImage(ctx, strictApp, greeterImage)
		Expect(kube.CoreV1().Pods(testNamespace).Delete(ctx, strictApp+"-0", metav1.DeleteOptions{})).To(Succeed())
		var stale *corev1.Pod
		Eventually(func(g Gomega) {
			pods := readyPods(g, 2)
			g.Expect(pods[strictApp+"-0"].Spec.Containers[0].Image).To(Equal(greeterImage))
			stale = pods[strictApp+"-1"]
			g.Expect(stale.Spec.Containers[0].Image).To(Equal(variantImage))
		}).WithContext(ctx).WithTimeout(3 * time.Minute).Should(Succeed())

		By("rolling v2 out with Strict and recreateIncompatible")
		start := time.Now()
		cv := strictRecreating(strictApp, ref, "1.0.1")
		Expect(cli.Create(ctx, cv)).To(Succeed())
		got := waitPhase(ctx, cli, client.ObjectKeyFromObject(cv), digest, cv.Generation, splicev1.PhaseCompleted, splicev1.PhaseBuildFailed, splicev1.PhaseRolledBack)
		took := time.Since(start)

		By("checking that the stale pod was found Incompatible, evicted and recreated from the fixed template")
		var incompatible *splicev1.PodFailure
		for i, f := range got.Status.RecentFailures {
			if f.Pod == stale.Name && f.State == splicev1.SwapIncompatible {
				incompatible = &got.Status.RecentFailures[i]
			}
		}
		Expect(incompatible).NotTo(BeNil(), "status.recentFailures %+v", got.Status.RecentFailures)
		Expect(incompatible.Reason).To(Equal("PackageHashMismatch"), "%+v", incompatible)
		Expect(incompatible.Message).To(ContainSubstring("fmt"))
		evs, err := kube.CoreV1().Events(testNamespace).List(ctx, metav1.ListOptions{FieldSelector: "reason=EvictedIncompatible"})
		Expect(err).NotTo(HaveOccurred())
		Expect(evs.Items).NotTo(BeEmpty(), "an EvictedIncompatible event")
		pods := map[string]*corev1.Pod{}
		Eventually(func(g Gomega) { pods = readyPods(g, 2) }).WithContext(ctx).WithTimeout(time.Minute).Should(Succeed())
		fresh := pods[stale.Name]
		Expect(fresh.UID).NotTo(Equal(stale.UID), "pod %s was not recreated", stale.Name)
		Expect(fresh.Spec.Containers[0].Image).To(Equal(greeterImage))
		checkPodsServe(ctx, "app="+strictApp, ref, digest, 2)
		line := fmt.Sprintf("ROLLOUT Strict with an incompatible pod (first rollout, 2 pods): Completed in %s; %s reported %s (%s), evicted and recreated",
			took.Round(10*time.Millisecond), stale.Name, incompatible.State, incompatible.Reason)
		fmt.Println(line) // on stdout whatever the verbosity: these are the suite's numbers
	}, SpecTimeout(10*time.Minute))
})

// The Strict specs' fleet: a StatefulSet of opted-in greeter pods whose image changes under them.

// pushGreeterPlugin builds the greeter plugin variant with a plugin path of its own and pushes
// it to the in-cluster registry as repo, declaring apiVersion.
func pushGreeterPlugin(ctx context.Context, variant, repo, apiVersion string) (ref, digest string) {
	GinkgoHelper()
	gb := &greeterbuild.Builder{Root: repoRoot, Out: filepath.Join(repoRoot, ".local", "e2e", "plugins")}
	built, err := gb.Plugin(ctx, variant, fmt.Sprintf("e2e-%s-%d", repo, time.Now().UnixNano()))
	Expect(err).NotTo(HaveOccurred())
	ref, digest, err = artifact.Push(ctx, registryAddr+"/"+repo, built.Path, artifact.Config{APIVersion: apiVersion}, artifact.WithInsecureRegistries(registryAddr))
	Expect(err).NotTo(HaveOccurred())
	return ref, digest
}

// startOnDeleteFleet creates a StatefulSet app of 2 opted-in greeter pods on image, with
// OnDelete updates (a template change moves no pod) and the agent binding's ServiceAccount.
func startOnDeleteFleet(ctx context.Context, app, image string) {
	GinkgoHelper()
	tmpl := greeterDeployment(testNamespace, 2).Spec.Template
	tmpl.Labels = map[string]string{"app": app, splicev1.LabelInject: "true"}
	tmpl.Spec.ServiceAccountName = strictServiceAccount
	tmpl.Spec.Containers[0].Image = image
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: testNamespace},
		Spec: appsv1.StatefulSetSpec{
			Replicas:            ptr.To[int32](2),
			ServiceName:         app,
			Selector:            &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}},
			PodManagementPolicy: appsv1.ParallelPodManagement,
			UpdateStrategy:      appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType},
			Template:            tmpl,
		},
	}
	_, err := kube.AppsV1().StatefulSets(testNamespace).Create(ctx, sts, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
}

// readyPodsOf returns app's live Ready pods by name, requiring want of them.
func readyPodsOf(ctx context.Context, g Gomega, app string, want int) map[string]*corev1.Pod {
	out := liveReadyPods(ctx, g, app)
	g.Expect(out).To(HaveLen(want), "Ready pods of %s", app)
	return out
}

// liveReadyPods returns app's Ready pods that are not being deleted, by name.
func liveReadyPods(ctx context.Context, g Gomega, app string) map[string]*corev1.Pod {
	pods, err := kube.CoreV1().Pods(testNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	g.Expect(err).NotTo(HaveOccurred())
	out := map[string]*corev1.Pod{}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.DeletionTimestamp == nil && podCondition(p, corev1.PodReady) == corev1.ConditionTrue {
			out[p.Name] = p
		}
	}
	return out
}

// setTemplateImage changes the image of app's StatefulSet template (OnDelete: no pod moves).
func setTemplateImage(ctx context.Context, app, image string) {
	GinkgoHelper()
	patch := fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":"greeter","image":%q}]}}}}`, image)
	_, err := kube.AppsV1().StatefulSets(testNamespace).Patch(ctx, app, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
	Expect(err).NotTo(HaveOccurred())
}

// strictRecreating is a Strict CompilerVersion with recreateIncompatible for app's pods,
// rolling out ref, which declares apiVersion.
func strictRecreating(app, ref, apiVersion string) *splicev1.CompilerVersion {
	return &splicev1.CompilerVersion{
		ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: testNamespace},
		Spec: splicev1.CompilerVersionSpec{
			GoVersion: "1.26.8",
			Plugin:    splicev1.PluginSpec{Source: splicev1.PluginSource{Artifact: ref}, APIVersion: apiVersion},
			Selector:  metav1.LabelSelector{MatchLabels: map[string]string{"app": app}},
			Strategy:  splicev1.RolloutStrategy{Type: splicev1.StrategyStrict, Strict: &splicev1.StrictStrategy{RecreateIncompatible: true}},
		},
	}
}
