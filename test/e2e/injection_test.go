//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/internal/clusterkit"
)

const (
	greeterImage = clusterkit.GreeterImage
	agentName    = "splice-agent" // webhooks.AgentContainerName
	sharedVolume = "splice-shared"
	// serviceAccountDir is where in-cluster clients find their token.
	serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"
)

// greeterDeployment is the example service "greeter", opted in by its pods' label.
func greeterDeployment(ns string, replicas int32) *appsv1.Deployment {
	return clusterkit.Greeter(ns, "greeter", "greeter", replicas)
}

var _ = Describe("Agent injection", Ordered, ContinueOnFailure, func() {
	var svc *corev1.Service

	BeforeAll(func(ctx SpecContext) {
		_, err := kube.CoreV1().ServiceAccounts(testNamespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "greeter"}}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		svc, err = kube.CoreV1().Services(testNamespace).Create(ctx, clusterkit.GreeterService(testNamespace, "greeter"), metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
	}, NodeTimeout(time.Minute))

	It("gives an opted-in Deployment's pods the agent, the shared volume, the probes and the readiness gate, and they become Ready", func(ctx SpecContext) {
		start := time.Now()
		_, err := kube.AppsV1().Deployments(testNamespace).Create(ctx, greeterDeployment(testNamespace, 2), metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())

		var pods *corev1.PodList
		Eventually(func(g Gomega) {
			pods, err = kube.CoreV1().Pods(testNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app=greeter"})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(pods.Items).To(HaveLen(2))
		}).WithContext(ctx).WithTimeout(time.Minute).Should(Succeed())
		for i := range pods.Items {
			p := &pods.Items[i]
			By("checking what the webhook gave pod " + p.Name)
			i := slices.IndexFunc(p.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == agentName })
			Expect(i).To(BeNumerically(">=", 0), "no %s init container (native sidecar)", agentName)
			agent := p.Spec.InitContainers[i]
			Expect(agent.RestartPolicy).To(HaveValue(Equal(corev1.ContainerRestartPolicyAlways)), "the agent is a native sidecar")
			Expect(agent.ReadinessProbe).NotTo(BeNil())
			Expect(agent.LivenessProbe).NotTo(BeNil())
			Expect(agent.VolumeMounts).To(ContainElement(HaveField("Name", sharedVolume)))
			// The API server's ServiceAccount admission runs before the webhooks and mounts its
			// token only into the containers the pod had then: the webhook gives the agent a
			// token volume of its own (and takes the API server's away from the app), or the
			// agent could not reach the API. "Agent isolation" checks the rest.
			Expect(agent.VolumeMounts).To(ContainElement(HaveField("MountPath", serviceAccountDir)),
				"the agent has no ServiceAccount token mount at %s: it cannot talk to the API server", serviceAccountDir)
			Expect(p.Spec.Containers[0].VolumeMounts).To(ContainElement(HaveField("Name", sharedVolume)), "the app container mounts the shared volume")
			Expect(p.Spec.ReadinessGates).To(ContainElement(HaveField("ConditionType", corev1.PodConditionType(splicev1.PodConditionPluginReady))))
		}

		Eventually(func(g Gomega) {
			d, err := kube.AppsV1().Deployments(testNamespace).Get(ctx, "greeter", metav1.GetOptions{})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(d.Status.ReadyReplicas).To(Equal(int32(2)), "ready replicas")
		}).WithContext(ctx).WithTimeout(2 * time.Minute).Should(Succeed())
		GinkgoWriter.Printf("greeter Deployment (2 pods) Ready %s after create\n", time.Since(start).Round(100*time.Millisecond))

		pods, err = kube.CoreV1().Pods(testNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app=greeter"})
		Expect(err).NotTo(HaveOccurred())
		for i := range pods.Items {
			p := &pods.Items[i]
			Expect(podCondition(p, corev1.PodConditionType(splicev1.PodConditionPluginReady))).To(Equal(corev1.ConditionTrue), "pod %s", p.Name)
			Expect(podCondition(p, corev1.PodReady)).To(Equal(corev1.ConditionTrue), "pod %s", p.Name)
		}

		By("calling the Service from the host through kube-proxy")
		url := fmt.Sprintf("http://%s/greet", svc.Spec.ClusterIP)
		Expect(waitServing(ctx, "greeter", 2, url)).NotTo(BeEmpty(), "X-Plugin-Version")
		// Once kube-proxy has the rules, every call is answered.
		client := &http.Client{Timeout: 5 * time.Second}
		for range 20 {
			resp, err := client.Get(url + "?name=e2e")
			Expect(err).NotTo(HaveOccurred())
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			Expect(resp.StatusCode).To(Equal(http.StatusOK), "GET %s: %s", url, body)
			Expect(resp.Header.Get("X-Plugin-Version")).NotTo(BeEmpty())
		}
	}, SpecTimeout(5*time.Minute))

	It("leaves pods that did not opt in alone", func(ctx SpecContext) {
		p, err := kube.CoreV1().Pods(testNamespace).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "bystander", Labels: map[string]string{"app": "bystander"}},
			Spec: corev1.PodSpec{
				TerminationGracePeriodSeconds: ptr.To[int64](1),
				Containers:                    []corev1.Container{{Name: "pause", Image: "localhost/splice/pause:3.10", ImagePullPolicy: corev1.PullNever}},
			},
		}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(p.Spec.InitContainers).To(BeEmpty())
		Expect(p.Spec.ReadinessGates).To(BeEmpty())
		Expect(p.Spec.Volumes).NotTo(ContainElement(HaveField("Name", sharedVolume)))
		Eventually(func(g Gomega) {
			p, err := kube.CoreV1().Pods(testNamespace).Get(ctx, "bystander", metav1.GetOptions{})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(podCondition(p, corev1.PodReady)).To(Equal(corev1.ConditionTrue))
		}).WithContext(ctx).Should(Succeed())
	}, SpecTimeout(3*time.Minute))
})
