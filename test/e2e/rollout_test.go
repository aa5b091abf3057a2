//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/artifact"
	"github.com/splice-dev/splice/examples/greeter/greeterbuild"
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

// loadResult is what the load generator counted.
type loadResult struct {
	requests, failures int64
	versions           map[string]int64
	firstErrors        []string
	duration           time.Duration
}

// loadCounters are the load generator's running counts, read while it runs.
type loadCounters struct{ requests, failures atomic.Int64 }

// runLoad sends bounded traffic to url until stop is closed or loadMaxDuration has passed.
func runLoad(url string, stop <-chan struct{}, counters *loadCounters) *loadResult {
	var (
		requests, failures = &counters.requests, &counters.failures
		mu                 sync.Mutex
		versions           = map[string]int64{}
		firstErrors        []string
		wg                 sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(loadMaxDuration)
	fail := func(msg string) {
		failures.Add(1)
		mu.Lock()
		defer mu.Unlock()
		if len(firstErrors) < 10 {
			firstErrors = append(firstErrors, time.Since(start).Round(time.Millisecond).String()+": "+msg)
		}
	}
	for w := range loadWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A fresh connection for every request: each one goes through kube-proxy's choice
			// of endpoint.
			c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			tick := time.NewTicker(loadInterval)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				if time.Now().After(deadline) {
					return
				}
				requests.Add(1)
				resp, err := c.Post(url, "text/plain", strings.NewReader(fmt.Sprintf("w%d-%d", w, i)))
				if err != nil {
					fail(err.Error())
					continue
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					fail("read body: " + err.Error())
					continue
				}
				if resp.StatusCode != http.StatusOK {
					fail(fmt.Sprintf("status %d: %s", resp.StatusCode, body))
					continue
				}
				v := resp.Header.Get("X-Plugin-Version")
				mu.Lock()
				versions[v]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return &loadResult{requests: requests.Load(), failures: failures.Load(), versions: versions, firstErrors: firstErrors, duration: time.Since(start)}
}

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
	done := err == nil && r.State == splicev1.SwapReady && r.Digest == digest && r.Running == digest &&
		podCondition(p, corev1.PodConditionType(splicev1.PodConditionPluginReady)) == corev1.ConditionTrue
	return !done
}

// watchRollout starts a rolloutWatch on the Service svc and the rollout's pods until stop is
// closed.
func watchRollout(ctx context.Context, svc string, stop <-chan struct{}) *rolloutWatch {
	GinkgoHelper()
	w := &rolloutWatch{start: time.Now(), leastReady: 1 << 30, pods: map[string]*corev1.Pod{}}
	sw, err := kube.DiscoveryV1().EndpointSlices(testNamespace).Watch(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	Expect(err).NotTo(HaveOccurred())
	pw, err := kube.CoreV1().Pods(testNamespace).Watch(ctx, metav1.ListOptions{LabelSelector: "app=" + rolloutApp})
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
					w.mu.Lock()
					w.record("endpointslice watch ended")
					w.mu.Unlock()
					return
				}
				s, ok := ev.Object.(*discoveryv1.EndpointSlice)
				if !ok {
					continue
				}
				n := 0
				for _, e := range s.Endpoints {
					if e.Conditions.Ready != nil && *e.Conditions.Ready {
						n++
					}
				}
				ready[s.Name] = n
				total := 0
				for _, v := range ready {
					total += v
				}
				w.mu.Lock()
				w.leastReady = min(w.leastReady, total)
				w.mu.Unlock()
			case ev, ok := <-pw.ResultChan():
				if !ok {
					w.mu.Lock()
					w.record("pod watch ended")
					w.mu.Unlock()
					return
				}
				p, ok := ev.Object.(*corev1.Pod)
				if !ok {
					continue
				}
				w.mu.Lock()
				if prev := w.pods[p.Name]; prev != nil {
					was := fmt.Sprintf("Ready=%s plugin-ready=%s", podCondition(prev, corev1.PodReady), podCondition(prev, corev1.PodConditionType(splicev1.PodConditionPluginReady)))
					is := fmt.Sprintf("Ready=%s plugin-ready=%s", podCondition(p, corev1.PodReady), podCondition(p, corev1.PodConditionType(splicev1.PodConditionPluginReady)))
					if was != is {
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
		refs      = map[string]string{} // plugin -> artifact ref
		digests   = map[string]string{}
		greetPath string
	)

	BeforeAll(func(ctx SpecContext) {
		var err error
		cli, err = client.New(restConfig, client.Options{Scheme: scheme()})
		Expect(err).NotTo(HaveOccurred())

		// A ServiceAccount of its own, which the chart binds the agent's role to (suite_test.go).
		_, err = kube.CoreV1().ServiceAccounts(testNamespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: rolloutServiceAccount}}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())

		start := time.Now()
		ensureInfra(ctx)
		GinkgoWriter.Printf("in-cluster registry ready after %s\n", time.Since(start).Round(100*time.Millisecond))

		By("building plugins v2 and v3 on this machine, as the greeter image's host was built, and pushing them to the in-cluster registry")
		start = time.Now()
		gb := &greeterbuild.Builder{Root: repoRoot, Out: filepath.Join(repoRoot, ".local", "e2e", "plugins")}
		built, err := gb.Plugins(ctx, []string{"v2", "v3"}, fmt.Sprintf("e2e-rollout-%d", time.Now().UnixNano()))
		Expect(err).NotTo(HaveOccurred())
		for name, api := range map[string]string{"v2": "1.0.1", "v3": "1.1.0"} {
			refs[name], digests[name], err = artifact.Push(ctx, registryAddr+"/greeter-rollout", built[name].Path, artifact.Config{APIVersion: api})
			Expect(err).NotTo(HaveOccurred())
		}
		GinkgoWriter.Printf("plugins built and pushed in %s: v2 %s, v3 %s\n", time.Since(start).Round(100*time.Millisecond), refs["v2"], refs["v3"])

		By(fmt.Sprintf("deploying %d opted-in greeter pods running their built-in v1", rolloutReplicas))
		start = time.Now()
		d := greeterDeployment(testNamespace, rolloutReplicas)
		d.Name = rolloutApp
		d.Labels = map[string]string{"app": rolloutApp}
		d.Spec.Selector.MatchLabels = map[string]string{"app": rolloutApp}
		d.Spec.Template.Labels = map[string]string{"app": rolloutApp, splicev1.LabelInject: "true"}
		d.Spec.Template.Spec.ServiceAccountName = rolloutServiceAccount
		_, err = kube.AppsV1().Deployments(testNamespace).Create(ctx, d, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		svc, err = kube.CoreV1().Services(testNamespace).Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: rolloutApp},
			Spec: corev1.ServiceSpec{
				Selector: map[string]string{"app": rolloutApp},
				Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}},
			},
		}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		Eventually(func(g Gomega) {
			d, err := kube.AppsV1().Deployments(testNamespace).Get(ctx, rolloutApp, metav1.GetOptions{})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(d.Status.ReadyReplicas).To(Equal(int32(rolloutReplicas)), "ready replicas")
		}).WithContext(ctx).WithTimeout(3 * time.Minute).Should(Succeed())
		greetPath = fmt.Sprintf("http://%s/greet", svc.Spec.ClusterIP)
		// Every endpoint ready in the Service, and the Service answering v1.
		Eventually(func(g Gomega) {
			slices, err := kube.DiscoveryV1().EndpointSlices(testNamespace).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + rolloutApp})
			g.Expect(err).NotTo(HaveOccurred())
			n := 0
			for _, s := range slices.Items {
				for _, e := range s.Endpoints {
					if e.Conditions.Ready != nil && *e.Conditions.Ready {
						n++
					}
				}
			}
			g.Expect(n).To(Equal(rolloutReplicas), "ready endpoints")
			c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			resp, err := c.Post(greetPath, "text/plain", strings.NewReader("e2e"))
			g.Expect(err).NotTo(HaveOccurred())
			resp.Body.Close()
			g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
			g.Expect(resp.Header.Get("X-Plugin-Version")).To(Equal("v1"))
		}).WithContext(ctx).WithTimeout(time.Minute).Should(Succeed())
		GinkgoWriter.Printf("%s (%d pods) Ready and answering v1 %s after create\n", rolloutApp, rolloutReplicas, time.Since(start).Round(100*time.Millisecond))
	}, NodeTimeout(8*time.Minute))

	It("hot-swaps every pod v1 -> v2 (first rollout) -> v3 (RollingPatch, one pod at a time) while the Service answers every request", func(ctx SpecContext) {
		stop := make(chan struct{})
		stopped := false
		stopLoad := func() {
			if !stopped {
				stopped = true
				close(stop)
			}
		}
		defer stopLoad()
		watchStart := time.Now()
		w := watchRollout(ctx, rolloutApp, stop)
		counters := &loadCounters{}
		results := make(chan *loadResult, 1)
		go func() { results <- runLoad(greetPath, stop, counters) }()

		// A few seconds of v1 traffic before the rollout starts.
		time.Sleep(3 * time.Second)

		key := client.ObjectKey{Namespace: testNamespace, Name: rolloutApp}
		// waitCompleted waits for the CompilerVersion to have rolled digest out to every pod.
		waitCompleted := func(digest string, generation int64) *splicev1.CompilerVersion {
			GinkgoHelper()
			got := &splicev1.CompilerVersion{}
			Eventually(func(g Gomega) {
				g.Expect(cli.Get(ctx, key, got)).To(Succeed())
				g.Expect(got.Status.Phase).NotTo(BeElementOf(splicev1.PhaseBuildFailed, splicev1.PhaseDegraded, splicev1.PhaseRolledBack),
					"a terminal failure; progress %q, failures %+v, conditions %+v", got.Status.Progress, got.Status.RecentFailures, got.Status.Conditions)
				g.Expect(got.Status.ObservedGeneration).To(BeNumerically(">=", generation), "observed generation")
				g.Expect(got.Status.Artifact).NotTo(BeNil(), "status.artifact")
				g.Expect(got.Status.Artifact.Digest).To(Equal(digest), "status.artifact.digest")
				g.Expect(got.Status.Phase).To(Equal(splicev1.PhaseCompleted), "progress %q, conditions %+v", got.Status.Progress, got.Status.Conditions)
			}).WithContext(ctx).WithTimeout(5 * time.Minute).WithPolling(200 * time.Millisecond).Should(Succeed())
			return got
		}
		type phase struct {
			name               string
			took               time.Duration
			requests, failures int64
			maxInFlight        int
			cv                 *splicev1.CompilerVersion
		}
		var phases []phase

		By("rolling v2 out: the CompilerVersion's first rollout, every pod at once")
		cv := &splicev1.CompilerVersion{
			ObjectMeta: metav1.ObjectMeta{Name: rolloutApp, Namespace: testNamespace},
			Spec: splicev1.CompilerVersionSpec{
				GoVersion: "1.26.8",
				Plugin: splicev1.PluginSpec{
					Source:     splicev1.PluginSource{Artifact: refs["v2"]},
					APIVersion: "1.0.1",
				},
				Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": rolloutApp}},
				Strategy: splicev1.RolloutStrategy{
					Type:         splicev1.StrategyRollingPatch,
					RollingPatch: &splicev1.RollingPatchStrategy{MaxUnavailable: ptrIntOrString(intstr.FromInt32(1))},
				},
			},
		}
		w.trackSwaps(digests["v2"])
		req0, fail0 := counters.requests.Load(), counters.failures.Load()
		start := time.Now()
		Expect(cli.Create(ctx, cv)).To(Succeed())
		GinkgoWriter.Printf("CompilerVersion %s (v2) created %s after the load and the watches started\n", cv.Name, start.Sub(watchStart).Round(time.Millisecond))
		got := waitCompleted(digests["v2"], cv.Generation)
		_, _, inFlight, _ := w.summary()
		phases = append(phases, phase{"v1 -> v2 (first rollout)", time.Since(start), counters.requests.Load() - req0, counters.failures.Load() - fail0, inFlight, got})

		// A second of v2 traffic between the rollouts.
		time.Sleep(time.Second)

		By("rolling v3 out with RollingPatch, maxUnavailable 1")
		w.trackSwaps(digests["v3"])
		req0, fail0 = counters.requests.Load(), counters.failures.Load()
		start = time.Now()
		var generation int64
		Eventually(func(g Gomega) {
			cur := &splicev1.CompilerVersion{}
			g.Expect(cli.Get(ctx, key, cur)).To(Succeed())
			cur.Spec.Plugin.Source.Artifact = refs["v3"]
			cur.Spec.Plugin.APIVersion = "1.1.0"
			g.Expect(cli.Update(ctx, cur)).To(Succeed())
			generation = cur.Generation
		}).WithContext(ctx).WithTimeout(30 * time.Second).Should(Succeed())
		GinkgoWriter.Printf("CompilerVersion %s updated to v3 %s after the load and the watches started\n", cv.Name, start.Sub(watchStart).Round(time.Millisecond))
		got = waitCompleted(digests["v3"], generation)
		_, _, inFlight, _ = w.summary()
		phases = append(phases, phase{"v2 -> v3 (RollingPatch, maxUnavailable 1)", time.Since(start), counters.requests.Load() - req0, counters.failures.Load() - fail0, inFlight, got})

		// Two more seconds of traffic after completion: kube-proxy and the hosts must still answer.
		time.Sleep(2 * time.Second)
		stopLoad()
		res := <-results
		leastReady, flips, _, transitions := w.summary()

		for _, ph := range phases {
			GinkgoWriter.Printf("ROLLOUT %s: Completed in %s; requests during it %d, failed %d; most pods swapping at once %d; status targeted=%d updated=%d ready=%d failed=%d progress=%q\n",
				ph.name, ph.took.Round(10*time.Millisecond), ph.requests, ph.failures, ph.maxInFlight,
				ph.cv.Status.Targeted, ph.cv.Status.Updated, ph.cv.Status.Ready, ph.cv.Status.Failed, ph.cv.Status.Progress)
			for _, p := range ph.cv.Status.Pods {
				lat := ""
				if p.SwapLatency != nil {
					lat = p.SwapLatency.Duration.Round(100 * time.Microsecond).String()
				}
				GinkgoWriter.Printf("  pod %s state=%s swapLatency=%s loadedVersions=%d gcCyclesDuringSwap=%d\n", p.Pod, p.State, lat, p.LoadedVersions, p.GCCyclesDuringSwap)
			}
		}
		vs := make([]string, 0, len(res.versions))
		for v, n := range res.versions {
			vs = append(vs, fmt.Sprintf("%s=%d", v, n))
		}
		sort.Strings(vs)
		summary := fmt.Sprintf("LOAD: %d workers, a fresh connection per request, %s: REQUESTS=%d FAILED=%d; answers by version: %s; fewest ready endpoints: %d of %d; pod readiness-condition changes: %d",
			loadWorkers, res.duration.Round(100*time.Millisecond), res.requests, res.failures, strings.Join(vs, " "), leastReady, rolloutReplicas, flips)
		GinkgoWriter.Println(summary)
		fmt.Println(summary)
		for _, t := range transitions {
			GinkgoWriter.Println("  pod transition: " + t)
		}
		for _, e := range res.firstErrors {
			GinkgoWriter.Println("  failed request: " + e)
		}

		By("checking every pod's report: Ready on v3, plugin-ready True")
		pods, err := kube.CoreV1().Pods(testNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + rolloutApp})
		Expect(err).NotTo(HaveOccurred())
		Expect(pods.Items).To(HaveLen(rolloutReplicas))
		for i := range pods.Items {
			p := &pods.Items[i]
			Expect(p.Annotations[splicev1.AnnotationDesiredArtifact]).To(Equal(refs["v3"]), "pod %s desired artifact", p.Name)
			rep, err := splicev1.DecodeReport(p.Annotations[splicev1.AnnotationReport])
			Expect(err).NotTo(HaveOccurred(), "pod %s report %q", p.Name, p.Annotations[splicev1.AnnotationReport])
			Expect(rep.State).To(Equal(splicev1.SwapReady), "pod %s report %+v", p.Name, rep)
			Expect(rep.Digest).To(Equal(digests["v3"]), "pod %s report digest", p.Name)
			Expect(rep.Running).To(Equal(digests["v3"]), "pod %s report running", p.Name)
			Expect(podCondition(p, corev1.PodConditionType(splicev1.PodConditionPluginReady))).To(Equal(corev1.ConditionTrue), "pod %s plugin-ready", p.Name)
			Expect(podCondition(p, corev1.PodReady)).To(Equal(corev1.ConditionTrue), "pod %s Ready", p.Name)
			GinkgoWriter.Printf("  pod %s report: state=%s running=%s swapLatency=%.3fs loadedVersions=%d calls=%d errors=%d panics=%d\n",
				p.Name, rep.State, rep.Running[:19], rep.SwapLatencySeconds, rep.LoadedVersions, rep.Calls, rep.Errors, rep.Panics)
		}

		By("checking that the Service answers from v3 only")
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		for i := range 30 {
			resp, err := c.Post(greetPath, "text/plain", strings.NewReader(fmt.Sprintf("after-%d", i)))
			Expect(err).NotTo(HaveOccurred())
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			Expect(resp.StatusCode).To(Equal(http.StatusOK), "%s", body)
			Expect(resp.Header.Get("X-Plugin-Version")).To(Equal("v3"), "answer %q", body)
		}

		Expect(res.requests).To(BeNumerically(">", 0))
		Expect(res.failures).To(BeZero(), "failed requests during hot-swap rollouts: %s; first failures: %v; pod transitions: %v",
			summary, res.firstErrors, transitions)
		Expect(phases[1].maxInFlight).To(Equal(1), "RollingPatch with maxUnavailable 1 must swap one pod at a time; pod transitions: %v", transitions)
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
