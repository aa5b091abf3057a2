//go:build e2e

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/artifact"
	"github.com/splice-dev/splice/internal/clusterkit"
	"github.com/splice-dev/splice/internal/trust"
)

const (
	// trustPolicy is the chart's trust policy for trustNamespace (suite_test.go).
	trustPolicy         = "e2e-trust"
	trustServiceAccount = "greeter-trust"
	trustApp            = "greeter-trust"
)

// trustSigner holds the private key of the suite's trust policy.
var trustSigner *trust.Signer

// newTrustKey makes the suite's signing key pair and returns the path of its public key, for
// the chart's trust.policies[0].keys[0].
func newTrustKey() string {
	GinkgoHelper()
	priv, pub, err := trust.GenerateKeyPair(nil)
	Expect(err).NotTo(HaveOccurred())
	trustSigner, err = trust.LoadSigner(priv, nil)
	Expect(err).NotTo(HaveOccurred())
	dir := filepath.Join(repoRoot, ".local", "e2e", "trust")
	Expect(os.MkdirAll(dir, 0o700)).To(Succeed())
	path := filepath.Join(dir, "cosign.pub")
	Expect(os.WriteFile(path, pub, 0o600)).To(Succeed())
	return path
}

// A namespace under a trust policy, on a real cluster: the manager refuses to roll out what the
// policy's key did not sign, and the agent refuses to pull it even when a pod's
// desired-artifact is written behind the manager's back.
var _ = Describe("Trust policy", Ordered, func() {
	var (
		cli  client.Client
		pod  *corev1.Pod
		sign = func(ctx context.Context, ref string) {
			GinkgoHelper()
			Expect(trust.Sign(ctx, ref, trustSigner, nil, artifact.WithInsecureRegistries(registryAddr))).To(Succeed())
		}
	)

	BeforeAll(func(ctx SpecContext) {
		var err error
		cli, err = client.New(restConfig, client.Options{Scheme: scheme()})
		Expect(err).NotTo(HaveOccurred())
		ensureInfra(ctx)
		_, err = kube.CoreV1().ServiceAccounts(trustNamespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: trustServiceAccount}}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		_, err = kube.AppsV1().Deployments(trustNamespace).Create(ctx, clusterkit.Greeter(trustNamespace, trustApp, trustServiceAccount, 1), metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(clusterkit.WaitReady(ctx, kube, trustNamespace, trustApp, 1, 3*time.Minute)).To(Succeed())
		pods, err := kube.CoreV1().Pods(trustNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + trustApp})
		Expect(err).NotTo(HaveOccurred())
		for i := range pods.Items {
			if pods.Items[i].DeletionTimestamp == nil {
				pod = &pods.Items[i]
			}
		}
		Expect(pod).NotTo(BeNil())
	}, NodeTimeout(5*time.Minute))

	// report is the pod's current report.
	report := func(ctx context.Context, g Gomega) (*corev1.Pod, *splicev1.PodReport) {
		cur, err := kube.CoreV1().Pods(trustNamespace).Get(ctx, pod.Name, metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		r, err := splicev1.DecodeReport(cur.Annotations[splicev1.AnnotationReport])
		g.Expect(err).NotTo(HaveOccurred(), "report %q", cur.Annotations[splicev1.AnnotationReport])
		return cur, r
	}

	It("gives the agent its namespace's policy, and the agent refuses an unsigned artifact written on its pod directly", func(ctx SpecContext) {
		i := -1
		for j, c := range pod.Spec.InitContainers {
			if c.Name == agentName {
				i = j
			}
		}
		Expect(i).To(BeNumerically(">=", 0))
		Expect(pod.Spec.InitContainers[i].Env).To(ContainElement(HaveField("Name", "SPLICE_TRUST_POLICY")))

		ref, digest := pushGreeterPlugin(ctx, "v2", "trust/greeter", "1.0.1")
		_, err := kube.CoreV1().Pods(trustNamespace).Patch(ctx, pod.Name, types.MergePatchType,
			[]byte(`{"metadata":{"annotations":{"`+splicev1.AnnotationDesiredArtifact+`":"`+ref+`"}}}`), metav1.PatchOptions{})
		Expect(err).NotTo(HaveOccurred())
		Eventually(func(g Gomega) {
			cur, r := report(ctx, g)
			g.Expect(r.Digest).To(Equal(digest), "report %+v", r)
			g.Expect(r.State).To(Equal(splicev1.SwapFailed), "report %+v", r)
			g.Expect(r.Reason).To(Equal(trust.ReasonSignatureMissing), "report %+v", r)
			g.Expect(r.Error).To(ContainSubstring(trustPolicy))
			// Nothing reached the host: it serves what it served.
			g.Expect(r.Running).NotTo(Equal(digest))
			g.Expect(podCondition(cur, corev1.PodReady)).To(Equal(corev1.ConditionTrue))
		}).WithContext(ctx).Should(Succeed())
	}, SpecTimeout(4*time.Minute))

	It("rolls out a prebuilt artifact only once the policy's key has signed it", func(ctx SpecContext) {
		ref, digest := pushGreeterPlugin(ctx, "v2", "trust/greeter", "1.0.1")
		cv := &splicev1.CompilerVersion{
			ObjectMeta: metav1.ObjectMeta{Name: trustApp, Namespace: trustNamespace},
			Spec: splicev1.CompilerVersionSpec{
				GoVersion: "1.26.8",
				Plugin:    splicev1.PluginSpec{Source: splicev1.PluginSource{Artifact: ref}, APIVersion: "1.0.1"},
				Selector:  metav1.LabelSelector{MatchLabels: map[string]string{"app": trustApp}},
				Strategy:  splicev1.RolloutStrategy{Type: splicev1.StrategyRollingPatch},
			},
		}
		Expect(cli.Create(ctx, cv)).To(Succeed())
		key := client.ObjectKeyFromObject(cv)
		Eventually(func(g Gomega) {
			got := &splicev1.CompilerVersion{}
			g.Expect(cli.Get(ctx, key, got)).To(Succeed())
			built := apimeta.FindStatusCondition(got.Status.Conditions, splicev1.ConditionBuilt)
			g.Expect(built).NotTo(BeNil())
			g.Expect(built.Reason).To(Equal(trust.ReasonSignatureMissing), "Built %+v", built)
			g.Expect(got.Status.Artifact).To(BeNil())
		}).WithContext(ctx).Should(Succeed())
		cur, _ := report(ctx, Default)
		Expect(cur.Annotations[splicev1.AnnotationDesiredArtifact]).NotTo(Equal(ref), "the rollout wrote a refused artifact")

		// Signed, it is resolved at the manager's next look (within a minute) and rolled out.
		sign(ctx, ref)
		got := waitCompleted(ctx, cli, key, digest, cv.Generation)
		Expect(got.Status.Artifact.Signature).To(Equal(&splicev1.SignatureStatus{Policy: trustPolicy, Key: trustSigner.Fingerprint()}))
		Eventually(func(g Gomega) {
			cur, r := report(ctx, g)
			g.Expect(cur.Annotations[splicev1.AnnotationDesiredArtifact]).To(Equal(ref))
			g.Expect(r.State).To(Equal(splicev1.SwapReady), "report %+v", r)
			g.Expect(r.Running).To(Equal(digest))
		}).WithContext(ctx).Should(Succeed())
	}, SpecTimeout(6*time.Minute))

	AfterAll(func(ctx SpecContext) {
		_ = kube.AppsV1().Deployments(trustNamespace).Delete(ctx, trustApp, metav1.DeleteOptions{})
	}, NodeTimeout(time.Minute))
})
