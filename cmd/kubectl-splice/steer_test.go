package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/controllers"
	"github.com/splice-dev/splice/internal/simagent"
	"github.com/splice-dev/splice/internal/testio"
)

// TestCanarySteeredByCLI drives a canary with the real CompilerVersion reconciler and
// simulated agents (internal/simagent, the real pod protocol) through every command, reading
// the phase each one reports, while `get --watch` follows along.
//
//	go test ./cmd/kubectl-splice -run TestCanarySteeredByCLI -v
func TestCanarySteeredByCLI(t *testing.T) {
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(30 * time.Second)
	g.SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
	c := apiServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	startReconciler(t, ctx)

	ns := newNamespace(t, c)
	sel := map[string]string{"app": "greeter"}
	cv := &splicev1.CompilerVersion{
		ObjectMeta: metav1.ObjectMeta{Name: "greeter", Namespace: ns},
		Spec: splicev1.CompilerVersionSpec{
			GoVersion: "1.26.8",
			Plugin:    splicev1.PluginSpec{Source: splicev1.PluginSource{Artifact: stableRef}},
			Selector:  metav1.LabelSelector{MatchLabels: sel},
			Strategy: splicev1.RolloutStrategy{Type: splicev1.StrategyCanary, Canary: &splicev1.CanaryStrategy{
				Steps: []splicev1.CanaryStep{
					{SetWeight: 25, TrafficPercent: ptr.To[int32](10), Pause: &splicev1.CanaryPause{}},
					{SetWeight: 50, Pause: &splicev1.CanaryPause{}},
					{SetWeight: 100},
				},
			}},
		},
	}
	g.Expect(c.Create(ctx, cv)).To(Succeed())
	for i := range 4 {
		createPod(t, c, testPod(ns, fmt.Sprintf("greeter-%d", i), podOpts{labels: sel}))
	}
	agents := simagent.New(kubernetes.NewForConfigOrDie(cluster.cfg), ns)
	agents.Latency = 120 * time.Millisecond
	g.Expect(agents.Start(ctx)).To(Succeed())

	key := client.ObjectKeyFromObject(cv)
	// publish stands in for the build controller.
	publish := func(a *splicev1.ArtifactStatus) {
		g.Eventually(func(g Gomega) {
			var cv splicev1.CompilerVersion
			g.Expect(c.Get(ctx, key, &cv)).To(Succeed())
			cv.Status.Artifact = a.DeepCopy()
			apimeta.SetStatusCondition(&cv.Status.Conditions, metav1.Condition{Type: splicev1.ConditionBuilt, Status: metav1.ConditionTrue,
				Reason: "Resolved", Message: "prebuilt artifact resolved", ObservedGeneration: cv.Generation})
			g.Expect(c.Status().Update(ctx, &cv)).To(Succeed())
		}).Should(Succeed())
	}
	phase := func(p splicev1.Phase) {
		g.Eventually(func(g Gomega) {
			var cv splicev1.CompilerVersion
			g.Expect(c.Get(ctx, key, &cv)).To(Succeed())
			g.Expect(cv.Status.Phase).To(Equal(p))
		}).Should(Succeed())
	}
	publish(stableArt)
	phase(splicev1.PhaseCompleted)

	// Follow the second rollout live.
	watchOut, watchErr := &testio.SyncBuffer{}, &testio.SyncBuffer{}
	wctx, stopWatch := context.WithCancel(ctx)
	watched := make(chan int, 1)
	go func() {
		watched <- run(wctx, []string{"--kubeconfig", cluster.kubeconfig, "-n", ns, "get", "greeter", "-w"}, watchOut, watchErr)
	}()

	g.Eventually(func(g Gomega) {
		var cv splicev1.CompilerVersion
		g.Expect(c.Get(ctx, key, &cv)).To(Succeed())
		cv.Spec.Plugin.Source.Artifact = canaryRef
		g.Expect(c.Update(ctx, &cv)).To(Succeed())
	}).Should(Succeed())
	publish(canaryArt)
	phase(splicev1.PhasePaused)

	cli := func(args ...string) string {
		t.Helper()
		code, out, errOut := kubectlSplice(ctx, append(args, "-n", ns, "--wait=20s")...)
		g.Expect(code).To(Equal(0), errOut)
		g.Expect(out).NotTo(ContainSubstring("has not acted"))
		t.Logf("$ kubectl splice %s\n%s", strings.Join(args, " "), out)
		return out
	}
	code, out, errOut := kubectlSplice(ctx, "get", "greeter", "-n", ns)
	g.Expect(code).To(Equal(0), errOut)
	t.Logf("$ kubectl splice get greeter\n%s", out)
	g.Expect(out).To(ContainSubstring("Step:     1/3: setWeight 25%, trafficPercent 10%, pause until promoted"))
	// The host serves the stable version and routes 10% of calls to the canary.
	g.Expect(out).To(MatchRegexp(`9f8e7d6c5b4a \(canary\)\s+10%\s+✔ Ready\s+1a2b3c4d5e6f\+9f8e7d6c5b4a\s+120ms`))

	g.Expect(cli("promote", "greeter")).To(ContainSubstring("Phase: ")) // step 2 moves, then holds
	phase(splicev1.PhasePaused)
	g.Expect(cli("pause", "greeter")).To(ContainSubstring("Phase: ॥ Paused (PausedByUser)"))
	g.Expect(cli("resume", "greeter")).To(ContainSubstring("Phase: ॥ Paused (AwaitingPromotion): Canary step 2/3"))
	g.Expect(cli("abort", "greeter")).To(ContainSubstring("Phase: ⚠ RolledBack (Aborted)"))
	g.Eventually(func(g Gomega) {
		code, out, _ := kubectlSplice(ctx, "get", "greeter", "-n", ns)
		g.Expect(code).To(Equal(0))
		g.Expect(strings.Count(out, "1a2b3c4d5e6f (stable)  100%     ✔ Ready")).To(Equal(4))
	}).Should(Succeed())
	g.Expect(cli("retry", "greeter")).To(ContainSubstring("Phase: "))
	phase(splicev1.PhasePaused)
	g.Expect(cli("promote", "greeter", "--full")).To(ContainSubstring("Phase: "))
	phase(splicev1.PhaseCompleted)

	g.Eventually(func() string { return lastOf(watchOut.String()) }).Should(ContainSubstring("Status:     ✔ Completed"))
	stopWatch()
	g.Eventually(watched).Should(Receive(Equal(0)))
	frames := splitFrames(watchOut.String())
	t.Logf("get --watch printed %d frames; the last:\n%s", len(frames), frames[len(frames)-1])
	g.Expect(len(frames)).To(BeNumerically(">", 5))
}

func lastOf(s string) string {
	f := splitFrames(s)
	if len(f) == 0 {
		return ""
	}
	return f[len(f)-1]
}

// startReconciler runs the CompilerVersion reconciler in a manager until ctx ends.
func startReconciler(t *testing.T, ctx context.Context) {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := splicev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	mgr, err := ctrl.NewManager(cluster.cfg, ctrl.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		Controller: config.Controller{SkipNameValidation: ptr.To(true)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := (&controllers.CompilerVersionReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("splice-e2e")}).SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	}()
	t.Cleanup(func() { <-done })
}
