//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/artifact"
	"github.com/splice-dev/splice/examples/greeter/greeterbuild"
	"github.com/splice-dev/splice/internal/clusterkit"
	"github.com/splice-dev/splice/internal/loadgen"
)

const (
	rolloutApp = "greeter-rollout"
	// rolloutServiceAccount is the rollout's pods' ServiceAccount; the chart binds the agent's
	// role to it (suite_test.go).
	rolloutServiceAccount = "greeter-rollout"
	rolloutReplicas       = 3
	// The load: loadWorkers goroutines, each sending a POST on a fresh connection every
	// loadInterval, until the rollout is over or loadMaxDuration has passed.
	loadWorkers     = 8
	loadInterval    = 50 * time.Millisecond
	loadMaxDuration = 2 * time.Minute
)

// rolloutWatch follows, from watches (every update is seen, however short), the Service's ready
// endpoints and the rollout's pods: their readiness conditions, what the controller asks of them
// and what their agents answer.
type rolloutWatch struct {
	mu          sync.Mutex
	start       time.Time
	log         []string
	leastReady  int
	flips       int
	pods        map[string]*corev1.Pod
	track       string // digest whose concurrent swaps are counted
	maxInFlight int
}

func (w *rolloutWatch) record(f string, a ...any) {
	w.log = append(w.log, time.Since(w.start).Round(time.Millisecond).String()+": "+fmt.Sprintf(f, a...))
}

// ended records that the watch of kind ended before the session did.
func (w *rolloutWatch) ended(kind string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.record("%s watch ended", kind)
}

// readiness is a pod's two readiness conditions, as the watch compares and logs them.
func readiness(p *corev1.Pod) string {
	return fmt.Sprintf("Ready=%s plugin-ready=%s", podCondition(p, corev1.PodReady), podCondition(p, corev1.PodConditionType(splicev1.PodConditionPluginReady)))
}

// trackSwaps starts counting, for digest, how many pods are asked to run it and do not yet serve
// it with plugin-ready True, at most, at any moment.
func (w *rolloutWatch) trackSwaps(digest string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.track, w.maxInFlight = digest, 0
}

func (w *rolloutWatch) summary() (leastReady, flips, maxInFlight int, log []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.leastReady, w.flips, w.maxInFlight, append([]string(nil), w.log...)
}

// servesAll reports whether the watch has seen every pod asked for digest and serving it: the
// pod events that led to a phase the CompilerVersion reports may still be on their way to the
// watch.
func (w *rolloutWatch) servesAll(digest string, n int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	serving := 0
	for _, p := range w.pods {
		if strings.HasSuffix(p.Annotations[splicev1.AnnotationDesiredArtifact], digest) && !swapping(p, digest) {
			serving++
		}
	}
	return serving == n
}

// readyEndpoints counts the ready endpoints of an EndpointSlice.
func readyEndpoints(s *discoveryv1.EndpointSlice) int {
	n := 0
	for _, e := range s.Endpoints {
		if e.Conditions.Ready != nil && *e.Conditions.Ready {
			n++
		}
	}
	return n
}

// podSwap is what the controller asks of p and what its agent answers.
func podSwap(p *corev1.Pod) (desired, report string) {
	desired = shortDigest(p.Annotations[splicev1.AnnotationDesiredArtifact])
	report = "-"
	if r, err := splicev1.DecodeReport(p.Annotations[splicev1.AnnotationReport]); err == nil {
		report = string(r.State) + "@" + shortDigest(r.Digest)
	}
	return desired, report
}

// swapping reports whether p is asked to run digest and does not yet serve it, plugin-ready.
func swapping(p *corev1.Pod, digest string) bool {
	if digest == "" || !strings.HasSuffix(p.Annotations[splicev1.AnnotationDesiredArtifact], digest) {
		return false
	}
	r, err := splicev1.DecodeReport(p.Annotations[splicev1.AnnotationReport])
	// A canary member serving digest to its share of calls (Running stays the stable version)
	// is done as well.
	done := err == nil && r.State == splicev1.SwapReady && r.Digest == digest && (r.Running == digest || r.TrafficPercent != nil) &&
		podCondition(p, corev1.PodConditionType(splicev1.PodConditionPluginReady)) == corev1.ConditionTrue
	return !done
}

// watchRollout starts a rolloutWatch on the greeter Service svc and its pods (app=svc) until
// stop is closed.
func watchRollout(ctx context.Context, svc string, stop <-chan struct{}) *rolloutWatch {
	GinkgoHelper()
	w := &rolloutWatch{start: time.Now(), leastReady: 1 << 30, pods: map[string]*corev1.Pod{}}
	sw, err := kube.DiscoveryV1().EndpointSlices(testNamespace).Watch(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	Expect(err).NotTo(HaveOccurred())
	pw, err := kube.CoreV1().Pods(testNamespace).Watch(ctx, metav1.ListOptions{LabelSelector: "app=" + svc})
	Expect(err).NotTo(HaveOccurred())
	go func() {
		defer sw.Stop()
		defer pw.Stop()
		ready := map[string]int{} // per slice
		for {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case ev, ok := <-sw.ResultChan():
				if !ok {
					w.ended("endpointslice")
					return
				}
				s, ok := ev.Object.(*discoveryv1.EndpointSlice)
				if !ok {
					continue
				}
				ready[s.Name] = readyEndpoints(s)
				total := 0
				for _, v := range ready {
					total += v
				}
				w.mu.Lock()
				w.leastReady = min(w.leastReady, total)
				w.mu.Unlock()
			case ev, ok := <-pw.ResultChan():
				if !ok {
					w.ended("pod")
					return
				}
				p, ok := ev.Object.(*corev1.Pod)
				if !ok {
					continue
				}
				w.mu.Lock()
				if prev := w.pods[p.Name]; prev != nil {
					if was, is := readiness(prev), readiness(p); was != is {
						w.flips++
						w.record("pod %s %s -> %s", p.Name, was, is)
					}
					d0, r0 := podSwap(prev)
					d1, r1 := podSwap(p)
					if d0 != d1 || r0 != r1 {
						w.record("pod %s desired=%s report=%s", p.Name, d1, r1)
					}
				}
				w.pods[p.Name] = p
				n := 0
				for _, q := range w.pods {
					if swapping(q, w.track) {
						n++
					}
				}
				w.maxInFlight = max(w.maxInFlight, n)
				w.mu.Unlock()
			}
		}
	}()
	return w
}

var _ = Describe("Rollout under load", Ordered, func() {
	var (
		cli       client.Client
		svc       *corev1.Service
		refs      = map[string]string{} // plugin build -> artifact ref
		digests   = map[string]string{}
		greetPath string
		key       = client.ObjectKey{Name: rolloutApp}
	)
	// Each rollout gets an artifact of its own: a plugin source built with a nonce of its own
	// is a distinct plugin path and digest ("v2b" is v2's source built again).
	type build struct{ name, source, nonce, api string }
	builds := []build{
		{"v2", "v2", "a", "1.0.1"}, {"v3", "v3", "a", "1.1.0"},
		{"v2b", "v2", "b", "1.0.1"}, {"v3b", "v3", "b", "1.1.0"}, {"v2c", "v2", "c", "1.0.1"},
		{"flaky", "flaky", "a", "1.0.4"}, {"flaky2", "flaky", "b", "1.0.4"},
	}

	BeforeAll(func(ctx SpecContext) {
		var err error
		key.Namespace = testNamespace
		cli, err = client.New(restConfig, client.Options{Scheme: scheme()})
		Expect(err).NotTo(HaveOccurred())

		// A ServiceAccount of its own, which the chart binds the agent's role to (suite_test.go).
		_, err = kube.CoreV1().ServiceAccounts(testNamespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: rolloutServiceAccount}}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())

		start := time.Now()
		ensureInfra(ctx)
		GinkgoWriter.Printf("in-cluster registry ready after %s\n", time.Since(start).Round(100*time.Millisecond))

		By("building the plugins on this machine, as the greeter image's host was built, and pushing them to the in-cluster registry")
		start = time.Now()
		gb := &greeterbuild.Builder{Root: repoRoot, Out: filepath.Join(repoRoot, ".local", "e2e", "plugins")}
		run := time.Now().UnixNano()
		for _, b := range builds {
			built, err := gb.Plugin(ctx, b.source, fmt.Sprintf("e2e-%s-%d", b.nonce, run))
			Expect(err).NotTo(HaveOccurred())
			refs[b.name], digests[b.name], err = artifact.Push(ctx, registryAddr+"/greeter-rollout", built.Path, artifact.Config{APIVersion: b.api}, artifact.WithInsecureRegistries(registryAddr))
			Expect(err).NotTo(HaveOccurred())
			GinkgoWriter.Printf("plugin %s (%s): %s\n", b.name, b.source, refs[b.name])
		}
		GinkgoWriter.Printf("%d plugins built and pushed in %s\n", len(builds), time.Since(start).Round(100*time.Millisecond))

		By(fmt.Sprintf("deploying %d opted-in greeter pods running their built-in v1", rolloutReplicas))
		start = time.Now()
		_, err = kube.AppsV1().Deployments(testNamespace).Create(ctx, clusterkit.Greeter(testNamespace, rolloutApp, rolloutServiceAccount, rolloutReplicas), metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		svc, err = kube.CoreV1().Services(testNamespace).Create(ctx, clusterkit.GreeterService(testNamespace, rolloutApp), metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(clusterkit.WaitReady(ctx, kube, testNamespace, rolloutApp, rolloutReplicas, 3*time.Minute)).To(Succeed())
		greetPath = fmt.Sprintf("http://%s/greet", svc.Spec.ClusterIP)
		Expect(waitServing(ctx, rolloutApp, rolloutReplicas, greetPath)).To(Equal("v1"), "the version answering before any rollout")
		GinkgoWriter.Printf("%s (%d pods) Ready and answering v1 %s after create\n", rolloutApp, rolloutReplicas, time.Since(start).Round(100*time.Millisecond))
	}, NodeTimeout(8*time.Minute))

	rollingPatch1 := splicev1.RolloutStrategy{Type: splicev1.StrategyRollingPatch,
		RollingPatch: &splicev1.RollingPatchStrategy{MaxUnavailable: ptrIntOrString(intstr.FromInt32(1))}}
	// rollTo points the CompilerVersion at plugin build name, rolled out with strategy, and
	// returns the new generation.
	rollTo := func(ctx context.Context, name string, strategy splicev1.RolloutStrategy) int64 {
		GinkgoHelper()
		i := slices.IndexFunc(builds, func(b build) bool { return b.name == name })
		Expect(i).NotTo(BeNumerically("<", 0), "no plugin build %q", name)
		return updateCV(ctx, cli, key, func(cur *splicev1.CompilerVersion) {
			cur.Spec.Plugin.Source.Artifact, cur.Spec.Plugin.APIVersion = refs[name], builds[i].api
			cur.Spec.Strategy = strategy
		})
	}

	// expectNoFailures checks a hot-swap session: not one failed request.
	expectNoFailures := func(res *loadgen.Result, summary string, transitions []string) {
		GinkgoHelper()
		Expect(res.Requests).To(BeNumerically(">", 0))
		Expect(res.Failures).To(BeZero(), "failed requests during hot-swap rollouts: %s; first failures: %v; pod transitions: %v",
			summary, res.FirstErrors, transitions)
	}

	It("hot-swaps every pod v1 -> v2 (first rollout) -> v3 (RollingPatch, one pod at a time) while the Service answers every request", func(ctx SpecContext) {
		// A few seconds of v1 traffic before the rollout starts.
		s := startTraffic(ctx, rolloutApp, greetPath, 3*time.Second)

		By("rolling v2 out: the CompilerVersion's first rollout, every pod at once")
		cv := &splicev1.CompilerVersion{
			ObjectMeta: metav1.ObjectMeta{Name: rolloutApp, Namespace: testNamespace},
			Spec: splicev1.CompilerVersionSpec{
				GoVersion: "1.26.8",
				Plugin: splicev1.PluginSpec{
					Source:     splicev1.PluginSource{Artifact: refs["v2"]},
					APIVersion: "1.0.1",
					// v3 declares API 1.1.0: a minor change, which needs consent.
					AllowMinorAPIChange: true,
				},
				Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": rolloutApp}},
				Strategy: rollingPatch1,
			},
		}
		ps := s.begin(digests["v2"])
		Expect(cli.Create(ctx, cv)).To(Succeed())
		got := waitCompleted(ctx, cli, key, digests["v2"], cv.Generation)
		s.record("v1 -> v2 (first rollout)", ps, got)

		// A second of v2 traffic between the rollouts.
		s.more(time.Second)

		By("rolling v3 out with RollingPatch, maxUnavailable 1")
		ps = s.begin(digests["v3"])
		generation := rollTo(ctx, "v3", rollingPatch1)
		got = waitCompleted(ctx, cli, key, digests["v3"], generation)
		rp := s.record("v2 -> v3 (RollingPatch, maxUnavailable 1)", ps, got)

		// Two more seconds of traffic after completion: kube-proxy and the hosts must still answer.
		s.more(2 * time.Second)
		res, summary, transitions := s.finish()

		By("checking every pod's report: Ready on v3, plugin-ready True, and the Service answering from v3 only")
		checkPodsServe(ctx, "app="+rolloutApp, refs["v3"], digests["v3"], rolloutReplicas)
		Expect(answers(greetPath, 30)).To(Equal(map[string]int{"v3": 30}))

		expectNoFailures(res, summary, transitions)
		Expect(rp.maxInFlight).To(Equal(1), "RollingPatch with maxUnavailable 1 must swap one pod at a time; pod transitions: %v", transitions)
	}, SpecTimeout(10*time.Minute))

	It("Canary: one pod gets half of its calls on the new version and waits; kubectl splice shows it and promotes it; the Service answers every request", func(ctx SpecContext) {
		s := startTraffic(ctx, rolloutApp, greetPath, 2*time.Second)

		By("rolling v2b out with Canary: setWeight 33 (1 of 3 pods) at 50% of its calls, then a pause until promoted")
		ps := s.begin(digests["v2b"])
		generation := rollTo(ctx, "v2b", splicev1.RolloutStrategy{Type: splicev1.StrategyCanary, Canary: &splicev1.CanaryStrategy{Steps: []splicev1.CanaryStep{
			{SetWeight: 33, TrafficPercent: ptr.To[int32](50), Pause: &splicev1.CanaryPause{}},
		}}})
		paused := waitPhase(ctx, cli, key, digests["v2b"], generation, splicev1.PhasePaused, splicev1.PhaseDegraded, splicev1.PhaseRolledBack)
		toPause := time.Since(ps.at)
		Expect(paused.Status.CurrentStepIndex).To(HaveValue(Equal(int32(0))))

		By("checking that one pod splits its calls and the Service answers from both versions")
		pods, err := kube.CoreV1().Pods(testNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + rolloutApp})
		Expect(err).NotTo(HaveOccurred())
		canaries := 0
		for _, p := range pods.Items {
			if p.Annotations[splicev1.AnnotationDesiredArtifact] != refs["v2b"] {
				Expect(p.Annotations[splicev1.AnnotationDesiredArtifact]).To(Equal(refs["v3"]), "pod %s", p.Name)
				continue
			}
			canaries++
			Expect(p.Annotations[splicev1.AnnotationTrafficPercent]).To(Equal("50"), "pod %s", p.Name)
			Expect(p.Annotations[splicev1.AnnotationStableArtifact]).To(Equal(refs["v3"]), "pod %s", p.Name)
			rep, err := splicev1.DecodeReport(p.Annotations[splicev1.AnnotationReport])
			Expect(err).NotTo(HaveOccurred())
			Expect(rep.State).To(Equal(splicev1.SwapReady), "pod %s report %+v", p.Name, rep)
			Expect(rep.TrafficPercent).To(HaveValue(Equal(int32(50))), "pod %s report %+v", p.Name, rep)
			Expect(rep.Running).To(Equal(digests["v3"]), "pod %s: the stable version keeps serving the rest", p.Name)
		}
		Expect(canaries).To(Equal(1), "canary pods")
		// 1 pod of 3 at 50%: about one answer in six from v2; 90 requests miss it with
		// probability (5/6)^90, about 1e-7.
		mix := answers(greetPath, 90)
		GinkgoWriter.Printf("answers during the canary pause: %v\n", mix)
		Expect(mix).To(HaveKey("v2"))
		Expect(mix).To(HaveKey("v3"))

		By("kubectl splice get: the paused canary and its pods")
		out := kubectlSplice(ctx, "get", rolloutApp)
		Expect(out).To(ContainSubstring("Paused"))
		for _, p := range pods.Items {
			Expect(out).To(ContainSubstring(p.Name))
		}

		By("kubectl splice promote: every pod, all calls")
		promoteAt := time.Now()
		kubectlSplice(ctx, "promote", rolloutApp)
		got := waitCompleted(ctx, cli, key, digests["v2b"], generation)
		ph := s.record("v3 -> v2b (Canary 33% at 50% traffic, paused, promoted)", ps, got)
		GinkgoWriter.Printf("canary: %s to its pause, %s from promote to Completed\n", toPause.Round(10*time.Millisecond), time.Since(promoteAt).Round(10*time.Millisecond))
		Expect(got.Status.StableArtifact).NotTo(BeNil())
		Expect(got.Status.StableArtifact.Digest).To(Equal(digests["v2b"]))
		Expect(kubectlSplice(ctx, "get", rolloutApp)).To(ContainSubstring("Completed"))

		s.more(2 * time.Second)
		res, summary, transitions := s.finish()
		checkPodsServe(ctx, "app="+rolloutApp, refs["v2b"], digests["v2b"], rolloutReplicas)
		expectNoFailures(res, summary, transitions)
		Expect(ph.maxInFlight).To(BeNumerically("<=", rolloutReplicas))
	}, SpecTimeout(10*time.Minute))

	It("Strict: every pod swaps at once, and the Service answers every request", func(ctx SpecContext) {
		s := startTraffic(ctx, rolloutApp, greetPath, 2*time.Second)

		By("rolling v3b out with Strict")
		ps := s.begin(digests["v3b"])
		generation := rollTo(ctx, "v3b", splicev1.RolloutStrategy{Type: splicev1.StrategyStrict})
		got := waitCompleted(ctx, cli, key, digests["v3b"], generation)
		ph := s.record("v2b -> v3b (Strict)", ps, got)
		s.more(2 * time.Second)
		res, summary, transitions := s.finish()
		checkPodsServe(ctx, "app="+rolloutApp, refs["v3b"], digests["v3b"], rolloutReplicas)
		expectNoFailures(res, summary, transitions)
		leastReady, _, _, _ := s.w.summary()
		// Every pod swaps at once; none leaves the Service while it does (plugin-ready stays
		// True while the host serves the old version).
		Expect(ph.maxInFlight).To(BeNumerically(">=", 2), "Strict moves every pod at once; pod transitions: %v", transitions)
		Expect(leastReady).To(Equal(rolloutReplicas), "a pod left the Service during the swap; pod transitions: %v", transitions)
	}, SpecTimeout(10*time.Minute))

	It("completes a rollout whose manager pod is deleted mid-way, and the Service answers every request", func(ctx SpecContext) {
		s := startTraffic(ctx, rolloutApp, greetPath, 2*time.Second)
		managers, err := kube.CoreV1().Pods(releaseNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=manager"})
		Expect(err).NotTo(HaveOccurred())
		Expect(managers.Items).NotTo(BeEmpty())

		By("rolling v2c out with Canary: 1 of 3 pods, a 15 s timed pause, then every pod")
		ps := s.begin(digests["v2c"])
		generation := rollTo(ctx, "v2c", splicev1.RolloutStrategy{Type: splicev1.StrategyCanary, Canary: &splicev1.CanaryStrategy{Steps: []splicev1.CanaryStep{
			{SetWeight: 33, Pause: &splicev1.CanaryPause{Duration: &metav1.Duration{Duration: 15 * time.Second}}},
		}}})
		waitPhase(ctx, cli, key, digests["v2c"], generation, splicev1.PhasePaused, splicev1.PhaseDegraded, splicev1.PhaseRolledBack)

		By("deleting the manager pod during the timed pause")
		deletedAt := time.Now()
		old := map[string]bool{}
		for _, m := range managers.Items {
			old[m.Name] = true
			Expect(kube.CoreV1().Pods(releaseNamespace).Delete(ctx, m.Name, metav1.DeleteOptions{})).To(Succeed())
		}
		Eventually(func(g Gomega) {
			ms, err := kube.CoreV1().Pods(releaseNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=manager"})
			g.Expect(err).NotTo(HaveOccurred())
			fresh := 0
			for _, m := range ms.Items {
				if !old[m.Name] && podCondition(&m, corev1.PodReady) == corev1.ConditionTrue {
					fresh++
				}
			}
			g.Expect(fresh).To(BeNumerically(">=", 1), "a new manager pod Ready")
		}).WithContext(ctx).WithTimeout(3 * time.Minute).Should(Succeed())
		managerBack := time.Since(deletedAt)

		got := waitCompleted(ctx, cli, key, digests["v2c"], generation)
		s.record("v3b -> v2c (Canary with a 15 s pause; manager pod deleted in the pause)", ps, got)
		GinkgoWriter.Printf("manager: new pod Ready %s after the delete; rollout Completed %s after the delete\n",
			managerBack.Round(10*time.Millisecond), time.Since(deletedAt).Round(10*time.Millisecond))
		s.more(2 * time.Second)
		res, summary, transitions := s.finish()
		checkPodsServe(ctx, "app="+rolloutApp, refs["v2c"], digests["v2c"], rolloutReplicas)
		expectNoFailures(res, summary, transitions)
	}, SpecTimeout(10*time.Minute))

	// failingCanary rolls the flaky plugin out as a one-pod canary whose analysis allows 5%
	// errors; the plugin fails every fourth call.
	failingCanary := func(ctx context.Context, plugin string, onFailure splicev1.FailurePolicy) int64 {
		return rollTo(ctx, plugin, splicev1.RolloutStrategy{Type: splicev1.StrategyCanary, Canary: &splicev1.CanaryStrategy{
			OnFailure: onFailure,
			Steps: []splicev1.CanaryStep{{SetWeight: 33,
				Analysis: &splicev1.CanaryAnalysis{MaxErrorRatePercent: ptr.To[int32](5)}, Pause: &splicev1.CanaryPause{}}},
		}})
	}
	// onlyPluginErrors checks that every failed request was the flaky plugin's own error
	// answered by the host (HTTP 500), never a connection that failed.
	onlyPluginErrors := func(res *loadgen.Result) {
		GinkgoHelper()
		Expect(res.TransportErrors).To(BeZero(), "requests without an answer: %v", res.FirstErrors)
		Expect(res.Statuses).To(Equal(map[int]int64{http.StatusInternalServerError: res.Failures}), "answers other than 200: %v", res.FirstErrors)
		for _, e := range res.FirstErrors {
			Expect(e).To(ContainSubstring("flaky: deliberate failure"), "a failure other than the plugin's own error")
		}
	}

	// backOnStable checks, after a failed canary, that every pod is back on the stable v2c
	// (and says how long after since that was), records the phase, and measures 3 s of load
	// that must not see one failure; before it, only the flaky plugin's own errors may have
	// failed requests.
	backOnStable := func(ctx context.Context, s *trafficSession, name string, ps phaseStart, got *splicev1.CompilerVersion, since time.Time, sinceWhat string) (*loadgen.Result, string, []string) {
		GinkgoHelper()
		checkPodsServe(ctx, "app="+rolloutApp, refs["v2c"], digests["v2c"], rolloutReplicas)
		GinkgoWriter.Printf("every pod back on the stable version %s after %s\n", time.Since(since).Round(10*time.Millisecond), sinceWhat)
		s.record(name, ps, got)
		requests, failed := s.more(3 * time.Second)
		res, summary, transitions := s.finish()
		GinkgoWriter.Printf("back on the stable version: %d requests (3 s at full pace), %d failed\n", requests, failed)
		Expect(failed).To(BeZero(), "requests failed on the stable version: %s", summary)
		onlyPluginErrors(res)
		return res, summary, transitions
	}

	It("Canary: a failing analysis rolls the canary back, and the Service keeps answering", func(ctx SpecContext) {
		s := startTraffic(ctx, rolloutApp, greetPath, 2*time.Second)

		By("rolling the flaky plugin (every fourth call fails) out as a canary whose analysis allows 5% errors")
		ps := s.begin(digests["flaky"])
		generation := failingCanary(ctx, "flaky", "")
		got := waitPhase(ctx, cli, key, digests["flaky"], generation, splicev1.PhaseRolledBack, splicev1.PhaseCompleted)
		degraded := apimeta.FindStatusCondition(got.Status.Conditions, splicev1.ConditionDegraded)
		Expect(degraded).NotTo(BeNil())
		Expect(degraded.Reason).To(Equal("AnalysisFailed"), "%+v", degraded)
		Expect(degraded.Message).To(ContainSubstring("error rate"))
		GinkgoWriter.Printf("rolled back %s after the change: %s\n", time.Since(ps.at).Round(10*time.Millisecond), degraded.Message)

		By("checking that every pod is back on the stable version, and the Service answers without a failure")
		res, summary, transitions := backOnStable(ctx, s, "v2c -> flaky (Canary, failing analysis, rolled back)", ps, got, ps.at, "the change")
		Expect(res.Failures).To(BeNumerically(">", 0), "the flaky canary should have failed some requests: did it serve? %s", summary)
		Expect(answers(greetPath, 30)).To(Equal(map[string]int{"v2": 30}), "pod transitions: %v", transitions)
	}, SpecTimeout(10*time.Minute))

	It("Canary: with onFailure Pause a failing analysis pauses the rollout, and kubectl splice abort rolls it back", func(ctx SpecContext) {
		s := startTraffic(ctx, rolloutApp, greetPath, 2*time.Second)

		By("rolling flaky2 out as a canary with onFailure: Pause")
		ps := s.begin(digests["flaky2"])
		generation := failingCanary(ctx, "flaky2", splicev1.FailurePause)
		var got *splicev1.CompilerVersion
		Eventually(func(g Gomega) {
			got = waitPhase(ctx, cli, key, digests["flaky2"], generation, splicev1.PhasePaused, splicev1.PhaseRolledBack, splicev1.PhaseCompleted)
			degraded := apimeta.FindStatusCondition(got.Status.Conditions, splicev1.ConditionDegraded)
			g.Expect(degraded).NotTo(BeNil())
			g.Expect(degraded.Status).To(Equal(metav1.ConditionTrue), "%+v", degraded)
			g.Expect(degraded.Reason).To(Equal("AnalysisFailed"), "%+v", degraded)
		}).WithContext(ctx).WithTimeout(3 * time.Minute).Should(Succeed())
		GinkgoWriter.Printf("paused on the failing analysis %s after the change\n", time.Since(ps.at).Round(10*time.Millisecond))

		By("checking the canary pod stays where it is while paused")
		pods, err := kube.CoreV1().Pods(testNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + rolloutApp})
		Expect(err).NotTo(HaveOccurred())
		onCanary := 0
		for _, p := range pods.Items {
			if p.Annotations[splicev1.AnnotationDesiredArtifact] == refs["flaky2"] {
				onCanary++
				// Its error rate is judged: its agent is asked for counters every 10 s.
				Expect(p.Annotations).To(HaveKeyWithValue(splicev1.AnnotationCountersInterval, "10s"), "pod %s", p.Name)
			} else {
				Expect(p.Annotations).NotTo(HaveKey(splicev1.AnnotationCountersInterval), "pod %s", p.Name)
			}
		}
		Expect(onCanary).To(Equal(1))
		Expect(kubectlSplice(ctx, "get", rolloutApp)).To(ContainSubstring("Paused"))

		By("kubectl splice abort")
		abortAt := time.Now()
		kubectlSplice(ctx, "abort", rolloutApp)
		got = waitPhase(ctx, cli, key, digests["flaky2"], generation, splicev1.PhaseRolledBack, splicev1.PhaseCompleted)
		backOnStable(ctx, s, "v2c -> flaky2 (Canary, onFailure Pause, aborted)", ps, got, abortAt, "kubectl splice abort")
	}, SpecTimeout(10*time.Minute))
})

func ptrIntOrString(v intstr.IntOrString) *intstr.IntOrString { return &v }

// shortDigest is the first 12 hex digits of the digest in ref ("-" when it has none).
func shortDigest(ref string) string {
	_, d, ok := strings.Cut(ref, "sha256:")
	if !ok || len(d) < 12 {
		return "-"
	}
	return d[:12]
}
