//go:build e2e

package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

var _ = Describe("Plugin builds", Ordered, func() {
	var (
		in  *infra
		cli client.Client
	)

	BeforeAll(func(ctx SpecContext) {
		var err error
		cli, err = client.New(restConfig, client.Options{Scheme: scheme()})
		Expect(err).NotTo(HaveOccurred())
		start := time.Now()
		in = ensureInfra(ctx)
		GinkgoWriter.Printf("registry, module proxy and git server ready in %s (serving %s)\n", time.Since(start).Round(100*time.Millisecond), in.head)
	}, NodeTimeout(3*time.Minute))

	It("builds a CompilerVersion's plugin from git with a real Job and pushes it to the in-cluster registry", func(ctx SpecContext) {
		cv := &splicev1.CompilerVersion{
			ObjectMeta: metav1.ObjectMeta{Name: "greeter-build", Namespace: testNamespace},
			Spec: splicev1.CompilerVersionSpec{
				GoVersion: "1.26.8",
				Plugin: splicev1.PluginSpec{
					Source:     splicev1.PluginSource{Git: &splicev1.GitSource{URL: in.gitURL, Revision: in.head}},
					Package:    "./examples/greeter/plugins/v2",
					APIVersion: "1.0.1",
					Repository: registryAddr + "/greeter-plugin",
				},
				// Nothing carries this label: the build runs, no pod is touched.
				Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "greeter-build-only"}},
			},
		}
		start := time.Now()
		Expect(cli.Create(ctx, cv)).To(Succeed())

		var artifact string
		Eventually(func(g Gomega) {
			got := &splicev1.CompilerVersion{}
			g.Expect(cli.Get(ctx, client.ObjectKeyFromObject(cv), got)).To(Succeed())
			g.Expect(got.Status.Artifact).NotTo(BeNil(), "status.artifact; conditions: %v", got.Status.Conditions)
			artifact = got.Status.Artifact.Ref
			g.Expect(artifact).To(ContainSubstring("@sha256:"))
		}).WithContext(ctx).WithTimeout(10 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())
		GinkgoWriter.Printf("plugin built and pushed in %s: %s\n", time.Since(start).Round(time.Second), artifact)

		By("finding the artifact in the registry")
		repo, digest, ok := strings.Cut(strings.TrimPrefix(artifact, registryAddr+"/"), "@")
		Expect(ok).To(BeTrue(), "artifact %s", artifact)
		req, err := http.NewRequestWithContext(ctx, http.MethodHead, fmt.Sprintf("http://%s/v2/%s/manifests/%s", registryAddr, repo, digest), nil)
		Expect(err).NotTo(HaveOccurred())
		req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
		resp, err := http.DefaultClient.Do(req)
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(http.StatusOK))
	}, SpecTimeout(12*time.Minute))
})
