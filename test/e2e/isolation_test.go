//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/internal/clusterkit"
)

const (
	// isolationServiceAccount runs the isolation Deployment; the suite binds the agent's role
	// to it.
	isolationServiceAccount = "greeter-isolation"
	isolationApp            = "greeter-isolation"
	agentPolicy             = "splice-agent-own-pod"
	agentTokenVolume        = "splice-agent-token" // webhooks.AgentTokenVolumeName
)

// The agent's credentials on a real cluster: what the webhook mounts where, and what the
// policy splice-agent-own-pod, installed by the chart, lets a token bound to one pod of the
// agent's ServiceAccount write — the token the kubelet projects into that pod's agent, asked for
// here through the same TokenRequest API.
var _ = Describe("Agent isolation", Ordered, ContinueOnFailure, func() {
	var a, b *corev1.Pod

	BeforeAll(func(ctx SpecContext) {
		ensureServiceAccount(ctx, isolationServiceAccount)
		_, err := kube.AppsV1().Deployments(testNamespace).Create(ctx, clusterkit.Greeter(testNamespace, isolationApp, isolationServiceAccount, 2), metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(clusterkit.WaitReady(ctx, kube, testNamespace, isolationApp, 2, 3*time.Minute)).To(Succeed())
		pods, err := kube.CoreV1().Pods(testNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + isolationApp})
		Expect(err).NotTo(HaveOccurred())
		var running []*corev1.Pod
		for i := range pods.Items {
			if pods.Items[i].DeletionTimestamp == nil {
				running = append(running, &pods.Items[i])
			}
		}
		Expect(running).To(HaveLen(2))
		a, b = running[0], running[1]
	}, NodeTimeout(4*time.Minute))

	AfterAll(func(ctx SpecContext) {
		_ = kube.AppsV1().Deployments(testNamespace).Delete(ctx, isolationApp, metav1.DeleteOptions{})
	}, NodeTimeout(time.Minute))

	It("gives the token to the agent alone, and the agent's own writes pass the policy", func(ctx SpecContext) {
		_, err := kube.AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(ctx, agentPolicy, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred(), "the chart installs the policy %s", agentPolicy)
		for _, p := range []*corev1.Pod{a, b} {
			Expect(p.Spec.AutomountServiceAccountToken).To(HaveValue(BeFalse()), "pod %s", p.Name)
			Expect(p.Spec.Volumes).NotTo(ContainElement(HaveField("Name", HavePrefix("kube-api-access-"))), "pod %s keeps the API server's token volume", p.Name)
			for _, c := range p.Spec.Containers {
				Expect(c.VolumeMounts).NotTo(ContainElement(HaveField("MountPath", serviceAccountDir)), "app container %s of pod %s has a token", c.Name, p.Name)
			}
			i := slices.IndexFunc(p.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == agentName })
			Expect(i).To(BeNumerically(">=", 0))
			Expect(p.Spec.InitContainers[i].VolumeMounts).To(ContainElement(And(HaveField("Name", agentTokenVolume), HaveField("MountPath", serviceAccountDir))))
			// Ready means the agent read its pod and wrote its plugin-ready condition with that
			// token, through the policy (a report comes with the first desired artifact).
			Expect(podCondition(p, corev1.PodConditionType(splicev1.PodConditionPluginReady))).To(Equal(corev1.ConditionTrue), "pod %s", p.Name)
		}
	}, SpecTimeout(time.Minute))

	It("lets a token bound to pod A write A's report and plugin-ready condition, and nothing else", func(ctx SpecContext) {
		asA := tokenClient(ctx, a)
		cur, err := kube.CoreV1().Pods(testNamespace).Get(ctx, a.Name, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		// What the agent writes, as it is now: admitted, and changing nothing the agent would
		// have to repair.
		Expect(patchAs(ctx, asA, a.Name, types.MergePatchType, annotations(splicev1.AnnotationReport, cur.Annotations[splicev1.AnnotationReport]))).To(Succeed())
		ready := slices.IndexFunc(cur.Status.Conditions, func(c corev1.PodCondition) bool { return c.Type == splicev1.PodConditionPluginReady })
		Expect(ready).To(BeNumerically(">=", 0))
		Expect(patchAs(ctx, asA, a.Name, types.StrategicMergePatchType, conditions(cur.Status.Conditions[ready]), "status")).To(Succeed())

		refused := func(what string, err error, want string) {
			GinkgoHelper()
			Expect(err).To(HaveOccurred(), "%s was allowed", what)
			Expect(err.Error()).To(ContainSubstring(want), what)
		}
		other := agentPolicy + ": a token bound to pod " + a.Name + " may write only that pod"
		refused("a forged report on B", patchAs(ctx, asA, b.Name, types.MergePatchType, annotations(splicev1.AnnotationReport, `{"state":"Ready"}`)), other)
		refused("B's annotations", patchAs(ctx, asA, b.Name, types.MergePatchType, annotations("example.com/x", "y")), other)
		refused("B's plugin-ready condition", patchAs(ctx, asA, b.Name, types.StrategicMergePatchType,
			conditions(corev1.PodCondition{Type: splicev1.PodConditionPluginReady, Status: corev1.ConditionFalse, Reason: "Forged"}), "status"), other)
		onPods := agentPolicy + ": on pods,"
		refused("A's desired-artifact", patchAs(ctx, asA, a.Name, types.MergePatchType,
			annotations(splicev1.AnnotationDesiredArtifact, "evil.example.com/x@sha256:"+strings.Repeat("e", 64))), onPods)
		refused("A's labels", patchAs(ctx, asA, a.Name, types.MergePatchType, map[string]any{"metadata": map[string]any{"labels": map[string]string{"app": "moved"}}}), onPods)
		refused("A's image", patchAs(ctx, asA, a.Name, types.StrategicMergePatchType,
			map[string]any{"spec": map[string]any{"containers": []map[string]any{{"name": a.Spec.Containers[0].Name, "image": "evil:1"}}}}), onPods)
		refused("another condition of A", patchAs(ctx, asA, a.Name, types.StrategicMergePatchType,
			conditions(corev1.PodCondition{Type: "example.com/forged", Status: corev1.ConditionTrue}), "status"), agentPolicy+": on pods/status,")

		tr, err := kube.CoreV1().ServiceAccounts(testNamespace).CreateToken(ctx, isolationServiceAccount,
			&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)}}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		unbound := clientFor(tr.Status.Token)
		refused("A's report with a token bound to no pod", patchAs(ctx, unbound, a.Name, types.MergePatchType,
			annotations(splicev1.AnnotationReport, cur.Annotations[splicev1.AnnotationReport])), agentPolicy+": this token is bound to no pod")
	}, SpecTimeout(time.Minute))
})

// tokenClient is a client with a token of pod's ServiceAccount bound to pod, as the kubelet
// projects into its agent.
func tokenClient(ctx context.Context, pod *corev1.Pod) kubernetes.Interface {
	GinkgoHelper()
	tr, err := kube.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, pod.Spec.ServiceAccountName, &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: ptr.To[int64](600),
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	return clientFor(tr.Status.Token)
}

// clientFor authenticates with token alone, against the suite's cluster.
func clientFor(token string) kubernetes.Interface {
	GinkgoHelper()
	cfg := rest.AnonymousClientConfig(restConfig)
	cfg.BearerToken = token
	cs, err := kubernetes.NewForConfig(cfg)
	Expect(err).NotTo(HaveOccurred())
	return cs
}

func annotations(key, value string) map[string]any {
	return map[string]any{"metadata": map[string]any{"annotations": map[string]string{key: value}}}
}

func conditions(c corev1.PodCondition) map[string]any {
	return map[string]any{"status": map[string]any{"conditions": []corev1.PodCondition{c}}}
}

func patchAs(ctx context.Context, cs kubernetes.Interface, name string, pt types.PatchType, patch map[string]any, subresource ...string) error {
	b, err := json.Marshal(patch)
	if err != nil {
		return err
	}
	_, err = cs.CoreV1().Pods(testNamespace).Patch(ctx, name, pt, b, metav1.PatchOptions{}, subresource...)
	return err
}
