//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

const (
	// releaseNamespace holds the chart's release, as config/ expects.
	releaseNamespace = "splice-system"
	releaseName      = "splice"
)

var (
	restConfig *rest.Config
	kube       *kubernetes.Clientset
	// testNamespace is this run's namespace for workloads.
	testNamespace string
	// trustNamespace is the namespace the chart's trust policy covers (trust_test.go).
	trustNamespace string
	repoRoot       string
	helm           string
	kubeconfig     string
)

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	// The suite's controller-runtime clients log through Ginkgo (else the first one prints
	// controller-runtime's "SetLogger was never called" stack trace into the run).
	ctrllog.SetLogger(GinkgoLogr)
	// Two shared cores: image pulls are local, but pods, webhooks and the manager start slowly.
	SetDefaultEventuallyTimeout(3 * time.Minute)
	SetDefaultEventuallyPollingInterval(time.Second)
	// An Eventually given a spec's context otherwise polls until that context ends.
	EnforceDefaultTimeoutsWhenUsingContexts()
	RunSpecs(t, "e2e")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	kubeconfig = os.Getenv("KUBECONFIG")
	Expect(kubeconfig).NotTo(BeEmpty(), "KUBECONFIG must name the local cluster's kubeconfig (make e2e sets it)")
	helm = os.Getenv("HELM")
	Expect(helm).NotTo(BeEmpty(), "HELM must name the helm binary (make e2e sets it)")
	var err error
	repoRoot, err = filepath.Abs(filepath.Join("..", ".."))
	Expect(err).NotTo(HaveOccurred())

	restConfig, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	Expect(err).NotTo(HaveOccurred())
	kube, err = kubernetes.NewForConfig(restConfig)
	Expect(err).NotTo(HaveOccurred())

	By("waiting for a Ready node")
	Eventually(func(g Gomega) {
		nodes, err := kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(nodes.Items).NotTo(BeEmpty())
		for _, n := range nodes.Items {
			g.Expect(nodeReady(n)).To(BeTrue(), "node %s not Ready", n.Name)
		}
	}).WithContext(ctx).Should(Succeed())

	testNamespace = fmt.Sprintf("splice-e2e-%d", time.Now().Unix()%100000)
	By("creating namespace " + testNamespace)
	_, err = kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: testNamespace, Labels: map[string]string{"splice.dev/e2e": "true"},
	}}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())

	trustNamespace = testNamespace + "-trust"
	By("creating namespace " + trustNamespace + " and the key its trust policy holds")
	_, err = kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: trustNamespace, Labels: map[string]string{"splice.dev/e2e": "true"},
	}}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	trustPub := newTrustKey()

	By("building kubectl-splice")
	buildKubectlSplice(ctx)

	By("installing the chart into " + releaseNamespace)
	start := time.Now()
	runHelm(ctx, "upgrade", "--install", releaseName, filepath.Join(repoRoot, "charts", "splice"),
		"--namespace", releaseNamespace, "--create-namespace", "--wait", "--timeout", "3m",
		"--set", "image.pullPolicy=Never", "--set", "agent.image.pullPolicy=Never",
		"--set", "logLevel=debug",
		"--set", "build.env.GOPROXY=http://"+goproxyIP,
		"--set", "manager.insecureRegistries[0]="+registryAddr,
		"--set", "agent.rbacBindings[0].namespace="+testNamespace,
		"--set", "agent.rbacBindings[0].serviceAccount=greeter",
		"--set", "agent.rbacBindings[1].namespace="+testNamespace,
		"--set", "agent.rbacBindings[1].serviceAccount="+rolloutServiceAccount,
		"--set", "agent.rbacBindings[2].namespace="+testNamespace,
		"--set", "agent.rbacBindings[2].serviceAccount="+strictServiceAccount,
		"--set", "agent.rbacBindings[3].namespace="+testNamespace,
		"--set", "agent.rbacBindings[3].serviceAccount="+safetyServiceAccount,
		"--set", "agent.rbacBindings[4].namespace="+testNamespace,
		"--set", "agent.rbacBindings[4].serviceAccount="+isolationServiceAccount,
		"--set", "agent.rbacBindings[5].namespace="+trustNamespace,
		"--set", "agent.rbacBindings[5].serviceAccount="+trustServiceAccount,
		// One namespace under a trust policy: artifacts of the registry's trust/ repositories,
		// signed by the suite's key (trust_test.go).
		"--set", "trust.policies[0].name="+trustPolicy,
		"--set", "trust.policies[0].namespaces[0]="+trustNamespace,
		"--set", "trust.policies[0].registries[0]="+registryAddr+"/trust/",
		"--set-file", "trust.policies[0].keys[0]="+trustPub)
	GinkgoWriter.Printf("helm install and manager Ready: %s\n", time.Since(start).Round(100*time.Millisecond))
}, NodeTimeout(6*time.Minute))

var _ = AfterSuite(func(ctx SpecContext) {
	if os.Getenv("E2E_KEEP") == "1" {
		GinkgoWriter.Printf("E2E_KEEP=1: leaving release %s/%s and namespaces %s, %s\n", releaseNamespace, releaseName, testNamespace, trustNamespace)
		return
	}
	if kube == nil {
		return
	}
	for _, ns := range []string{testNamespace, trustNamespace} {
		if ns == "" {
			continue
		}
		err := kube.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			Fail(err.Error())
		}
	}
	runHelm(ctx, "uninstall", releaseName, "--namespace", releaseNamespace, "--wait", "--timeout", "2m")
}, NodeTimeout(3*time.Minute))

var _ = ReportAfterEach(func(ctx SpecContext, r SpecReport) {
	if r.Failed() && kube != nil {
		dumpState(ctx)
	}
})

// The failures again, each with its message, after everything else the suite printed: a CI log
// that keeps only its tail still says why a spec failed, not only where.
var _ = ReportAfterSuite("failures with their messages", func(r Report) {
	for _, s := range r.SpecReports {
		if !s.Failed() {
			continue
		}
		msg := s.Failure.Message
		if len(msg) > 2000 {
			msg = msg[:2000] + " …"
		}
		GinkgoWriter.Printf("FAILED %s\n  at %s\n  %s\n", s.FullText(), s.Failure.Location, msg)
	}
})

// scheme has the built-in kinds and Splice's.
func scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	Expect(clientgoscheme.AddToScheme(s)).To(Succeed())
	Expect(splicev1.AddToScheme(s)).To(Succeed())
	return s
}

// runHelm runs the real helm against the cluster and fails the spec if it fails.
func runHelm(ctx context.Context, args ...string) string {
	GinkgoHelper()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, helm, append(args, "--kubeconfig", kubeconfig)...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	Expect(err).NotTo(HaveOccurred(), "helm %s:\n%s", strings.Join(args, " "), out.String())
	return out.String()
}

func nodeReady(n corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podCondition is the status of the pod's condition t ("" when absent).
func podCondition(p *corev1.Pod, t corev1.PodConditionType) corev1.ConditionStatus {
	for _, c := range p.Status.Conditions {
		if c.Type == t {
			return c.Status
		}
	}
	return ""
}

// dumpState writes what a failed spec needs to be understood: pods, events, the manager's log.
func dumpState(ctx context.Context) {
	for _, ns := range []string{releaseNamespace, testNamespace} {
		pods, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			continue
		}
		for _, p := range pods.Items {
			GinkgoWriter.Printf("pod %s/%s phase=%s conditions=%v\n", ns, p.Name, p.Status.Phase, p.Status.Conditions)
			for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
				GinkgoWriter.Printf("  container %s ready=%v restarts=%d state=%+v\n", cs.Name, cs.Ready, cs.RestartCount, cs.State)
			}
		}
		for _, p := range pods.Items {
			for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
				if cs.RestartCount == 0 {
					continue
				}
				tail := int64(20)
				b, err := kube.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{Container: cs.Name, Previous: true, TailLines: &tail}).DoRaw(ctx)
				if err == nil {
					GinkgoWriter.Printf("--- previous log of %s/%s container %s (restarted %d times)\n%s\n", ns, p.Name, cs.Name, cs.RestartCount, b)
				}
			}
		}
		evs, err := kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err == nil {
			for _, e := range evs.Items {
				GinkgoWriter.Printf("event %s %s/%s: %s %s\n", ns, e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, e.Message)
			}
		}
	}
	tail := int64(80)
	pods, err := kube.CoreV1().Pods(releaseNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=manager"})
	if err == nil {
		for _, p := range pods.Items {
			b, err := kube.CoreV1().Pods(releaseNamespace).GetLogs(p.Name, &corev1.PodLogOptions{TailLines: &tail}).DoRaw(ctx)
			if err == nil {
				GinkgoWriter.Printf("--- log of %s\n%s\n", p.Name, b)
			}
		}
	}
}

// ensureServiceAccount creates the ServiceAccount in the test namespace unless a spec that ran
// before made it: specs that share one of the chart's agent bindings share its account.
func ensureServiceAccount(ctx context.Context, name string) {
	GinkgoHelper()
	_, err := kube.CoreV1().ServiceAccounts(testNamespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		Expect(err).NotTo(HaveOccurred())
	}
}
