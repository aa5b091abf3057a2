package v1alpha1_test

import (
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/internal/testenv"
)

const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// gitCV is a valid CompilerVersion that builds from git and rolls out with RollingPatch.
func gitCV() *splicev1.CompilerVersion {
	return &splicev1.CompilerVersion{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "cv-", Namespace: "default"},
		Spec: splicev1.CompilerVersionSpec{
			GoVersion: "1.26.8",
			Plugin: splicev1.PluginSpec{
				Source: splicev1.PluginSource{Git: &splicev1.GitSource{
					URL: "https://git.example.com/team/plugins.git", Revision: "v1.2.0"}},
				Package:    "./plugins/greeter",
				Repository: "registry.example.com/team/greeter-plugin",
				APIVersion: "1.2.0",
			},
			Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "greeter"}},
			Strategy: splicev1.RolloutStrategy{Type: splicev1.StrategyRollingPatch},
		},
	}
}

// artifactCV is a valid CompilerVersion with a prebuilt artifact and a Canary.
func artifactCV() *splicev1.CompilerVersion {
	cv := gitCV()
	cv.Spec.Plugin = splicev1.PluginSpec{Source: splicev1.PluginSource{Artifact: "registry.example.com/team/greeter-plugin@" + digest}}
	cv.Spec.Strategy = splicev1.RolloutStrategy{Type: splicev1.StrategyCanary, Canary: &splicev1.CanaryStrategy{
		Steps: []splicev1.CanaryStep{
			{SetWeight: 10, TrafficPercent: ptr.To[int32](5), Pause: &splicev1.CanaryPause{Duration: &metav1.Duration{Duration: time.Minute}},
				Analysis: &splicev1.CanaryAnalysis{MaxFailedSwaps: ptr.To[int32](0), MaxErrorRatePercent: ptr.To[int32](1), MinCalls: ptr.To[int32](200),
					MaxSwapLatency: &metav1.Duration{Duration: 500 * time.Millisecond}}},
			{SetWeight: 50, Pause: &splicev1.CanaryPause{}},
			{SetWeight: 100},
		},
	}}
	return cv
}

// create submits the object with server-side dry run: the API server runs every validation
// (schema and CEL) and stores nothing.
func create(cv *splicev1.CompilerVersion) error {
	return k8sClient.Create(ctx, cv, client.DryRunAll)
}

var _ = Describe("CompilerVersion schema", func() {
	DescribeTable("accepts valid objects",
		func(mutate func(*splicev1.CompilerVersion), base func() *splicev1.CompilerVersion) {
			cv := base()
			mutate(cv)
			Expect(create(cv)).To(Succeed())
		},
		Entry("git source with RollingPatch", func(*splicev1.CompilerVersion) {}, gitCV),
		Entry("artifact source with Canary", func(*splicev1.CompilerVersion) {}, artifactCV),
		Entry("git over ssh, scp-like", func(cv *splicev1.CompilerVersion) {
			cv.Spec.Plugin.Source.Git.URL = "git@git.example.com:team/plugins.git"
		}, gitCV),
		Entry("commit SHA revision and secret", func(cv *splicev1.CompilerVersion) {
			cv.Spec.Plugin.Source.Git.Revision = "3f9d5f1c2a0b4e8d9c7b6a5f4e3d2c1b0a998877"
			cv.Spec.Plugin.Source.Git.SecretRef = &splicev1.LocalObjectReference{Name: "git-creds"}
		}, gitCV),
		Entry("Strict with recreateIncompatible", func(cv *splicev1.CompilerVersion) {
			cv.Spec.Strategy = splicev1.RolloutStrategy{Type: splicev1.StrategyStrict, Strict: &splicev1.StrictStrategy{RecreateIncompatible: true}}
		}, gitCV),
		Entry("maxUnavailable as a number", func(cv *splicev1.CompilerVersion) {
			cv.Spec.Strategy.RollingPatch = &splicev1.RollingPatchStrategy{MaxUnavailable: ptr.To(intstr.FromInt32(2))}
		}, gitCV),
		Entry("maxUnavailable as 100%", func(cv *splicev1.CompilerVersion) {
			cv.Spec.Strategy.RollingPatch = &splicev1.RollingPatchStrategy{MaxUnavailable: ptr.To(intstr.FromString("100%"))}
		}, gitCV),
		Entry("selector by expression only", func(cv *splicev1.CompilerVersion) {
			cv.Spec.Selector = metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "app", Operator: metav1.LabelSelectorOpIn, Values: []string{"a", "b"}}}}
		}, gitCV),
		Entry("goVersion 1.27.0", func(cv *splicev1.CompilerVersion) { cv.Spec.GoVersion = "1.27.0" }, gitCV),
		Entry("tags", func(cv *splicev1.CompilerVersion) { cv.Spec.Plugin.Tags = []string{"netgo", "osusergo"} }, gitCV),
		Entry("maxLoadedVersions at its bounds", func(cv *splicev1.CompilerVersion) { cv.Spec.MaxLoadedVersions = ptr.To[int32](100) }, gitCV),
		Entry("a Prometheus analysis", func(cv *splicev1.CompilerVersion) {
			cv.Spec.Strategy.Canary.Steps[0].Analysis.Prometheus = &splicev1.PrometheusAnalysis{Address: "http://prometheus.monitoring:9090",
				Query: `sum(rate(greeter_errors_total{digest="{{digest}}"}[1m]))`, MaxValue: "0.01"}
		}, artifactCV),
	)

	DescribeTable("rejects invalid objects, naming the field and the fix",
		func(mutate func(*splicev1.CompilerVersion), base func() *splicev1.CompilerVersion, wantField, wantText string) {
			cv := base()
			mutate(cv)
			err := create(cv)
			Expect(err).To(HaveOccurred())
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want 422 Invalid, got %v", err)
			Expect(err.Error()).To(ContainSubstring(wantField))
			Expect(err.Error()).To(ContainSubstring(wantText))
		},
		Entry("goVersion minor only", func(cv *splicev1.CompilerVersion) { cv.Spec.GoVersion = "1.26" }, gitCV,
			"spec.goVersion", "exact Go release such as 1.26.8"),
		Entry("goVersion with go prefix", func(cv *splicev1.CompilerVersion) { cv.Spec.GoVersion = "go1.26.8" }, gitCV,
			"spec.goVersion", "exact Go release"),
		Entry("goVersion latest", func(cv *splicev1.CompilerVersion) { cv.Spec.GoVersion = "latest" }, gitCV,
			"spec.goVersion", "exact Go release"),
		Entry("goVersion release candidate", func(cv *splicev1.CompilerVersion) { cv.Spec.GoVersion = "1.27rc1" }, gitCV,
			"spec.goVersion", "exact Go release"),
		Entry("goVersion missing", func(cv *splicev1.CompilerVersion) { cv.Spec.GoVersion = "" }, gitCV,
			"spec.goVersion", ""),
		Entry("both sources", func(cv *splicev1.CompilerVersion) {
			cv.Spec.Plugin.Source.Artifact = "registry.example.com/p@" + digest
		}, gitCV, "spec.plugin.source", "exactly one of git"),
		Entry("no source", func(cv *splicev1.CompilerVersion) { cv.Spec.Plugin.Source.Git = nil }, gitCV,
			"spec.plugin.source", "exactly one of git"),
		Entry("artifact by tag", func(cv *splicev1.CompilerVersion) {
			cv.Spec.Plugin.Source.Artifact = "registry.example.com/team/greeter-plugin:v2"
		}, artifactCV, "spec.plugin.source.artifact", "pinned by digest"),
		Entry("artifact with a short digest", func(cv *splicev1.CompilerVersion) {
			cv.Spec.Plugin.Source.Artifact = "registry.example.com/p@sha256:abc"
		}, artifactCV, "spec.plugin.source.artifact", "pinned by digest"),
		Entry("git without package", func(cv *splicev1.CompilerVersion) { cv.Spec.Plugin.Package = "" }, gitCV,
			"spec.plugin.package", "required with spec.plugin.source.git"),
		Entry("git without repository", func(cv *splicev1.CompilerVersion) { cv.Spec.Plugin.Repository = "" }, gitCV,
			"spec.plugin.repository", "required with spec.plugin.source.git"),
		Entry("package escaping the repository", func(cv *splicev1.CompilerVersion) { cv.Spec.Plugin.Package = "../other" }, gitCV,
			"spec.plugin.package", "inside the repository"),
		Entry("absolute package", func(cv *splicev1.CompilerVersion) { cv.Spec.Plugin.Package = "/src/plugin" }, gitCV,
			"spec.plugin.package", "inside the repository"),
		Entry("repository with a tag", func(cv *splicev1.CompilerVersion) {
			cv.Spec.Plugin.Repository = "registry.example.com/team/greeter:latest"
		}, gitCV, "spec.plugin.repository", "without tag or digest"),
		Entry("repository in upper case", func(cv *splicev1.CompilerVersion) {
			cv.Spec.Plugin.Repository = "registry.example.com/Team/greeter"
		}, gitCV, "spec.plugin.repository", "lower case"),
		Entry("git URL that is not a URL", func(cv *splicev1.CompilerVersion) { cv.Spec.Plugin.Source.Git.URL = "plugins" }, gitCV,
			"spec.plugin.source.git.url", "clone URL"),
		Entry("git revision with spaces", func(cv *splicev1.CompilerVersion) { cv.Spec.Plugin.Source.Git.Revision = "main branch" }, gitCV,
			"spec.plugin.source.git.revision", "without spaces"),
		Entry("unexported symbol", func(cv *splicev1.CompilerVersion) { cv.Spec.Plugin.Symbol = "plugin" }, gitCV,
			"spec.plugin.symbol", "exported Go identifier"),
		Entry("apiVersion not semver", func(cv *splicev1.CompilerVersion) { cv.Spec.Plugin.APIVersion = "v2" }, gitCV,
			"spec.plugin.apiVersion", "semantic version"),
		Entry("tag with a space", func(cv *splicev1.CompilerVersion) { cv.Spec.Plugin.Tags = []string{"net go"} }, gitCV,
			"spec.plugin.tags[0]", "should match"),
		Entry("empty selector", func(cv *splicev1.CompilerVersion) { cv.Spec.Selector = metav1.LabelSelector{} }, gitCV,
			"spec.selector", "must not be empty"),
		Entry("unknown strategy", func(cv *splicev1.CompilerVersion) { cv.Spec.Strategy.Type = "BlueGreen" }, gitCV,
			"spec.strategy.type", "supported values"),
		Entry("canary without steps", func(cv *splicev1.CompilerVersion) { cv.Spec.Strategy.Canary = nil }, artifactCV,
			"spec.strategy", "canary.steps is required when spec.strategy.type is Canary"),
		Entry("canary block on RollingPatch", func(cv *splicev1.CompilerVersion) {
			cv.Spec.Strategy.Type = splicev1.StrategyRollingPatch
		}, artifactCV, "spec.strategy", "canary may only be set when spec.strategy.type is Canary"),
		Entry("rollingPatch block on Strict", func(cv *splicev1.CompilerVersion) {
			cv.Spec.Strategy = splicev1.RolloutStrategy{Type: splicev1.StrategyStrict, RollingPatch: &splicev1.RollingPatchStrategy{}}
		}, gitCV, "spec.strategy", "rollingPatch may only be set when spec.strategy.type is RollingPatch"),
		Entry("strict block on Canary", func(cv *splicev1.CompilerVersion) {
			cv.Spec.Strategy.Strict = &splicev1.StrictStrategy{}
		}, artifactCV, "spec.strategy", "strict may only be set when spec.strategy.type is Strict"),
		Entry("maxUnavailable zero", func(cv *splicev1.CompilerVersion) {
			cv.Spec.Strategy.RollingPatch = &splicev1.RollingPatchStrategy{MaxUnavailable: ptr.To(intstr.FromInt32(0))}
		}, gitCV, "spec.strategy.rollingPatch.maxUnavailable", "at least 1"),
		Entry("maxUnavailable 150%", func(cv *splicev1.CompilerVersion) {
			cv.Spec.Strategy.RollingPatch = &splicev1.RollingPatchStrategy{MaxUnavailable: ptr.To(intstr.FromString("150%"))}
		}, gitCV, "spec.strategy.rollingPatch.maxUnavailable", "1% to 100%"),
		Entry("maxUnavailable words", func(cv *splicev1.CompilerVersion) {
			cv.Spec.Strategy.RollingPatch = &splicev1.RollingPatchStrategy{MaxUnavailable: ptr.To(intstr.FromString("half"))}
		}, gitCV, "spec.strategy.rollingPatch.maxUnavailable", "percentage"),
		Entry("setWeight over 100", func(cv *splicev1.CompilerVersion) { cv.Spec.Strategy.Canary.Steps[0].SetWeight = 101 }, artifactCV,
			"spec.strategy.canary.steps[0].setWeight", "less than or equal to 100"),
		Entry("trafficPercent negative", func(cv *splicev1.CompilerVersion) {
			cv.Spec.Strategy.Canary.Steps[0].TrafficPercent = ptr.To[int32](-1)
		}, artifactCV, "spec.strategy.canary.steps[0].trafficPercent", "greater than or equal to 0"),
		Entry("pause longer than a week", func(cv *splicev1.CompilerVersion) {
			cv.Spec.Strategy.Canary.Steps[0].Pause.Duration = &metav1.Duration{Duration: 200 * time.Hour}
		}, artifactCV, "spec.strategy.canary.steps[0].pause.duration", "at most 168h"),
		Entry("maxErrorRatePercent over 100", func(cv *splicev1.CompilerVersion) {
			cv.Spec.Strategy.Canary.Steps[0].Analysis.MaxErrorRatePercent = ptr.To[int32](101)
		}, artifactCV, "spec.strategy.canary.steps[0].analysis.maxErrorRatePercent", "less than or equal to 100"),
		Entry("minCalls without maxErrorRatePercent", func(cv *splicev1.CompilerVersion) {
			cv.Spec.Strategy.Canary.Steps[0].Analysis.MaxErrorRatePercent = nil
			cv.Spec.Strategy.Canary.Steps[0].Analysis.MinCalls = ptr.To[int32](50)
		}, artifactCV, "spec.strategy.canary.steps[0].analysis", "set maxErrorRatePercent or remove minCalls"),
		Entry("minCalls negative", func(cv *splicev1.CompilerVersion) {
			cv.Spec.Strategy.Canary.Steps[0].Analysis.MinCalls = ptr.To[int32](-1)
		}, artifactCV, "spec.strategy.canary.steps[0].analysis.minCalls", "greater than or equal to 0"),
		Entry("Prometheus address that is not a URL", func(cv *splicev1.CompilerVersion) {
			cv.Spec.Strategy.Canary.Steps[0].Analysis.Prometheus = &splicev1.PrometheusAnalysis{Address: "prometheus:9090", Query: "up", MaxValue: "1"}
		}, artifactCV, "spec.strategy.canary.steps[0].analysis.prometheus.address", "http:// or https:// URL"),
		Entry("Prometheus maxValue that is not a number", func(cv *splicev1.CompilerVersion) {
			cv.Spec.Strategy.Canary.Steps[0].Analysis.Prometheus = &splicev1.PrometheusAnalysis{Address: "http://p:9090", Query: "up", MaxValue: "1%"}
		}, artifactCV, "spec.strategy.canary.steps[0].analysis.prometheus.maxValue", "decimal number"),
		Entry("unknown onFailure", func(cv *splicev1.CompilerVersion) { cv.Spec.Strategy.Canary.OnFailure = "Retry" }, artifactCV,
			"spec.strategy.canary.onFailure", "supported values"),
		Entry("too many steps", func(cv *splicev1.CompilerVersion) {
			for i := 0; i < 20; i++ {
				cv.Spec.Strategy.Canary.Steps = append(cv.Spec.Strategy.Canary.Steps, splicev1.CanaryStep{SetWeight: 100})
			}
		}, artifactCV, "spec.strategy.canary.steps", "must have at most 20 items"),
		Entry("maxLoadedVersions 1", func(cv *splicev1.CompilerVersion) { cv.Spec.MaxLoadedVersions = ptr.To[int32](1) }, gitCV,
			"spec.maxLoadedVersions", "greater than or equal to 2"),
	)

	It("rejects a malformed duration that the typed client cannot send", func() {
		// metav1.Duration always marshals validly, so send raw JSON as a user's YAML would.
		u := map[string]any{
			"apiVersion": "splice.dev/v1alpha1", "kind": "CompilerVersion",
			"metadata": map[string]any{"generateName": "cv-", "namespace": "default"},
			"spec": map[string]any{
				"goVersion": "1.26.8",
				"plugin":    map[string]any{"source": map[string]any{"artifact": "r.example.com/p@" + digest}},
				"selector":  map[string]any{"matchLabels": map[string]any{"app": "x"}},
				"strategy": map[string]any{"type": "Canary", "canary": map[string]any{"steps": []any{
					map[string]any{"setWeight": 10, "pause": map[string]any{"duration": "five minutes"}}}}},
			},
		}
		err := createRaw(u)
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring("spec.strategy.canary.steps[0].pause.duration"))
		Expect(err.Error()).To(ContainSubstring("Go duration such as 30s or 5m"))
	})

	It("fills in defaults on create", func() {
		cv := gitCV()
		cv.Spec.Strategy = splicev1.RolloutStrategy{}
		// An empty strategy is omitted from JSON, so the schema default applies.
		Expect(k8sClient.Create(ctx, cv)).To(Succeed())
		DeferCleanup(func() { Expect(k8sClient.Delete(ctx, cv)).To(Succeed()) })
		Expect(cv.Spec.Strategy.Type).To(Equal(splicev1.StrategyRollingPatch))
		Expect(cv.Spec.Plugin.Symbol).To(Equal("Plugin"))
		Expect(cv.Spec.MaxLoadedVersions).To(HaveValue(Equal(int32(8))))

		canary := artifactCV()
		Expect(k8sClient.Create(ctx, canary)).To(Succeed())
		DeferCleanup(func() { Expect(k8sClient.Delete(ctx, canary)).To(Succeed()) })
		Expect(canary.Spec.Strategy.Canary.OnFailure).To(Equal(splicev1.FailureRollback))

		rp := gitCV()
		rp.Spec.Strategy.RollingPatch = &splicev1.RollingPatchStrategy{}
		Expect(k8sClient.Create(ctx, rp)).To(Succeed())
		DeferCleanup(func() { Expect(k8sClient.Delete(ctx, rp)).To(Succeed()) })
		Expect(rp.Spec.Strategy.RollingPatch.MaxUnavailable).To(HaveValue(Equal(intstr.FromString("25%"))))
	})

	It("serves the status subresource separately from spec", func() {
		cv := gitCV()
		Expect(k8sClient.Create(ctx, cv)).To(Succeed())
		DeferCleanup(func() { Expect(k8sClient.Delete(ctx, cv)).To(Succeed()) })
		cv.Status.Phase = splicev1.PhasePending
		cv.Spec.GoVersion = "1.26.9" // ignored by the status endpoint
		Expect(k8sClient.Status().Update(ctx, cv)).To(Succeed())
		got := &splicev1.CompilerVersion{}
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(cv), got)).To(Succeed())
		Expect(got.Status.Phase).To(Equal(splicev1.PhasePending))
		Expect(got.Spec.GoVersion).To(Equal("1.26.8"))
	})

	It("reports every broken field at once", func() {
		cv := gitCV()
		cv.Spec.GoVersion = "latest"
		cv.Spec.Plugin.Symbol = "lower"
		cv.Spec.Selector = metav1.LabelSelector{}
		err := create(cv)
		Expect(err).To(HaveOccurred())
		for _, field := range []string{"spec.goVersion", "spec.plugin.symbol", "spec.selector"} {
			Expect(strings.Contains(err.Error(), field)).To(BeTrue(), "error should name %s: %v", field, err)
		}
	})
})

var _ = Describe("config/samples", func() {
	It("are all accepted by the API server", func() {
		files, err := filepath.Glob(filepath.Join(testenv.RepoRoot(), "config", "samples", "*.yaml"))
		Expect(err).NotTo(HaveOccurred())
		Expect(files).NotTo(BeEmpty())
		strategies := map[splicev1.StrategyType]bool{}
		for _, f := range files {
			raw, err := os.ReadFile(f)
			Expect(err).NotTo(HaveOccurred())
			cv := &splicev1.CompilerVersion{}
			Expect(yaml.UnmarshalStrict(raw, cv)).To(Succeed(), f)
			Expect(k8sClient.Create(ctx, cv, client.DryRunAll)).To(Succeed(), f)
			strategies[cv.Spec.Strategy.Type] = true
		}
		Expect(strategies).To(HaveLen(3), "one sample for each strategy")
	})
})
