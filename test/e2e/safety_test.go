//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/artifact"
	"github.com/splice-dev/splice/examples/greeter/greeterbuild"
	"github.com/splice-dev/splice/internal/clusterkit"
)

const (
	safetyApp = "greeter-safety"
	// safetyServiceAccount: the chart binds the agent's role to it (suite_test.go).
	safetyServiceAccount = "greeter-safety"
)

// variantFlags are the flags of hack/images' variant greeter build: a plugin built with them
// differs from the usual host in package fmt, so every usual host's preflight refuses it.
var variantFlags = []string{"-trimpath", "-gcflags=fmt=-N -l"}

// The story: every way an artifact can go wrong, rolled out to a fleet of three pods under load,
// and what the Service sees. A refused artifact (its first rollout failing to load, one built
// with other compiler flags under Strict, a minor API change nobody consented to) leaves every
// pod Ready on what its host serves; a plugin that kills its host costs one container restart
// in one pod, then the fleet is back on its stable version; a swap past spec.maxLoadedVersions
// re-execs the host without failing a request, and the version to roll back to is still there.
var _ = Describe("Nothing Splice delivers takes the Service down", Ordered, func() {
	var (
		cli       client.Client
		refs      = map[string]string{}
		digests   = map[string]string{}
		apis      = map[string]string{}
		greetPath string
		key       = client.ObjectKey{Name: safetyApp}
	)
	type build struct {
		name, source, api string
		flags             []string // nil: the greeter image's own flags
	}
	builds := []build{
		{name: "initpanic", source: "initpanic", api: "1.0.2"},
		{name: "v2", source: "v2", api: "1.0.1"},
		{name: "v2-variant", source: "v2", api: "1.0.1", flags: variantFlags},
		{name: "v3", source: "v3", api: "1.1.0"},
		{name: "gopanic", source: "gopanic", api: "1.1.1"},
		{name: "v3b", source: "v3", api: "1.1.0"},
		{name: "callpanic", source: "callpanic", api: "1.0.3"},
	}

	BeforeAll(func(ctx SpecContext) {
		var err error
		key.Namespace = testNamespace
		cli, err = client.New(restConfig, client.Options{Scheme: scheme()})
		Expect(err).NotTo(HaveOccurred())
		_, err = kube.CoreV1().ServiceAccounts(testNamespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: safetyServiceAccount}}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		ensureInfra(ctx)

		By("building the drills and good versions and pushing them")
		start := time.Now()
		run := time.Now().UnixNano()
		for i, b := range builds {
			gb := &greeterbuild.Builder{Root: repoRoot, Out: filepath.Join(repoRoot, ".local", "e2e", "plugins"), Flags: b.flags}
			built, err := gb.Plugin(ctx, b.source, fmt.Sprintf("e2e-safety-%d-%d", i, run))
			Expect(err).NotTo(HaveOccurred())
			refs[b.name], digests[b.name], err = artifact.Push(ctx, registryAddr+"/greeter-safety", built.Path, artifact.Config{APIVersion: b.api}, artifact.WithInsecureRegistries(registryAddr))
			Expect(err).NotTo(HaveOccurred())
			apis[b.name] = b.api
		}
		GinkgoWriter.Printf("%d plugins built and pushed in %s\n", len(builds), time.Since(start).Round(100*time.Millisecond))

		By(fmt.Sprintf("deploying %d opted-in greeter pods running their built-in v1", rolloutReplicas))
		_, err = kube.AppsV1().Deployments(testNamespace).Create(ctx, clusterkit.Greeter(testNamespace, safetyApp, safetyServiceAccount, rolloutReplicas), metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		svc, err := kube.CoreV1().Services(testNamespace).Create(ctx, clusterkit.GreeterService(testNamespace, safetyApp), metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(clusterkit.WaitReady(ctx, kube, testNamespace, safetyApp, rolloutReplicas, 3*time.Minute)).To(Succeed())
		greetPath = fmt.Sprintf("http://%s/greet", svc.Spec.ClusterIP)
		Expect(waitServing(ctx, safetyApp, rolloutReplicas, greetPath)).To(Equal("v1"))
	}, NodeTimeout(8*time.Minute))

	rollingPatch := func(onFailure splicev1.FailurePolicy) splicev1.RolloutStrategy {
		return splicev1.RolloutStrategy{Type: splicev1.StrategyRollingPatch, RollingPatch: &splicev1.RollingPatchStrategy{
			MaxUnavailable: ptrIntOrString(intstr.FromInt32(1)), OnFailure: onFailure}}
	}
	rollTo := func(ctx context.Context, name string, strategy splicev1.RolloutStrategy, mutate ...func(*splicev1.CompilerVersion)) int64 {
		GinkgoHelper()
		Expect(refs).To(HaveKey(name))
		return updateCV(ctx, cli, key, func(cur *splicev1.CompilerVersion) {
			cur.Spec.Plugin.Source.Artifact, cur.Spec.Plugin.APIVersion = refs[name], apis[name]
			cur.Spec.Strategy = strategy
			for _, m := range mutate {
				m(cur)
			}
		})
	}
	// holdsTheService finishes the session and checks the Service never lost a ready endpoint
	// and no request failed.
	holdsTheService := func(s *trafficSession, what string) {
		GinkgoHelper()
		res, summary, transitions := s.finish()
		leastReady, _, _, _ := s.w.summary()
		fmt.Printf("FAULT %s: fewest ready endpoints %d of %d, requests %d, failed %d\n", what, leastReady, rolloutReplicas, res.Requests, res.Failures)
		Expect(leastReady).To(Equal(rolloutReplicas), "%s: the Service lost ready endpoints; pod transitions: %v", what, transitions)
		Expect(res.Failures).To(BeZero(), "%s: %s; first failures %v", what, summary, res.FirstErrors)
	}

	It("a first rollout whose artifact fails to load leaves every pod Ready on what its host serves", func(ctx SpecContext) {
		s := startTraffic(ctx, safetyApp, greetPath, 2*time.Second)
		By("creating the CompilerVersion with the initpanic plugin: its init panics in plugin.Open")
		cv := &splicev1.CompilerVersion{
			ObjectMeta: metav1.ObjectMeta{Name: safetyApp, Namespace: testNamespace},
			Spec: splicev1.CompilerVersionSpec{
				GoVersion: "1.26.8",
				Plugin:    splicev1.PluginSpec{Source: splicev1.PluginSource{Artifact: refs["initpanic"]}, APIVersion: apis["initpanic"]},
				Selector:  metav1.LabelSelector{MatchLabels: map[string]string{"app": safetyApp}},
				Strategy:  rollingPatch(""),
			},
		}
		Expect(cli.Create(ctx, cv)).To(Succeed())
		waitReports(ctx, digests["initpanic"], 1, splicev1.SwapFailed)
		got := waitDegraded(ctx, cli, key, digests["initpanic"])
		GinkgoWriter.Printf("first rollout of initpanic: %s: %s\n", got.Status.Phase, got.Status.Progress)
		s.more(3 * time.Second)
		holdsTheService(s, "first rollout, artifact fails to load")
		Expect(answers(greetPath, 20)).To(Equal(map[string]int{"v1": 20}))

		By("rolling a good v2 out after it")
		generation := rollTo(ctx, "v2", rollingPatch(""))
		waitCompleted(ctx, cli, key, digests["v2"], generation)
		checkPodsServe(ctx, "app="+safetyApp, refs["v2"], digests["v2"], rolloutReplicas)
	}, SpecTimeout(8*time.Minute))

	It("Strict with an artifact every host refuses (other compiler flags) leaves every pod Ready on the stable version", func(ctx SpecContext) {
		s := startTraffic(ctx, safetyApp, greetPath, 2*time.Second)
		generation := rollTo(ctx, "v2-variant", splicev1.RolloutStrategy{Type: splicev1.StrategyStrict})
		waitReports(ctx, digests["v2-variant"], rolloutReplicas, splicev1.SwapIncompatible)
		got := waitDegraded(ctx, cli, key, digests["v2-variant"])
		Expect(got.Status.ObservedGeneration).To(BeNumerically(">=", generation))
		s.more(3 * time.Second)
		holdsTheService(s, "Strict, every host refuses the artifact")
		Expect(answers(greetPath, 20)).To(Equal(map[string]int{"v2": 20}))
	}, SpecTimeout(6*time.Minute))

	It("a minor API change rolls out only with the CompilerVersion's consent", func(ctx SpecContext) {
		s := startTraffic(ctx, safetyApp, greetPath, 2*time.Second)
		By("rolling v3 (API 1.1.0 over 1.0.1) out without spec.plugin.allowMinorAPIChange, onFailure Pause so that the refusal stands")
		rollTo(ctx, "v3", rollingPatch(splicev1.FailurePause))
		reports := waitReports(ctx, digests["v3"], 1, splicev1.SwapIncompatible)
		for _, r := range reports {
			Expect(r.Reason).To(Equal(splicev1.ReasonMinorAPIChangeNotAllowed), "%+v", r)
			Expect(r.Error).To(ContainSubstring("allowMinorAPIChange"), "%+v", r)
		}
		waitDegraded(ctx, cli, key, digests["v3"])
		s.more(2 * time.Second)

		By("consenting: spec.plugin.allowMinorAPIChange true, with a fresh build so that no pod's refusal stands")
		generation := rollTo(ctx, "v3b", rollingPatch(""), func(cv *splicev1.CompilerVersion) { cv.Spec.Plugin.AllowMinorAPIChange = true })
		waitCompleted(ctx, cli, key, digests["v3b"], generation)
		s.more(2 * time.Second)
		holdsTheService(s, "minor API change, refused then consented")
		checkPodsServe(ctx, "app="+safetyApp, refs["v3b"], digests["v3b"], rolloutReplicas)
	}, SpecTimeout(6*time.Minute))

	It("a plugin whose goroutine panics costs one container restart in the canary pod, then the fleet is back on stable and Ready", func(ctx SpecContext) {
		restartsBefore := appRestarts(ctx)
		s := startTraffic(ctx, safetyApp, greetPath, 2*time.Second)
		ps := s.begin(digests["gopanic"])
		generation := rollTo(ctx, "gopanic", splicev1.RolloutStrategy{Type: splicev1.StrategyCanary, Canary: &splicev1.CanaryStrategy{
			Steps: []splicev1.CanaryStep{{SetWeight: 33, Pause: &splicev1.CanaryPause{Duration: &metav1.Duration{Duration: 30 * time.Second}}}},
		}}, func(cv *splicev1.CompilerVersion) { cv.Spec.Plugin.AllowMinorAPIChange = true })
		// The crash is reported, judged and rolled back within a couple of seconds: the
		// CompilerVersion's failure list and Events keep what the pod's report said.
		got := waitPhase(ctx, cli, key, digests["gopanic"], generation, splicev1.PhaseRolledBack, splicev1.PhaseCompleted)
		GinkgoWriter.Printf("rolled back %s after the change\n", time.Since(ps.at).Round(10*time.Millisecond))
		i := slices.IndexFunc(got.Status.RecentFailures, func(f splicev1.PodFailure) bool {
			return f.Digest == digests["gopanic"] && f.State == splicev1.SwapCrashed
		})
		Expect(i).To(BeNumerically(">=", 0), "a Crashed failure for gopanic in status: %+v", got.Status.RecentFailures)
		GinkgoWriter.Printf("status: %+v\n", got.Status.RecentFailures[i])
		events, err := kube.CoreV1().Events(testNamespace).List(ctx, metav1.ListOptions{FieldSelector: "reason=HostCrashed"})
		Expect(err).NotTo(HaveOccurred())
		Expect(events.Items).NotTo(BeEmpty(), "a HostCrashed Event")
		Expect(events.Items[0].Message).To(ContainSubstring("restarted 1 time"))
		checkPodsServe(ctx, "app="+safetyApp, refs["v3b"], digests["v3b"], rolloutReplicas)
		s.record("v3b -> gopanic (Canary, the host crashes, rolled back)", ps, got)
		requests, failed := s.more(3 * time.Second)
		Expect(failed).To(BeZero(), "requests failed on the stable version after the rollback (%d sent)", requests)
		res, _, transitions := s.finish()
		leastReady, _, _, _ := s.w.summary()
		restarts := appRestarts(ctx)
		fmt.Printf("FAULT host crash: fewest ready endpoints %d of %d, requests %d, failed %d, container restarts %v (before %v)\n",
			leastReady, rolloutReplicas, res.Requests, res.Failures, restarts, restartsBefore)
		total := 0
		for pod, n := range restarts {
			Expect(n-restartsBefore[pod]).To(BeNumerically("<=", 1), "pod %s restarted %d times: a crash loop; transitions %v", pod, n-restartsBefore[pod], transitions)
			total += n - restartsBefore[pod]
		}
		Expect(total).To(Equal(1), "exactly the canary pod's host died once")
		deg := apimeta.FindStatusCondition(got.Status.Conditions, splicev1.ConditionDegraded)
		Expect(deg).NotTo(BeNil())
		Expect(deg.Message).To(ContainSubstring("crash"))
	}, SpecTimeout(8*time.Minute))

	It("a swap past spec.maxLoadedVersions re-execs the hosts without failing a request, and the version to roll back to survives the re-exec", func(ctx SpecContext) {
		s := startTraffic(ctx, safetyApp, greetPath, 2*time.Second)
		By("rolling v2 back in with maxLoadedVersions 2: every host holds more than two versions, so each swap re-execs it")
		ps := s.begin(digests["v2"])
		generation := rollTo(ctx, "v2", rollingPatch(""), func(cv *splicev1.CompilerVersion) { cv.Spec.MaxLoadedVersions = ptr.To[int32](2) })
		got := waitCompleted(ctx, cli, key, digests["v2"], generation)
		s.record("v3b -> v2 (RollingPatch, past maxLoadedVersions 2)", ps, got)
		Eventually(func(g Gomega) {
			for pod, log := range appLogs(ctx) {
				g.Expect(log).To(ContainSubstring("memory bound"), "pod %s re-exec'd for the memory bound", pod)
			}
		}).WithContext(ctx).WithTimeout(time.Minute).Should(Succeed())
		holdsTheService(s, "swaps past maxLoadedVersions (re-exec)")

		By("rolling callpanic out: the host crosses the bound again, re-execs, then rolls back on the panics to the version it kept")
		s = startTraffic(ctx, safetyApp, greetPath, 2*time.Second)
		ps = s.begin(digests["callpanic"])
		generation = rollTo(ctx, "callpanic", rollingPatch(splicev1.FailureRollback))
		// Each host serves callpanic until enough calls panic; a pod may have reported Ready
		// before that, so the rollout ends RolledBack (a host backed out first) or Degraded
		// (every pod was Ready first, then the hosts backed out). Either way every host serves
		// v2 again, the version its re-exec kept to roll back to.
		got = &splicev1.CompilerVersion{}
		Eventually(func(g Gomega) {
			g.Expect(cli.Get(ctx, key, got)).To(Succeed())
			g.Expect(got.Status.ObservedGeneration).To(BeNumerically(">=", generation))
			g.Expect(got.Status.Phase).To(BeElementOf(splicev1.PhaseRolledBack, splicev1.PhaseDegraded), "%s", got.Status.Progress)
			g.Expect(slices.ContainsFunc(got.Status.RecentFailures, func(f splicev1.PodFailure) bool {
				return f.Digest == digests["callpanic"] && f.State == splicev1.SwapRolledBack
			})).To(BeTrue(), "the host's own rollback of callpanic in status: %+v", got.Status.RecentFailures)
		}).WithContext(ctx).WithTimeout(3 * time.Minute).WithPolling(200 * time.Millisecond).Should(Succeed())
		GinkgoWriter.Printf("callpanic: %s after %s: %s\n", got.Status.Phase, time.Since(ps.at).Round(10*time.Millisecond), got.Status.Progress)
		Eventually(func(g Gomega) {
			pods, err := kube.CoreV1().Pods(testNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + safetyApp})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(pods.Items).To(HaveLen(rolloutReplicas))
			for i := range pods.Items {
				r, err := splicev1.DecodeReport(pods.Items[i].Annotations[splicev1.AnnotationReport])
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(r.Running).To(Equal(digests["v2"]), "pod %s serves v2 again: %+v", pods.Items[i].Name, r)
				// A pod the rollout reached just before it rolled back may still be swapping
				// to callpanic while its report says it runs v2: wait until its agent has
				// settled on what it is told now (v2 after a rollback, callpanic when Degraded),
				// so that every host has left callpanic before the load is judged.
				desired := pods.Items[i].Annotations[splicev1.AnnotationDesiredArtifact]
				g.Expect(desired).To(HaveSuffix("@"+r.Digest), "pod %s reports on what it is told (%s): %+v", pods.Items[i].Name, desired, r)
				g.Expect(r.State).NotTo(BeElementOf(splicev1.SwapPending, splicev1.SwapPulling, splicev1.SwapSwapping), "pod %s has settled: %+v", pods.Items[i].Name, r)
				g.Expect(podCondition(&pods.Items[i], corev1.PodReady)).To(Equal(corev1.ConditionTrue), "pod %s Ready", pods.Items[i].Name)
			}
		}).WithContext(ctx).WithTimeout(time.Minute).Should(Succeed())
		Expect(answers(greetPath, 20)).To(Equal(map[string]int{"v2": 20}))
		requests, failed := s.more(3 * time.Second)
		res, summary, _ := s.finish()
		Expect(failed).To(BeZero(), "requests failed on v2 after the rollback (%d sent): %s", requests, summary)
		fmt.Printf("FAULT panicking version past the memory bound: requests %d, failed %d (the panicking calls before the host's rollback)\n", res.Requests, res.Failures)
		Expect(res.TransportErrors).To(BeZero(), "requests without an answer: %s", summary)
		Expect(res.Failures).To(BeNumerically("<", 50), "the host must roll back after its panic threshold, not keep serving the bad version: %s", summary)
	}, SpecTimeout(8*time.Minute))
})

// waitReports waits until at least n live pods of the safety app report state for digest, and
// returns those reports.
func waitReports(ctx context.Context, digest string, n int, state splicev1.SwapState) []*splicev1.PodReport {
	GinkgoHelper()
	var out []*splicev1.PodReport
	Eventually(func(g Gomega) {
		pods, err := kube.CoreV1().Pods(testNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + safetyApp})
		g.Expect(err).NotTo(HaveOccurred())
		out = out[:0]
		var seen []string
		for i := range pods.Items {
			p := &pods.Items[i]
			r, err := splicev1.DecodeReport(p.Annotations[splicev1.AnnotationReport])
			if err != nil || p.DeletionTimestamp != nil {
				continue
			}
			seen = append(seen, fmt.Sprintf("%s: %s@%s %s", p.Name, r.State, shortDigest(r.Digest), r.Reason))
			if r.Digest == digest && r.State == state {
				out = append(out, r)
			}
		}
		g.Expect(len(out)).To(BeNumerically(">=", n), "pods reporting %s for %s; reports %v", state, shortDigest(digest), seen)
	}).WithContext(ctx).WithTimeout(3 * time.Minute).WithPolling(200 * time.Millisecond).Should(Succeed())
	return out
}

// waitDegraded waits until the CompilerVersion's artifact is digest and it is Degraded.
func waitDegraded(ctx context.Context, cli client.Client, key client.ObjectKey, digest string) *splicev1.CompilerVersion {
	GinkgoHelper()
	got := &splicev1.CompilerVersion{}
	Eventually(func(g Gomega) {
		g.Expect(cli.Get(ctx, key, got)).To(Succeed())
		g.Expect(got.Status.Artifact).NotTo(BeNil())
		g.Expect(got.Status.Artifact.Digest).To(Equal(digest))
		deg := apimeta.FindStatusCondition(got.Status.Conditions, splicev1.ConditionDegraded)
		g.Expect(deg).NotTo(BeNil())
		g.Expect(deg.Status).To(Equal(metav1.ConditionTrue), "phase %s: %s", got.Status.Phase, got.Status.Progress)
	}).WithContext(ctx).WithTimeout(3 * time.Minute).WithPolling(200 * time.Millisecond).Should(Succeed())
	return got
}

// appRestarts is the restart count of each safety pod's application container.
func appRestarts(ctx context.Context) map[string]int {
	GinkgoHelper()
	pods, err := kube.CoreV1().Pods(testNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + safetyApp})
	Expect(err).NotTo(HaveOccurred())
	out := map[string]int{}
	for _, p := range pods.Items {
		i := slices.IndexFunc(p.Status.ContainerStatuses, func(c corev1.ContainerStatus) bool { return c.Name == "greeter" })
		if i >= 0 {
			out[p.Name] = int(p.Status.ContainerStatuses[i].RestartCount)
		}
	}
	return out
}

// appLogs is each safety pod's application container log.
func appLogs(ctx context.Context) map[string]string {
	GinkgoHelper()
	pods, err := kube.CoreV1().Pods(testNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + safetyApp})
	Expect(err).NotTo(HaveOccurred())
	out := map[string]string{}
	for _, p := range pods.Items {
		raw, err := kube.CoreV1().Pods(testNamespace).GetLogs(p.Name, &corev1.PodLogOptions{Container: "greeter"}).DoRaw(ctx)
		Expect(err).NotTo(HaveOccurred())
		out[p.Name] = strings.TrimSpace(string(raw))
	}
	return out
}
