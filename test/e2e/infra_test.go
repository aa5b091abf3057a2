//go:build e2e

package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// The in-cluster services builds need, at fixed ClusterIPs: the cluster has no DNS, and its
// pods cannot reach anything outside this machine. Build Jobs get the module proxy's address as
// GOPROXY from the chart's build.env (suite_test.go), as a user's proxy would be given.
const (
	registryIP   = "10.96.100.10"
	goproxyIP    = "10.96.100.11"
	gitServerIP  = "10.96.100.12"
	registryAddr = registryIP + ":5000"
	servicesImg  = "splice-e2e-services:dev"
	goImage      = "golang:1.26.8"
)

// infra are the services of one run, in namespace ns.
type infra struct {
	ns string
	// gitURL serves a bare clone of this repository's HEAD.
	gitURL string
	// head is the commit it serves.
	head string
}

// sharedInfra is the run's infra, started once by the first spec that needs it (the order
// of the top-level containers is random).
var sharedInfra *infra

// ensureInfra starts the infra once per run and returns it.
func ensureInfra(ctx context.Context) *infra {
	GinkgoHelper()
	if sharedInfra == nil {
		sharedInfra = startInfra(ctx, testNamespace)
	}
	return sharedInfra
}

// startInfra deploys the registry, the module proxy (this machine's module cache, read-only)
// and a git server (a bare clone of this repository, made under .local/e2e) and waits for them.
func startInfra(ctx context.Context, ns string) *infra {
	GinkgoHelper()
	in := &infra{ns: ns, gitURL: "git://" + gitServerIP + "/splice.git"}

	gitRoot := filepath.Join(repoRoot, ".local", "e2e", "git")
	Expect(os.RemoveAll(gitRoot)).To(Succeed())
	Expect(os.MkdirAll(gitRoot, 0o755)).To(Succeed())
	out, err := exec.CommandContext(ctx, "git", "clone", "--quiet", "--bare", "--no-local", repoRoot, filepath.Join(gitRoot, "splice.git")).CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "git clone --bare: %s", out)
	head, err := exec.CommandContext(ctx, "git", "-C", repoRoot, "rev-parse", "HEAD").Output()
	Expect(err).NotTo(HaveOccurred())
	in.head = strings.TrimSpace(string(head))

	modcache, err := exec.CommandContext(ctx, "go", "env", "GOMODCACHE").Output()
	Expect(err).NotTo(HaveOccurred())
	download := filepath.Join(strings.TrimSpace(string(modcache)), "cache", "download")

	root := &corev1.SecurityContext{RunAsUser: ptr.To[int64](0)} // the host's root-owned files
	deploy(ctx, ns, "registry", registryIP, 5000, corev1.Container{
		Image: servicesImg, Args: []string{"registry", "-addr", ":5000"},
	}, nil)
	deploy(ctx, ns, "goproxy", goproxyIP, 8080, corev1.Container{
		Image: servicesImg, Args: []string{"files", "-addr", ":8080", "-dir", "/goproxy"}, SecurityContext: root,
		VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/goproxy", ReadOnly: true}},
	}, &corev1.Volume{Name: "data", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: download}}})
	deploy(ctx, ns, "git", gitServerIP, 9418, corev1.Container{
		Image:   goImage,
		Command: []string{"git", "daemon", "--reuseaddr", "--export-all", "--base-path=/srv/git", "--port=9418", "--verbose", "/srv/git"},
		// git refuses repositories owned by someone else unless told they are safe.
		Env:             []corev1.EnvVar{{Name: "GIT_CONFIG_COUNT", Value: "1"}, {Name: "GIT_CONFIG_KEY_0", Value: "safe.directory"}, {Name: "GIT_CONFIG_VALUE_0", Value: "*"}},
		SecurityContext: root,
		VolumeMounts:    []corev1.VolumeMount{{Name: "data", MountPath: "/srv/git", ReadOnly: true}},
	}, &corev1.Volume{Name: "data", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: gitRoot}}})

	for _, name := range []string{"registry", "goproxy", "git"} {
		Eventually(func(g Gomega) {
			d, err := kube.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(d.Status.ReadyReplicas).To(Equal(int32(1)), "%s ready", name)
		}).WithContext(ctx).WithTimeout(2 * time.Minute).Should(Succeed())
	}
	return in
}

// deploy runs one replica of c as name, behind a Service at a fixed ClusterIP, ready once its
// port accepts connections.
func deploy(ctx context.Context, ns, name, clusterIP string, port int32, c corev1.Container, vol *corev1.Volume) {
	GinkgoHelper()
	labels := map[string]string{"app": name, "app.kubernetes.io/part-of": "splice-e2e"}
	c.Name = name
	c.ImagePullPolicy = corev1.PullNever
	c.Ports = []corev1.ContainerPort{{ContainerPort: port}}
	c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(port)}}, PeriodSeconds: 1}
	spec := corev1.PodSpec{Containers: []corev1.Container{c}, TerminationGracePeriodSeconds: ptr.To[int64](1)}
	if vol != nil {
		spec.Volumes = []corev1.Volume{*vol}
	}
	_, err := kube.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec},
		},
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	svcPort := port
	if name == "goproxy" {
		svcPort = 80
	}
	_, err = kube.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: corev1.ServiceSpec{
			ClusterIP: clusterIP,
			Selector:  labels,
			Ports:     []corev1.ServicePort{{Port: svcPort, TargetPort: intstr.FromInt32(port)}},
		},
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
}
