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
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/splice-dev/splice/internal/clusterkit"
)

// The in-cluster services builds need, at fixed ClusterIPs: the cluster has no DNS, and its
// pods cannot reach anything outside this machine. Build Jobs get the module proxy's address as
// GOPROXY from the chart's build.env (suite_test.go), as a user's proxy would be given.
const (
	registryIP   = "10.96.100.10"
	goproxyIP    = "10.96.100.11"
	gitServerIP  = "10.96.100.12"
	registryAddr = registryIP + ":5000"
	servicesImg  = clusterkit.ServicesImage
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
	fixed := []clusterkit.Fixed{
		{Name: "registry", ClusterIP: registryIP, Port: 5000, Container: corev1.Container{Image: servicesImg, Args: []string{"registry", "-addr", ":5000"}}},
		{Name: "goproxy", ClusterIP: goproxyIP, Port: 8080, ServicePort: 80, Container: corev1.Container{
			Image: servicesImg, Args: []string{"files", "-addr", ":8080", "-dir", "/goproxy"}, SecurityContext: root,
			VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/goproxy", ReadOnly: true}},
		}, Volume: &corev1.Volume{Name: "data", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: download}}}},
		{Name: "git", ClusterIP: gitServerIP, Port: 9418, Container: corev1.Container{
			Image:   goImage,
			Command: []string{"git", "daemon", "--reuseaddr", "--export-all", "--base-path=/srv/git", "--port=9418", "--verbose", "/srv/git"},
			// git refuses repositories owned by someone else unless told they are safe.
			Env:             []corev1.EnvVar{{Name: "GIT_CONFIG_COUNT", Value: "1"}, {Name: "GIT_CONFIG_KEY_0", Value: "safe.directory"}, {Name: "GIT_CONFIG_VALUE_0", Value: "*"}},
			SecurityContext: root,
			VolumeMounts:    []corev1.VolumeMount{{Name: "data", MountPath: "/srv/git", ReadOnly: true}},
		}, Volume: &corev1.Volume{Name: "data", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: gitRoot}}}},
	}
	for _, f := range fixed {
		f.PartOf = "splice-e2e"
		Expect(clusterkit.Deploy(ctx, kube, ns, f)).To(Succeed())
	}
	for _, f := range fixed {
		Expect(clusterkit.WaitServing(ctx, kube, ns, f, 2*time.Minute)).To(Succeed())
	}
	return in
}
