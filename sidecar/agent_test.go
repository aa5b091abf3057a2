package sidecar_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/artifact"
	"github.com/splice-dev/splice/host/control"
	"github.com/splice-dev/splice/host/preflight"
	"github.com/splice-dev/splice/internal/testio"
	"github.com/splice-dev/splice/sidecar"
)

var podSeq atomic.Int64

// newPod creates a Pod object for one spec; no kubelet ever runs it.
func newPod(ctx context.Context) string {
	GinkgoHelper()
	name := fmt.Sprintf("greeter-%d", podSeq.Add(1))
	_, err := adminKube.CoreV1().Pods(namespace).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{splicev1.LabelInject: "true"}},
		Spec: corev1.PodSpec{
			Containers:     []corev1.Container{{Name: "app", Image: "registry.example.com/greeter:1"}},
			ReadinessGates: []corev1.PodReadinessGate{{ConditionType: splicev1.PodConditionPluginReady}},
		},
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func(ctx context.Context) {
		adminKube.CoreV1().Pods(namespace).Delete(ctx, name, metav1.DeleteOptions{})
	})
	return name
}

// annotate sets (or, with an empty value, removes) annotations as the rollout controller does.
func annotate(ctx context.Context, pod string, kv map[string]string) {
	GinkgoHelper()
	ann := map[string]any{}
	for k, v := range kv {
		if v == "" {
			ann[k] = nil
		} else {
			ann[k] = v
		}
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": ann}})
	_, err := adminKube.CoreV1().Pods(namespace).Patch(ctx, pod, types.MergePatchType, patch, metav1.PatchOptions{})
	Expect(err).NotTo(HaveOccurred())
}

func getPod(ctx context.Context, g Gomega, name string) *corev1.Pod {
	p, err := adminKube.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	return p
}

func reportOf(g Gomega, p *corev1.Pod) *splicev1.PodReport {
	raw, ok := p.Annotations[splicev1.AnnotationReport]
	g.Expect(ok).To(BeTrue(), "no report on the pod yet")
	r, err := splicev1.DecodeReport(raw)
	g.Expect(err).NotTo(HaveOccurred(), "the report must pass the controller's validation")
	return r
}

func conditionOf(g Gomega, p *corev1.Pod) corev1.PodCondition {
	for _, c := range p.Status.Conditions {
		if c.Type == splicev1.PodConditionPluginReady {
			return c
		}
	}
	g.Expect(false).To(BeTrue(), "no %s condition on the pod yet", splicev1.PodConditionPluginReady)
	return corev1.PodCondition{}
}

// waitReport waits for the pod's report to reach state and for the condition to follow (the
// agent writes the report first, then the condition: True while the report says the host
// serves a version, whatever the state), and returns the report with the pod.
func waitReport(ctx context.Context, pod string, digest string, state splicev1.SwapState) (*splicev1.PodReport, *corev1.Pod) {
	GinkgoHelper()
	var (
		r *splicev1.PodReport
		p *corev1.Pod
	)
	Eventually(func(g Gomega) {
		p = getPod(ctx, g, pod)
		r = reportOf(g, p)
		g.Expect(r.Digest).To(Equal(digest))
		g.Expect(r.State).To(Equal(state), "report: %+v", r)
		want := corev1.ConditionFalse
		if r.Running != "" {
			want = corev1.ConditionTrue
		}
		c := conditionOf(g, p)
		g.Expect(c.Status).To(Equal(want))
		g.Expect(c.Reason).To(Equal(string(state)))
	}).WithContext(ctx).Should(Succeed())
	return r, p
}

// watchStates records, from a watch on the pod, every distinct report state written until the
// first Ready or terminal one. The watch sees every write, so no state can slip by unseen.
func watchStates(ctx context.Context, pod string) func() []splicev1.SwapState {
	GinkgoHelper()
	p, err := adminKube.CoreV1().Pods(namespace).Get(ctx, pod, metav1.GetOptions{})
	Expect(err).NotTo(HaveOccurred())
	w, err := adminKube.CoreV1().Pods(namespace).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + pod, ResourceVersion: p.ResourceVersion})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(w.Stop)
	var (
		mu     sync.Mutex
		states []splicev1.SwapState
		last   string
	)
	go func() {
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			raw := p.Annotations[splicev1.AnnotationReport]
			r, err := splicev1.DecodeReport(raw)
			if raw == last || err != nil {
				continue
			}
			last = raw
			mu.Lock()
			if n := len(states); n == 0 || states[n-1] != r.State {
				states = append(states, r.State)
			}
			done := r.State.Terminal()
			mu.Unlock()
			if done {
				return
			}
		}
	}()
	return func() []splicev1.SwapState {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(states)
	}
}

// runningAgent is an Agent running in the test process against one host and one pod.
type runningAgent struct {
	agent   *sidecar.Agent
	metrics *sidecar.Metrics
	reg     *prometheus.Registry
	probes  *httptest.Server
	cancel  context.CancelFunc
	done    chan struct{}
}

// startAgent runs an agent for pod against h; opts change its options (a 100 ms poll, short
// backoffs) before it starts.
func startAgent(h *hostProc, pod string, opts ...func(*sidecar.AgentOptions)) *runningAgent {
	GinkgoHelper()
	reg := prometheus.NewRegistry()
	m := sidecar.NewMetrics(reg)
	// No AllowMinor: as in cmd/agent, consent comes from each pod's annotations.
	sw, err := sidecar.NewSwapper(sidecar.SwapperOptions{
		SharedDir: h.shared, Host: h.client, Metrics: m, Pull: []artifact.Option{artifact.WithInsecureRegistries(regHost)},
		Logger: GinkgoLogr.WithName("swapper"), HostTimeout: 30 * time.Second, LoadTimeout: 3 * time.Minute,
	})
	Expect(err).NotTo(HaveOccurred())
	o := sidecar.AgentOptions{
		PodName: pod, PodNamespace: namespace, Kube: agentKube, Swapper: sw, Metrics: m, Logger: GinkgoLogr.WithName("agent"),
		PollInterval: 100 * time.Millisecond, MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second, ProbeTimeout: 30 * time.Second,
	}
	for _, f := range opts {
		f(&o)
	}
	a, err := sidecar.NewAgent(o)
	Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(context.Background())
	ra := &runningAgent{agent: a, metrics: m, reg: reg, cancel: cancel, done: make(chan struct{}), probes: httptest.NewServer(a.Handler(reg))}
	go func() {
		defer GinkgoRecover()
		defer close(ra.done)
		Expect(a.Run(ctx)).To(Succeed())
	}()
	DeferCleanup(ra.stop)
	return ra
}

func (ra *runningAgent) stop() {
	ra.cancel()
	<-ra.done
	ra.probes.Close()
}

func (ra *runningAgent) probe(path string) (int, string) {
	GinkgoHelper()
	resp, err := http.Get(ra.probes.URL + path)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitSyncs waits until the agent has compared pod and host n more times: proof that it
// looked, for the specs that check it did nothing.
func (ra *runningAgent) waitSyncs(ctx context.Context, n int64) {
	GinkgoHelper()
	target := ra.agent.Syncs() + n
	Eventually(ra.agent.Syncs).WithContext(ctx).Should(BeNumerically(">=", target))
}

func loads(ra *runningAgent, result string) float64 {
	return testutil.ToFloat64(ra.metrics.Loads.WithLabelValues(result))
}

var _ = Describe("The agent", func() {
	It("pulls, preflights and swaps the desired artifact, reports it, and does not swap again after a restart", func(ctx SpecContext) {
		h := startHost(ctx)
		pod := newPod(ctx)
		ra := startAgent(h, pod)

		By("reporting the pod ready while nothing is desired and the host serves its initial version")
		Eventually(func(g Gomega) {
			c := conditionOf(g, getPod(ctx, g, pod))
			g.Expect(c.Status).To(Equal(corev1.ConditionTrue))
			g.Expect(c.Reason).To(Equal(sidecar.ConditionNoDesiredArtifact))
		}).WithContext(ctx).Should(Succeed())

		By("swapping to v2 once the rollout controller names it")
		v2 := arts["v2"]
		states := watchStates(ctx, pod)
		annotate(ctx, pod, map[string]string{splicev1.AnnotationDesiredArtifact: v2.ref, splicev1.AnnotationGoVersion: strings.TrimPrefix(runtime.Version(), "go")})
		r, p := waitReport(ctx, pod, v2.digest, splicev1.SwapReady)
		Eventually(states).WithContext(ctx).Should(Equal([]splicev1.SwapState{splicev1.SwapPulling, splicev1.SwapSwapping, splicev1.SwapReady}),
			"every report the agent wrote about v2, in order")
		Expect(r.Artifact).To(Equal(v2.ref))
		Expect(r.Running).To(Equal(v2.digest))
		Expect(r.Reason).To(BeEmpty())
		Expect(r.Error).To(BeEmpty())
		Expect(r.HostGoVersion).To(Equal(runtime.Version()))
		Expect(r.SwapLatencySeconds).To(BeNumerically(">", 0))
		Expect(r.Before).NotTo(BeNil())
		Expect(r.After).NotTo(BeNil())
		Expect(r.After.ScanGlobalsBytes).To(BeNumerically(">", r.Before.ScanGlobalsBytes), "a plugin loaded during the swap adds globals the GC scans")
		Expect(r.LoadedVersions).To(Equal(2))
		c := conditionOf(Default, p)
		Expect(c.Status).To(Equal(corev1.ConditionTrue))
		Expect(c.Reason).To(Equal(string(splicev1.SwapReady)))

		By("serving v2 over HTTP, from exactly the bytes that were pushed")
		a := h.greet("ada", "")
		Expect(a.Err).NotTo(HaveOccurred())
		Expect(a.Status).To(Equal(http.StatusOK))
		Expect(a.Version).To(Equal("v2"))
		Expect(a.Digest).To(Equal(v2.digest))
		By("reporting v2's call counters within seconds of the swap, though counters-only writes are a minute apart")
		Eventually(func(g Gomega) {
			g.Expect(reportOf(g, getPod(ctx, g, pod)).Calls).To(BeNumerically(">=", 1))
		}).WithContext(ctx).WithTimeout(2 * sidecar.FirstCountersAfter).Should(Succeed())

		By("writing the counters as often as the controller's counters-interval annotation asks, not a minute apart")
		callsBefore := reportOf(Default, getPod(ctx, Default, pod)).Calls
		for range 3 {
			Expect(h.greet("grace", "").Err).NotTo(HaveOccurred())
		}
		annotate(ctx, pod, map[string]string{splicev1.AnnotationCountersInterval: "1s"})
		Eventually(func(g Gomega) {
			g.Expect(reportOf(g, getPod(ctx, g, pod)).Calls).To(BeNumerically(">=", callsBefore+3))
		}).WithContext(ctx).WithTimeout(5 * time.Second).Should(Succeed())

		st := h.status(ctx)
		vs := st.Version(v2.digest)
		Expect(vs).NotTo(BeNil())
		fileDigest, err := control.FileDigest(v2.path)
		Expect(err).NotTo(HaveOccurred())
		Expect(vs.FileDigest).To(Equal(fileDigest))
		so := filepath.Join(h.shared, strings.TrimPrefix(v2.digest, "sha256:")+".so")
		Expect(vs.Path).To(Equal(so))
		fi, err := os.Stat(so)
		Expect(err).NotTo(HaveOccurred())
		Expect(fi.Mode().Perm()).To(Equal(os.FileMode(0o644)))

		By("answering the probes and exporting the metrics")
		code, body := ra.probe(sidecar.PathReadyz)
		Expect(code).To(Equal(http.StatusOK), body)
		code, body = ra.probe(sidecar.PathLivez)
		Expect(code).To(Equal(http.StatusOK), body)
		code, body = ra.probe(sidecar.PathMetrics)
		Expect(code).To(Equal(http.StatusOK))
		Expect(body).To(ContainSubstring(`splice_host_plugin_calls_total{digest="` + v2.digest + `"}`))
		Expect(body).To(ContainSubstring("splice_host_rss_bytes "))
		Expect(body).To(ContainSubstring("splice_host_loaded_versions 2"))
		Expect(loads(ra, sidecar.LoadSuccess)).To(Equal(1.0))
		Expect(testutil.CollectAndCount(ra.metrics.SwapLatency)).To(Equal(1))
		reportTimings(ra, r, st.LastSwap)

		By("not swapping again when the agent restarts")
		before := h.status(ctx)
		ra.stop()
		ra2 := startAgent(h, pod)
		ra2.waitSyncs(ctx, 5)
		after := h.status(ctx)
		Expect(after.LastSwap.StartedAt).To(Equal(before.LastSwap.StartedAt))
		Expect(after.LoadedVersions).To(Equal(before.LoadedVersions))
		Expect(after.Current).To(Equal(v2.digest))
		Expect(loads(ra2, sidecar.LoadSuccess)).To(BeZero())
		r2, _ := waitReport(ctx, pod, v2.digest, splicev1.SwapReady)
		Expect(r2.SwapLatencySeconds).To(Equal(r.SwapLatencySeconds), "the restarted agent keeps the swap's figures")

		By("staying ready while the host's toolchain is not the pinned one, and saying so")
		// The host serves its version correctly; Strict's eviction deals with the mismatch.
		annotate(ctx, pod, map[string]string{splicev1.AnnotationGoVersion: "1.0.1"})
		Eventually(func() string { _, b := ra2.probe(sidecar.PathReadyz); return b }).WithContext(ctx).Should(ContainSubstring("go1.0.1"))
		code, body = ra2.probe(sidecar.PathReadyz)
		Expect(code).To(Equal(http.StatusOK), body)

		By("moving on to the next desired artifact, a minor API step the CompilerVersion consents to")
		v3 := arts["v3"]
		annotate(ctx, pod, map[string]string{splicev1.AnnotationDesiredArtifact: v3.ref, splicev1.AnnotationGoVersion: "", splicev1.AnnotationAllowMinorAPIChange: "true"})
		waitReport(ctx, pod, v3.digest, splicev1.SwapReady)
		Expect(h.greet("ada", "").Version).To(Equal("v3"))
	})

	It("writes the call counters when they fall due, not at the next poll", func(ctx SpecContext) {
		h := startHost(ctx)
		pod := newPod(ctx)
		// The agent's clock is fake and moves only when the spec moves it, so the spec sees when
		// the agent writes without waiting for it. Polling, an hour apart, never looks again
		// within the spec: only the counters' own timer can write them.
		fc := clocktesting.NewFakeClock(time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC))
		startAgent(h, pod, func(o *sidecar.AgentOptions) { o.PollInterval, o.Clock = time.Hour, fc })
		v2 := arts["v2"]
		annotate(ctx, pod, map[string]string{splicev1.AnnotationDesiredArtifact: v2.ref})
		_, p := waitReport(ctx, pod, v2.digest, splicev1.SwapReady)
		swapped := reportOf(Default, p).ObservedAt.Time
		for range 5 {
			Expect(h.greet("ada", "").Err).NotTo(HaveOccurred())
		}

		By("writing the first counters FirstCountersAfter the swap")
		// The agent's timers: the poll's ticker and the counters' (no retry is due).
		Eventually(fc.Waiters).WithContext(ctx).WithTimeout(5*time.Second).Should(Equal(2), "the agent arms the counters' timer after the swap's report")
		fc.Step(sidecar.FirstCountersAfter - time.Second)
		Expect(fc.Waiters()).To(Equal(2), "counters-only writes wait for their interval: nothing fell due a second before it")
		Expect(reportOf(Default, getPod(ctx, Default, pod)).Calls).To(BeZero(), "no counters written before they fall due")
		fc.Step(time.Second)
		var first *splicev1.PodReport
		Eventually(func(g Gomega) {
			first = reportOf(g, getPod(ctx, g, pod))
			g.Expect(first.Calls).To(BeNumerically(">=", 5))
		}).WithContext(ctx).WithTimeout(5 * time.Second).Should(Succeed())
		GinkgoWriter.Printf("first counters written %s after the swap's report\n", first.ObservedAt.Sub(swapped))
		Expect(first.ObservedAt.Sub(swapped)).To(BeNumerically(">=", sidecar.FirstCountersAfter-time.Second), "counters-only writes wait for their interval")
		Expect(first.ObservedAt.Sub(swapped)).To(Equal(sidecar.FirstCountersAfter), "written when they fell due, in the agent's time")

		By("then as often as the controller's counters-interval annotation asks")
		// The agent's own interval would write them next a minute after the first; the spec moves
		// its clock only a second past each write, so only the annotation's interval can.
		last := countersBy(ctx, h, pod, fc, first.ObservedAt.Add(time.Second), func() {
			annotate(ctx, pod, map[string]string{splicev1.AnnotationCountersInterval: "1s"})
		})
		for round := range 2 {
			next := countersBy(ctx, h, pod, fc, last.ObservedAt.Add(time.Second), nil)
			Expect(next.ObservedAt.Sub(last.ObservedAt.Time)).To(Equal(time.Second), "round %d", round)
			last = next
		}
	})

	It("refuses an incompatible artifact before anything is loaded, and the host keeps serving with the pod ready", func(ctx SpecContext) {
		h := startHost(ctx)
		pod := newPod(ctx)
		ra := startAgent(h, pod)
		bad := arts["v2-untrimmed"]
		annotate(ctx, pod, map[string]string{splicev1.AnnotationDesiredArtifact: bad.ref})

		r, p := waitReport(ctx, pod, bad.digest, splicev1.SwapIncompatible)
		Expect(r.Reason).To(Equal(preflight.PackageHashMismatch))
		Expect(r.Error).To(And(ContainSubstring("the plugin was built without -trimpath and the host"), ContainSubstring("rebuild the plugin with -trimpath")))
		Expect(r.Running).To(Equal(arts["v1"].digest))
		// The refusal is in the report and the condition's reason and message; the pod stays
		// in its Services, since the host serves v1 correctly.
		c := conditionOf(Default, p)
		Expect(c.Status).To(Equal(corev1.ConditionTrue))
		Expect(c.Reason).To(Equal(string(splicev1.SwapIncompatible)))
		Expect(c.Message).To(ContainSubstring("the host serves " + arts["v1"].digest))
		Expect(c.Message).To(ContainSubstring(bad.digest + " was refused"))
		Expect(c.Message).To(ContainSubstring(preflight.PackageHashMismatch))

		st := h.status(ctx)
		Expect(st.Version(bad.digest)).To(BeNil(), "nothing may reach the host")
		Expect(st.LoadedVersions).To(Equal(1))
		Expect(h.greet("ada", "").Version).To(Equal("v1"))
		Expect(testutil.ToFloat64(ra.metrics.PreflightRefused.WithLabelValues(preflight.PackageHashMismatch))).To(Equal(1.0))
		Expect(loads(ra, sidecar.LoadIncompatible)).To(Equal(1.0))
		code, body := ra.probe(sidecar.PathReadyz)
		Expect(code).To(Equal(http.StatusOK), body)
		Expect(body).To(ContainSubstring(preflight.PackageHashMismatch))

		By("not trying again while the same artifact is desired")
		ra.waitSyncs(ctx, 5)
		Expect(loads(ra, sidecar.LoadIncompatible)).To(Equal(1.0))
	})

	It("reports a plugin whose init panics as Failed, never retries it, and the host keeps serving", func(ctx SpecContext) {
		h := startHost(ctx)
		pod := newPod(ctx)
		ra := startAgent(h, pod)
		ip := arts["initpanic"]
		annotate(ctx, pod, map[string]string{splicev1.AnnotationDesiredArtifact: ip.ref})

		r, p := waitReport(ctx, pod, ip.digest, splicev1.SwapFailed)
		Expect(r.Reason).To(Equal(sidecar.ReasonInitPanic))
		Expect(r.Error).To(ContainSubstring("deliberate panic in plugin init"))
		Expect(conditionOf(Default, p).Status).To(Equal(corev1.ConditionTrue), "the host serves v1")
		Expect(h.Alive()).To(BeTrue())
		Expect(h.greet("ada", "").Version).To(Equal("v1"))
		Expect(h.status(ctx).Version(ip.digest).State).To(Equal(control.StateFailed))

		By("not retrying, in this agent or in a restarted one")
		ra.waitSyncs(ctx, 5)
		Expect(loads(ra, sidecar.LoadFailed)).To(Equal(1.0))
		ra.stop()
		ra2 := startAgent(h, pod)
		ra2.waitSyncs(ctx, 5)
		Expect(loads(ra2, sidecar.LoadFailed)).To(BeZero())
		r2, _ := waitReport(ctx, pod, ip.digest, splicev1.SwapFailed)
		Expect(r2.Reason).To(Equal(sidecar.ReasonInitPanic))
	})

	It("reports a plugin without the expected symbol as Failed and counts the lookup error", func(ctx SpecContext) {
		h := startHost(ctx)
		pod := newPod(ctx)
		ra := startAgent(h, pod)
		bs := arts["badsymbol"]
		annotate(ctx, pod, map[string]string{splicev1.AnnotationDesiredArtifact: bs.ref})

		r, _ := waitReport(ctx, pod, bs.digest, splicev1.SwapFailed)
		Expect(r.Reason).To(Equal(sidecar.ReasonSymbolLookupFailed))
		Expect(r.Error).To(ContainSubstring("want func() greeter.Greeter"))
		Expect(testutil.ToFloat64(ra.metrics.SymbolErrors)).To(Equal(1.0))
		Expect(h.greet("ada", "").Version).To(Equal("v1"))
	})

	It("reports RolledBack when the host rolls a panicking version back on its own, and does not swap it in again", func(ctx SpecContext) {
		h := startHost(ctx, "-panic-threshold", "3")
		pod := newPod(ctx)
		ra := startAgent(h, pod)
		cp := arts["callpanic"]
		annotate(ctx, pod, map[string]string{splicev1.AnnotationDesiredArtifact: cp.ref})
		waitReport(ctx, pod, cp.digest, splicev1.SwapReady)

		By("calling the plugin until it has panicked past the threshold")
		for i := 0; i < 3; i++ {
			Expect(h.greet("ada", "").Status).To(Equal(http.StatusInternalServerError))
		}
		r, p := waitReport(ctx, pod, cp.digest, splicev1.SwapRolledBack)
		Expect(r.Reason).To(Equal(sidecar.ReasonHostRolledBack))
		Expect(r.Error).To(ContainSubstring("panicked 3 times"))
		Expect(r.Running).To(Equal(arts["v1"].digest))
		Expect(conditionOf(Default, p).Reason).To(Equal(string(splicev1.SwapRolledBack)))
		Expect(conditionOf(Default, p).Status).To(Equal(corev1.ConditionTrue), "the host serves v1 again")
		Expect(h.greet("ada", "").Version).To(Equal("v1"))
		Expect(testutil.ToFloat64(ra.metrics.Rollbacks)).To(Equal(1.0))

		ra.waitSyncs(ctx, 5)
		st := h.status(ctx)
		Expect(st.Current).To(Equal(arts["v1"].digest))
		Expect(st.LastSwap.Op).To(Equal(control.OpAutoRollback))
	})

	It("reports a version that crashed the host as Crashed, stays ready on the restarted host, and never has it load that version again", func(ctx SpecContext) {
		h := startHost(ctx)
		pod := newPod(ctx)
		ra := startAgent(h, pod)
		gp, v1 := arts["gopanic"], arts["v1"]
		first := h.status(ctx).Instance
		Expect(first).To(MatchRegexp(`^[0-9a-f]{32}$`))
		annotate(ctx, pod, map[string]string{splicev1.AnnotationDesiredArtifact: gp.ref})

		By("swapping to gopanic, whose goroutine then kills the host")
		Eventually(func() bool {
			st, err := h.client.Status(ctx)
			return !h.Alive() || (err == nil && st.Current == gp.digest)
		}).WithContext(ctx).Should(BeTrue())
		h.greet("ada", "") // its first call sets its goroutine off, if its timer has not yet
		Eventually(h.Exited()).WithContext(ctx).Should(BeClosed())
		Expect(h.ExitCode()).To(Equal(2), "a panic no one recovers exits with status 2")
		Expect(h.out.String()).To(ContainSubstring("gopanic: deliberate panic in a goroutine the plugin started"))

		By("restarting the host as the kubelet would: same shared directory, its cold-start plugin")
		appRestarted(ctx, pod, "panic: gopanic: deliberate panic in a goroutine the plugin started")
		h.restart(ctx)
		Expect(h.status(ctx).Instance).NotTo(Equal(first), "a container restart is a new host instance")

		r, p := waitReport(ctx, pod, gp.digest, splicev1.SwapCrashed)
		GinkgoWriter.Printf("Crashed report's error: %s\n", r.Error)
		Expect(r.Reason).To(Equal(sidecar.ReasonHostCrashed))
		Expect(r.Error).To(And(ContainSubstring("the host process died"), ContainSubstring(first),
			ContainSubstring(`container "app" restarted 1 time`), ContainSubstring("exit code 2"), ContainSubstring("panic: gopanic")))
		Expect(r.Running).To(Equal(v1.digest))
		c := conditionOf(Default, p)
		Expect(c.Status).To(Equal(corev1.ConditionTrue), "the restarted host serves its cold-start version correctly")
		Expect(c.Message).To(ContainSubstring("the host serves " + v1.digest))
		code, body := ra.probe(sidecar.PathReadyz)
		Expect(code).To(Equal(http.StatusOK), body)
		Expect(h.greet("ada", "").Version).To(Equal("v1"))

		By("never asking the restarted host to load gopanic, in this agent or a restarted one")
		neverLoaded := func(g Gomega) {
			st, err := h.client.Status(ctx)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(st.Version(gp.digest)).To(BeNil())
			g.Expect(st.LoadedVersions).To(Equal(1))
			g.Expect(st.Current).To(Equal(v1.digest))
		}
		syncs := ra.agent.Syncs()
		// The agent resyncs every 100 ms: 20 chances to load it again.
		Consistently(neverLoaded).WithContext(ctx).WithTimeout(2 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
		Expect(ra.agent.Syncs()-syncs).To(BeNumerically(">=", 5), "the agent looked meanwhile")
		ra.stop()
		ra2 := startAgent(h, pod)
		Consistently(neverLoaded).WithContext(ctx).WithTimeout(2 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
		ra2.waitSyncs(ctx, 5)
		neverLoaded(Default)
		r2, _ := waitReport(ctx, pod, gp.digest, splicev1.SwapCrashed)
		Expect(r2.Reason).To(Equal(sidecar.ReasonHostCrashed))
		Expect(h.Alive()).To(BeTrue())
	})

	It("refuses a minor API change without the CompilerVersion's consent and a major one always, before anything is loaded; the pod stays ready", func(ctx SpecContext) {
		h := startHost(ctx)
		pod := newPod(ctx)
		ra := startAgent(h, pod)
		v1, v3, mj := arts["v1"], arts["v3"], arts["major"]
		annotate(ctx, pod, map[string]string{splicev1.AnnotationDesiredArtifact: v3.ref, splicev1.AnnotationCompilerVersion: "greeter"})

		By("refusing v3, a minor step from v1, without consent")
		r, p := waitReport(ctx, pod, v3.digest, splicev1.SwapIncompatible)
		Expect(r.Reason).To(Equal(splicev1.ReasonMinorAPIChangeNotAllowed))
		Expect(r.Error).To(And(ContainSubstring("1.1.0"), ContainSubstring("1.0.0"),
			ContainSubstring("set spec.plugin.allowMinorAPIChange: true on CompilerVersion greeter to consent")))
		Expect(r.Running).To(Equal(v1.digest))
		Expect(conditionOf(Default, p).Status).To(Equal(corev1.ConditionTrue))
		Expect(h.status(ctx).Version(v3.digest)).To(BeNil(), "nothing reaches the host")
		Expect(h.greet("ada", "").Version).To(Equal("v1"))

		By("swapping once the CompilerVersion consents")
		annotate(ctx, pod, map[string]string{splicev1.AnnotationAllowMinorAPIChange: "true"})
		waitReport(ctx, pod, v3.digest, splicev1.SwapReady)
		Expect(h.greet("ada", "").Version).To(Equal("v3"))

		By("refusing a major change, consent or not, with what must be true of the pod's image")
		annotate(ctx, pod, map[string]string{splicev1.AnnotationDesiredArtifact: mj.ref})
		r, p = waitReport(ctx, pod, mj.digest, splicev1.SwapIncompatible)
		Expect(r.Reason).To(Equal(splicev1.ReasonMajorAPIChange))
		Expect(r.Error).To(ContainSubstring("a major plugin API change cannot be swapped in place: the pod must be recreated from an image whose host is built against API 2.x"))
		Expect(conditionOf(Default, p).Status).To(Equal(corev1.ConditionTrue))
		st := h.status(ctx)
		Expect(st.Version(mj.digest)).To(BeNil(), "nothing reaches the host")
		Expect(st.Current).To(Equal(v3.digest))
		Expect(loads(ra, sidecar.LoadIncompatible)).To(Equal(2.0))
		ra.waitSyncs(ctx, 5)
		Expect(loads(ra, sidecar.LoadIncompatible)).To(Equal(2.0), "not tried again")
	})

	It("hands the pod's memory bound to its host before it loads, keeping the host's RSS bound", func(ctx SpecContext) {
		h := startHost(ctx, "-max-extra-rss", "1073741824")
		pod := newPod(ctx)
		startAgent(h, pod)
		Expect(h.status(ctx).Limits).To(Equal(control.Limits{MaxExtraRSSBytes: 1 << 30}))
		v2 := arts["v2"]
		annotate(ctx, pod, map[string]string{splicev1.AnnotationDesiredArtifact: v2.ref, splicev1.AnnotationMaxLoadedVersions: "3"})
		waitReport(ctx, pod, v2.digest, splicev1.SwapReady)
		Expect(h.status(ctx).Limits).To(Equal(control.Limits{MaxVersions: 3, MaxExtraRSSBytes: 1 << 30}))
		Expect(h.greet("ada", "").Version).To(Equal("v2"))
	})

	It("reports a malformed desired-artifact annotation as Failed and touches nothing", func(ctx SpecContext) {
		h := startHost(ctx)
		pod := newPod(ctx)
		startAgent(h, pod)
		before := h.status(ctx)
		annotate(ctx, pod, map[string]string{splicev1.AnnotationDesiredArtifact: regHost + "/greeter/plugin:v2"})

		r, p := waitReport(ctx, pod, "", splicev1.SwapFailed)
		Expect(r.Reason).To(Equal(sidecar.ReasonInvalidDesiredArtifact))
		Expect(r.Error).To(And(ContainSubstring("names a tag"), ContainSubstring("@sha256:")))
		c := conditionOf(Default, p)
		Expect(c.Status).To(Equal(corev1.ConditionTrue), "the host serves v1")
		Expect(c.Message).To(ContainSubstring(sidecar.ReasonInvalidDesiredArtifact))
		after := h.status(ctx)
		Expect(after.LastSwap.StartedAt).To(Equal(before.LastSwap.StartedAt))
		Expect(after.LoadedVersions).To(Equal(1))
	})

	It("runs a request-level canary next to the stable version, then promotes it", func(ctx SpecContext) {
		h := startHost(ctx)
		pod := newPod(ctx)
		startAgent(h, pod)
		v1, v3 := arts["v1"], arts["v3"]
		annotate(ctx, pod, map[string]string{
			splicev1.AnnotationDesiredArtifact: v3.ref, splicev1.AnnotationStableArtifact: v1.ref, splicev1.AnnotationTrafficPercent: "50",
			splicev1.AnnotationAllowMinorAPIChange: "true", // v3 is a minor API step from v1
		})
		r, _ := waitReport(ctx, pod, v3.digest, splicev1.SwapReady)
		Expect(r.TrafficPercent).To(HaveValue(BeEquivalentTo(50)))
		Expect(r.Running).To(Equal(v1.digest))
		st := h.status(ctx)
		Expect(st.Current).To(Equal(v1.digest))
		Expect(st.Canary).To(Equal(v3.digest))
		Expect(st.CanaryPercent).To(Equal(50))
		seen := map[string]int{}
		for i := 0; i < 64; i++ {
			a := h.greet("ada", fmt.Sprintf("key-%d", i))
			Expect(a.Err).NotTo(HaveOccurred())
			seen[a.Version]++
		}
		Expect(seen).To(HaveKey("v1"))
		Expect(seen).To(HaveKey("v3"))
		Expect(seen).To(HaveLen(2))

		By("promoting the canary when the controller asks for all traffic")
		annotate(ctx, pod, map[string]string{splicev1.AnnotationTrafficPercent: "", splicev1.AnnotationStableArtifact: ""})
		Eventually(func(g Gomega) {
			r := reportOf(g, getPod(ctx, g, pod))
			g.Expect(r.TrafficPercent).To(BeNil(), "still the canary's report")
			g.Expect(r.State).To(Equal(splicev1.SwapReady))
			g.Expect(r.Running).To(Equal(v3.digest))
		}).WithContext(ctx).Should(Succeed())
		st = h.status(ctx)
		Expect(st.Current).To(Equal(v3.digest))
		Expect(st.Canary).To(BeEmpty())
		Expect(st.LoadedVersions).To(Equal(2), "promotion swaps to the version already loaded")
	})

	It("retries a registry outage with backoff, saying so in the report, and swaps once the registry is back", func(ctx SpecContext) {
		h := startHost(ctx)
		pod := newPod(ctx)
		startAgent(h, pod)
		flakyDown.Store(true)
		DeferCleanup(func() { flakyDown.Store(false) })
		fl := arts["v2-flaky"]
		annotate(ctx, pod, map[string]string{splicev1.AnnotationDesiredArtifact: fl.ref})

		Eventually(func(g Gomega) {
			r := reportOf(g, getPod(ctx, g, pod))
			g.Expect(r.State).To(Equal(splicev1.SwapPulling))
			g.Expect(r.Reason).To(Equal(sidecar.ReasonRetrying))
			g.Expect(r.Error).To(ContainSubstring("503"))
		}).WithContext(ctx).Should(Succeed())
		Expect(h.status(ctx).Version(fl.digest)).To(BeNil())

		flakyDown.Store(false)
		r, _ := waitReport(ctx, pod, fl.digest, splicev1.SwapReady)
		Expect(r.Error).To(BeEmpty())
		Expect(r.Reason).To(BeEmpty())
		Expect(h.greet("ada", "").Version).To(Equal("v2"))
	})

	It("fails liveness and readiness when the host stops answering, and keeps its report", func(ctx SpecContext) {
		h := startHost(ctx)
		pod := newPod(ctx)
		ra := startAgent(h, pod)
		v2 := arts["v2"]
		annotate(ctx, pod, map[string]string{splicev1.AnnotationDesiredArtifact: v2.ref})
		waitReport(ctx, pod, v2.digest, splicev1.SwapReady)
		code, _ := ra.probe(sidecar.PathLivez)
		Expect(code).To(Equal(http.StatusOK))

		Expect(h.Signal(os.Kill)).To(Succeed())
		Eventually(h.Exited()).WithContext(ctx).Should(BeClosed())
		code, body := ra.probe(sidecar.PathLivez)
		Expect(code).To(Equal(http.StatusServiceUnavailable))
		Expect(body).To(ContainSubstring("is the host running"))
		code, _ = ra.probe(sidecar.PathReadyz)
		Expect(code).To(Equal(http.StatusServiceUnavailable))
		Expect(testutil.ToFloat64(ra.metrics.Loads.WithLabelValues(sidecar.LoadSuccess))).To(Equal(1.0))

		ra.waitSyncs(ctx, 5)
		r, _ := waitReport(ctx, pod, v2.digest, splicev1.SwapReady)
		Expect(r.Error).To(BeEmpty(), "an outcome already reported stands through a host outage")
	})

	It("drives hot swaps without Kubernetes through the Swapper", func(ctx SpecContext) {
		h := startHost(ctx)
		sw, err := sidecar.NewSwapper(sidecar.SwapperOptions{SharedDir: h.shared, Host: h.client, AllowMinor: true,
			Pull: []artifact.Option{artifact.WithInsecureRegistries(regHost)}})
		Expect(err).NotTo(HaveOccurred())

		out := sw.Swap(ctx, arts["v2"].ref)
		Expect(out.Err).NotTo(HaveOccurred())
		Expect(out.State).To(Equal(splicev1.SwapReady))
		Expect(out.Changed).To(BeTrue())
		Expect(out.Pulled).To(HaveLen(1))
		Expect(out.PullDuration).To(BeNumerically(">", 0))
		Expect(out.PreflightDuration).To(BeNumerically(">", 0))
		Expect(out.SwapLatency).To(BeNumerically(">", 0))
		Expect(out.HostSwap.To).To(Equal(arts["v2"].digest))
		Expect(out.Verdict.OK).To(BeTrue())
		Expect(h.greet("ada", "").Version).To(Equal("v2"))

		again := sw.Swap(ctx, arts["v2"].ref)
		Expect(again.State).To(Equal(splicev1.SwapReady))
		Expect(again.Changed).To(BeFalse(), "a target already served is not swapped again")

		back := sw.Swap(ctx, arts["v1"].ref)
		Expect(back.Err).NotTo(HaveOccurred())
		Expect(back.Pulled).To(BeEmpty(), "v1 is loaded already: a swap, no pull")
		Expect(back.Changed).To(BeTrue())
		Expect(h.greet("ada", "").Version).To(Equal("v1"))

		bad := sw.Swap(ctx, regHost+"/greeter/plugin:v2")
		Expect(bad.State).To(Equal(splicev1.SwapFailed))
		Expect(bad.Reason).To(Equal(sidecar.ReasonInvalidDesiredArtifact))
		Expect(bad.Retry).To(BeFalse())
	})

	It("recognises the artifact of the plugin its host was started with as that build, opening nothing", func(ctx SpecContext) {
		// An image's cold-start plugin, named by its file's sha256 (no -digest), and the
		// artifact of the same bytes the rollout names by its manifest digest.
		h := startHostNamed(ctx, "")
		v1 := arts["v1"]
		before := h.status(ctx)
		Expect(before.Current).NotTo(Equal(v1.digest), "the host names its cold-start plugin by the file's sha256")
		sw, err := sidecar.NewSwapper(sidecar.SwapperOptions{SharedDir: h.shared, Host: h.client, Pull: []artifact.Option{artifact.WithInsecureRegistries(regHost)}})
		Expect(err).NotTo(HaveOccurred())

		out := sw.Swap(ctx, v1.ref)
		Expect(out.Err).NotTo(HaveOccurred())
		Expect(out.State).To(Equal(splicev1.SwapReady))
		st := h.status(ctx)
		Expect(st.Versions).To(HaveLen(1), "nothing opened a second time")
		Expect(st.Current).To(Equal(before.Current))
		Expect(st.IsCurrent(v1.digest)).To(BeTrue(), "the artifact's digest names the version serving")
		Expect(sidecar.Satisfied(sidecar.Target{Digest: v1.digest, Percent: 100}, st)).To(BeTrue())
		Expect(h.greet("ada", "").Version).To(Equal("v1"))
	})

	It("runs as the agent binary with the flags the webhook injects, and exits cleanly on SIGTERM", func(ctx SpecContext) {
		h := startHost(ctx)
		pod := newPod(ctx)
		addr := freeAddr()
		cmd := exec.Command(agentBin,
			"--"+sidecar.FlagSharedDir+"="+h.shared,
			"--"+sidecar.FlagHTTPAddress+"="+addr,
			"--"+sidecar.FlagPollInterval+"=100ms",
			"--"+sidecar.FlagInsecureRegistries+"="+regHost,
			"--kubeconfig="+agentKcfg)
		// The webhook passes the pod's name and namespace from the downward API.
		cmd.Env = append(os.Environ(), sidecar.EnvPodName+"="+pod, sidecar.EnvPodNamespace+"="+namespace)
		out := &testio.SyncBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		Expect(cmd.Start()).To(Succeed())
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		DeferCleanup(func() {
			cmd.Process.Kill()
			if CurrentSpecReport().Failed() {
				GinkgoWriter.Printf("agent log:\n%s\n", out.String())
			}
		})

		v2 := arts["v2"]
		annotate(ctx, pod, map[string]string{splicev1.AnnotationDesiredArtifact: v2.ref})
		waitReport(ctx, pod, v2.digest, splicev1.SwapReady)
		Expect(h.greet("ada", "").Version).To(Equal("v2"))
		Eventually(func(g Gomega) {
			resp, err := http.Get("http://" + addr + sidecar.PathReadyz)
			g.Expect(err).NotTo(HaveOccurred())
			resp.Body.Close()
			g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
		}).WithContext(ctx).Should(Succeed())
		resp, err := http.Get("http://" + addr + sidecar.PathMetrics)
		Expect(err).NotTo(HaveOccurred())
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		Expect(string(body)).To(ContainSubstring(`splice_agent_loads_total{result="success"} 1`))

		Expect(cmd.Process.Signal(syscall.SIGTERM)).To(Succeed())
		Eventually(exited).WithContext(ctx).Should(Receive(BeNil()), "the agent exits 0 on SIGTERM")
	})

	It("holds no more permissions than its Role: no list, no other resources", func(ctx SpecContext) {
		_, err := agentKube.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "list pods: %v", err)
		_, err = agentKube.CoreV1().Secrets(namespace).Get(ctx, "anything", metav1.GetOptions{})
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "get secrets: %v", err)
		_, err = agentKube.CoreV1().Pods("kube-system").Get(ctx, "anything", metav1.GetOptions{})
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "get pods in another namespace: %v", err)
	})
})

// appRestarted writes into the pod's status what the kubelet would after the app container's
// process died and the container restarted: restartCount 1, the last termination's exit code 2
// (an unrecovered panic) and, as with terminationMessagePolicy FallbackToLogsOnError, the end of
// its log.
func appRestarted(ctx context.Context, pod, lastLog string) {
	GinkgoHelper()
	now := metav1.Now()
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"containerStatuses": []corev1.ContainerStatus{{
		Name: "app", Image: "registry.example.com/greeter:1", ImageID: "registry.example.com/greeter@sha256:" + strings.Repeat("0", 64),
		RestartCount: 1, Started: new(true),
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: 2, Reason: "Error", Message: lastLog, StartedAt: now, FinishedAt: now}},
	}}}})
	Expect(err).NotTo(HaveOccurred())
	_, err = adminKube.CoreV1().Pods(namespace).Patch(ctx, pod, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	Expect(err).NotTo(HaveOccurred())
}

// countersBy calls the host's plugin three times, does then (when not nil), and waits for the
// pod's report to count the calls, while it moves the agent's fake clock to at: whenever the
// agent's counters' timer is armed (its timers are the poll's ticker and that one), and never
// past at, so that a timer set for later never fires early and finds nothing to write. It
// returns the report.
func countersBy(ctx context.Context, h *hostProc, pod string, fc *clocktesting.FakeClock, at time.Time, then func()) *splicev1.PodReport {
	GinkgoHelper()
	before := reportOf(Default, getPod(ctx, Default, pod)).Calls
	for range 3 {
		Expect(h.greet("grace", "").Err).NotTo(HaveOccurred())
	}
	if then != nil {
		then()
	}
	var r *splicev1.PodReport
	Eventually(func(g Gomega) {
		r = reportOf(g, getPod(ctx, g, pod))
		if r.Calls >= before+3 {
			return
		}
		if fc.Waiters() >= 2 && !fc.Now().After(at) {
			fc.SetTime(at) // fires a timer due at at, even once the clock is there
		}
		g.Expect(r.Calls).To(BeNumerically(">=", before+3))
	}).WithContext(ctx).WithTimeout(5 * time.Second).Should(Succeed())
	return r
}

// reportTimings prints what the pipeline measured, for the record.
func reportTimings(ra *runningAgent, r *splicev1.PodReport, host *control.SwapResult) {
	GinkgoHelper()
	sum := func(h prometheus.Histogram) float64 {
		var m dto.Metric
		Expect(h.Write(&m)).To(Succeed())
		return m.GetHistogram().GetSampleSum()
	}
	entry := fmt.Sprintf("pull %.1f ms, preflight %.1f ms, load+swap %.1f ms as the agent measured it (%.1f ms inside the host), gcDuringSwap %v, scanned globals %d -> %d bytes",
		sum(ra.metrics.PullDuration)*1e3, sum(ra.metrics.PreflightTime)*1e3, r.SwapLatencySeconds*1e3, host.Seconds*1e3, r.GCDuringSwap, r.Before.ScanGlobalsBytes, r.After.ScanGlobalsBytes)
	AddReportEntry("pipeline timings", entry)
	GinkgoWriter.Println(entry)
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr() string {
	GinkgoHelper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	defer ln.Close()
	return ln.Addr().String()
}
