//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/internal/loadgen"
)

// trafficSession is one spec's load and watches: bounded traffic to a Service on fresh
// connections, its ready endpoints and its pods' readiness, with the requests and failures
// counted per rollout phase.
type trafficSession struct {
	w       *rolloutWatch
	load    *loadgen.Generator
	stop    chan struct{}
	stopped bool
	phases  []rolloutPhase
}

// rolloutPhase is one rollout measured under load.
type rolloutPhase struct {
	name               string
	took               time.Duration
	requests, failures int64
	maxInFlight        int
	cv                 *splicev1.CompilerVersion
}

// startTraffic starts the watches on Service svc and the load on url, and lets a warmup's
// worth of requests pass (traffic on the version before the rollout); the spec's DeferCleanup
// stops them.
func startTraffic(ctx context.Context, svc, url string, warmup time.Duration) *trafficSession {
	GinkgoHelper()
	s := &trafficSession{stop: make(chan struct{})}
	s.w = watchRollout(ctx, svc, s.stop)
	s.load = loadgen.Start(loadgen.Options{URL: url, Workers: loadWorkers, Interval: loadInterval, MaxDuration: loadMaxDuration})
	DeferCleanup(s.halt)
	s.more(warmup)
	return s
}

// more lets the load send at least what it sends in d at full pace, and returns how many
// requests it sent meanwhile and how many of them failed. The stretch is counted in requests,
// not slept: on a slow machine it still holds all of them.
func (s *trafficSession) more(d time.Duration) (requests, failures int64) {
	GinkgoHelper()
	n := int64(loadWorkers) * int64(d/loadInterval)
	req0, fail0 := s.mark()
	Eventually(func() int64 { req, _ := s.mark(); return req }).WithTimeout(d+time.Minute).WithPolling(50*time.Millisecond).
		Should(BeNumerically(">=", req0+n), "%d more requests", n)
	req, fail := s.mark()
	return req - req0, fail - fail0
}

// phaseStart is where a rollout measured under load began.
type phaseStart struct {
	at                 time.Time
	requests, failures int64
}

// begin starts measuring a rollout of digest: its swaps are tracked from now.
func (s *trafficSession) begin(digest string) phaseStart {
	s.w.trackSwaps(digest)
	req, fail := s.mark()
	return phaseStart{at: time.Now(), requests: req, failures: fail}
}

// halt stops the watches and the load.
func (s *trafficSession) halt() *loadgen.Result {
	if !s.stopped {
		s.stopped = true
		close(s.stop)
	}
	return s.load.Stop()
}

// mark returns the load's counts now, to measure a phase from.
func (s *trafficSession) mark() (requests, failures int64) {
	return s.load.Counts()
}

// record adds a phase that began at ps and ends now, with cv as it ended (Completed, or rolled
// back to its stable artifact). It first lets the watch catch up with the pods' last events.
func (s *trafficSession) record(name string, ps phaseStart, cv *splicev1.CompilerVersion) rolloutPhase {
	GinkgoHelper()
	end := time.Now()
	final := cv.Status.Artifact
	if cv.Status.Phase == splicev1.PhaseRolledBack {
		final = cv.Status.StableArtifact
	}
	Expect(final).NotTo(BeNil(), "phase %s without the artifact it ends on", cv.Status.Phase)
	Eventually(func() bool { return s.w.servesAll(final.Digest, rolloutReplicas) }).WithTimeout(30*time.Second).WithPolling(50*time.Millisecond).
		Should(BeTrue(), "the pod watch never saw every pod serve %s", final.Digest)
	_, _, inFlight, _ := s.w.summary()
	req, fail := s.mark()
	ph := rolloutPhase{name: name, took: end.Sub(ps.at), requests: req - ps.requests, failures: fail - ps.failures, maxInFlight: inFlight, cv: cv}
	s.phases = append(s.phases, ph)
	return ph
}

// finish stops the load and prints every phase, the totals and the transitions the watches saw.
func (s *trafficSession) finish() (*loadgen.Result, string, []string) {
	res := s.halt()
	leastReady, flips, _, transitions := s.w.summary()
	for _, ph := range s.phases {
		line := fmt.Sprintf("ROLLOUT %s: %s in %s; requests during it %d, failed %d; most pods swapping at once %d",
			ph.name, ph.cv.Status.Phase, ph.took.Round(10*time.Millisecond), ph.requests, ph.failures, ph.maxInFlight)
		fmt.Println(line) // on stdout whatever the verbosity: these are the suite's numbers
		GinkgoWriter.Printf("  status targeted=%d updated=%d ready=%d failed=%d progress=%q\n",
			ph.cv.Status.Targeted, ph.cv.Status.Updated, ph.cv.Status.Ready, ph.cv.Status.Failed, ph.cv.Status.Progress)
		for _, p := range ph.cv.Status.Pods {
			lat := ""
			if p.SwapLatency != nil {
				lat = p.SwapLatency.Duration.Round(100 * time.Microsecond).String()
			}
			GinkgoWriter.Printf("  pod %s state=%s swapLatency=%s loadedVersions=%d gcCyclesDuringSwap=%d\n", p.Pod, p.State, lat, p.LoadedVersions, p.GCCyclesDuringSwap)
		}
	}
	summary := fmt.Sprintf("LOAD: %d workers, a fresh connection per request, %s: REQUESTS=%d FAILED=%d; answers by version: %s; fewest ready endpoints: %d of %d; pod readiness-condition changes: %d",
		loadWorkers, res.Duration.Round(100*time.Millisecond), res.Requests, res.Failures, res.VersionsString(), leastReady, rolloutReplicas, flips)
	fmt.Println(summary)
	for _, t := range transitions {
		GinkgoWriter.Println("  pod transition: " + t)
	}
	for _, e := range res.FirstErrors {
		GinkgoWriter.Println("  failed request: " + e)
	}
	return res, summary, transitions
}

// waitPhase waits for the CompilerVersion key to reach phase want for the artifact digest at
// the given generation or later, failing early on any of the phases in failOn.
func waitPhase(ctx context.Context, cli client.Client, key client.ObjectKey, digest string, generation int64, want splicev1.Phase, failOn ...splicev1.Phase) *splicev1.CompilerVersion {
	GinkgoHelper()
	got := &splicev1.CompilerVersion{}
	Eventually(func(g Gomega) {
		g.Expect(cli.Get(ctx, key, got)).To(Succeed())
		if len(failOn) > 0 {
			g.Expect(got.Status.Phase).NotTo(BeElementOf(failOn),
				"an unexpected phase; progress %q, failures %+v, conditions %+v", got.Status.Progress, got.Status.RecentFailures, got.Status.Conditions)
		}
		g.Expect(got.Status.ObservedGeneration).To(BeNumerically(">=", generation), "observed generation")
		g.Expect(got.Status.Artifact).NotTo(BeNil(), "status.artifact")
		g.Expect(got.Status.Artifact.Digest).To(Equal(digest), "status.artifact.digest")
		g.Expect(got.Status.Phase).To(Equal(want), "progress %q, conditions %+v", got.Status.Progress, got.Status.Conditions)
	}).WithContext(ctx).WithTimeout(5 * time.Minute).WithPolling(200 * time.Millisecond).Should(Succeed())
	return got
}

// waitCompleted waits for the CompilerVersion to have rolled digest out to every pod.
func waitCompleted(ctx context.Context, cli client.Client, key client.ObjectKey, digest string, generation int64) *splicev1.CompilerVersion {
	GinkgoHelper()
	return waitPhase(ctx, cli, key, digest, generation, splicev1.PhaseCompleted,
		splicev1.PhaseBuildFailed, splicev1.PhaseDegraded, splicev1.PhaseRolledBack)
}

// updateCV changes the CompilerVersion key with mutate, retrying conflicts, and returns its new
// generation.
func updateCV(ctx context.Context, cli client.Client, key client.ObjectKey, mutate func(*splicev1.CompilerVersion)) int64 {
	GinkgoHelper()
	var generation int64
	Eventually(func(g Gomega) {
		cur := &splicev1.CompilerVersion{}
		g.Expect(cli.Get(ctx, key, cur)).To(Succeed())
		mutate(cur)
		g.Expect(cli.Update(ctx, cur)).To(Succeed())
		generation = cur.Generation
	}).WithContext(ctx).WithTimeout(30 * time.Second).Should(Succeed())
	return generation
}

// checkPodsServe checks that every pod with the label selector is told to run ref, reports Ready
// on digest, serves it, and is Ready.
func checkPodsServe(ctx context.Context, selector, ref, digest string, n int) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		pods, err := kube.CoreV1().Pods(testNamespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
		g.Expect(err).NotTo(HaveOccurred())
		live := 0
		for i := range pods.Items {
			p := &pods.Items[i]
			if p.DeletionTimestamp != nil {
				continue
			}
			live++
			g.Expect(p.Annotations[splicev1.AnnotationDesiredArtifact]).To(Equal(ref), "pod %s desired artifact", p.Name)
			rep, err := splicev1.DecodeReport(p.Annotations[splicev1.AnnotationReport])
			g.Expect(err).NotTo(HaveOccurred(), "pod %s report %q", p.Name, p.Annotations[splicev1.AnnotationReport])
			g.Expect(rep.State).To(Equal(splicev1.SwapReady), "pod %s report %+v", p.Name, rep)
			g.Expect(rep.Digest).To(Equal(digest), "pod %s report digest", p.Name)
			g.Expect(rep.Running).To(Equal(digest), "pod %s report running", p.Name)
			g.Expect(podCondition(p, corev1.PodConditionType(splicev1.PodConditionPluginReady))).To(Equal(corev1.ConditionTrue), "pod %s plugin-ready", p.Name)
			g.Expect(podCondition(p, corev1.PodReady)).To(Equal(corev1.ConditionTrue), "pod %s Ready", p.Name)
		}
		g.Expect(live).To(Equal(n), "pods")
	}).WithContext(ctx).WithTimeout(time.Minute).Should(Succeed())
}

// answers sends n POSTs to url on fresh connections and counts the answers by plugin version;
// every one must succeed.
func answers(url string, n int) map[string]int {
	GinkgoHelper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	got := map[string]int{}
	for i := range n {
		resp, err := c.Post(url, "text/plain", strings.NewReader(fmt.Sprintf("probe-%d", i)))
		Expect(err).NotTo(HaveOccurred())
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(http.StatusOK), "%s", body)
		got[resp.Header.Get("X-Plugin-Version")]++
	}
	return got
}

// waitServing waits until the Service app has want ready endpoints and answers a POST to url
// from this machine, and returns the plugin version that answered. A Ready pod is not yet
// behind its ClusterIP: kube-proxy programs the rules a moment later, and a GET sent in that
// moment failed a CI run.
func waitServing(ctx context.Context, app string, want int, url string) string {
	GinkgoHelper()
	start := time.Now()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var version string
	Eventually(func(g Gomega) {
		slices, err := kube.DiscoveryV1().EndpointSlices(testNamespace).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + app})
		g.Expect(err).NotTo(HaveOccurred())
		n := 0
		for i := range slices.Items {
			n += readyEndpoints(&slices.Items[i])
		}
		g.Expect(n).To(Equal(want), "ready endpoints")
		resp, err := c.Post(url, "text/plain", strings.NewReader("e2e"))
		g.Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
		version = resp.Header.Get("X-Plugin-Version")
	}).WithContext(ctx).WithTimeout(time.Minute).WithPolling(100 * time.Millisecond).Should(Succeed())
	GinkgoWriter.Printf("Service %s: %d ready endpoints and answering %s, %s after its Deployment was ready\n", app, want, version, time.Since(start).Round(10*time.Millisecond))
	return version
}

// kubectlSplicePath is the real kubectl-splice plugin, built by buildKubectlSplice.
var kubectlSplicePath string

// buildKubectlSplice builds the plugin before any spec runs, so that no rollout's time
// includes a compile.
func buildKubectlSplice(ctx context.Context) {
	GinkgoHelper()
	path := filepath.Join(repoRoot, ".local", "e2e", "kubectl-splice")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", path, "./cmd/kubectl-splice")
	cmd.Dir = repoRoot
	out, err := cmd.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "build kubectl-splice:\n%s", out)
	kubectlSplicePath = path
}

// kubectlSplice runs the real kubectl-splice plugin against the cluster, in the test
// namespace, and returns what it printed.
func kubectlSplice(ctx context.Context, args ...string) string {
	GinkgoHelper()
	Expect(kubectlSplicePath).NotTo(BeEmpty(), "kubectl-splice is built in BeforeSuite")
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, kubectlSplicePath, append(args, "--kubeconfig", kubeconfig, "--namespace", testNamespace)...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	GinkgoWriter.Printf("$ kubectl splice %s\n%s", strings.Join(args, " "), out.String())
	Expect(err).NotTo(HaveOccurred(), "kubectl splice %s:\n%s", strings.Join(args, " "), out.String())
	return out.String()
}
