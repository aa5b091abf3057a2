// Command splice-demo is the README's first command (`make demo`) after the local cluster is up
// (hack/cluster) and the images are loaded (make images): it installs the chart, runs an
// in-cluster registry, deploys the greeter example (3 opted-in pods behind a Service), pushes two
// real plugin versions, and rolls them out while a bounded load sends requests through the
// Service and a line a second shows the rollout and who answered:
//
//  1. v2 as the CompilerVersion's first rollout (every pod at once: nothing is stable yet);
//  2. v3 as a Canary: one pod at 50% of its calls for a timed pause, then two pods, then all.
//
// It ends with `kubectl splice get`, the totals (a failed request makes it exit 1) and how to
// watch, promote, abort and tear down. The cluster, the release and the demo namespace stay,
// so the commands it prints work; running it again starts the story over.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/artifact"
	"github.com/splice-dev/splice/examples/greeter/greeterbuild"
	"github.com/splice-dev/splice/internal/clusterkit"
	"github.com/splice-dev/splice/internal/loadgen"
)

const (
	app = "greeter"
	// registryIP is the demo registry's fixed ClusterIP (the cluster has no DNS; the e2e suite
	// uses 10.96.100.10-12).
	registryIP = "10.96.100.20"
	replicas   = 3
)

type demo struct {
	root, kubeconfig, helm, kubectlSplice, ns string
	kube                                      kubernetes.Interface
	cli                                       client.Client
	start                                     time.Time
}

func main() {
	root, err := greeterbuild.FindModuleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "splice-demo:", err)
		os.Exit(1)
	}
	d := &demo{root: root, start: time.Now()}
	flag.StringVar(&d.kubeconfig, "kubeconfig", filepath.Join(root, ".local", "cluster", "kubeconfig"), "the local cluster's kubeconfig (make cluster-up writes it)")
	flag.StringVar(&d.helm, "helm", "", "the helm binary (make helm builds it)")
	flag.StringVar(&d.kubectlSplice, "kubectl-splice", filepath.Join(root, "bin", "kubectl-splice"), "the kubectl-splice binary")
	flag.StringVar(&d.ns, "namespace", "splice-demo", "namespace of the example service")
	flag.Parse()
	if d.helm == "" {
		fmt.Fprintln(os.Stderr, "splice-demo: -helm is required (make demo passes bin/helm-<version>)")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := d.run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "\nsplice-demo: %v\n", err)
		os.Exit(1)
	}
}

func (d *demo) say(format string, args ...any) {
	fmt.Printf("\n[%5.1fs] >>> %s\n", time.Since(d.start).Seconds(), fmt.Sprintf(format, args...))
}

func (d *demo) run(ctx context.Context) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", d.kubeconfig)
	if err != nil {
		return fmt.Errorf("read the local cluster's kubeconfig %s (make cluster-up writes it): %w", d.kubeconfig, err)
	}
	if d.kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = splicev1.AddToScheme(scheme)
	if d.cli, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		return err
	}

	// The chart binds the agent's role in the demo namespace, so the namespace comes first.
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: d.ns}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: d.ns}},
	} {
		if err := d.cli.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	d.say("installing the chart (helm upgrade --install splice charts/splice -n splice-system)")
	if err := d.install(ctx); err != nil {
		return err
	}
	d.say("namespace %s: a registry at %s:5000 and the greeter example (%d pods, opted in by the label %s)", d.ns, registryIP, replicas, splicev1.LabelInject)
	refs, err := d.prepare(ctx)
	if err != nil {
		return err
	}
	svc, err := d.kube.CoreV1().Services(d.ns).Get(ctx, app, metav1.GetOptions{})
	if err != nil {
		return err
	}
	url := fmt.Sprintf("http://%s/greet", svc.Spec.ClusterIP)
	if err := clusterkit.WaitConnect(ctx, net.JoinHostPort(svc.Spec.ClusterIP, strconv.Itoa(int(svc.Spec.Ports[0].Port))), time.Minute); err != nil {
		return fmt.Errorf("the greeter Service: %w", err)
	}
	d.say("the greeter Service is reachable and serves v1 (built into its image); starting the load: 4 workers, a POST on a fresh connection every 100ms each, at most 4 minutes")
	load := loadgen.Start(loadgen.Options{URL: url, Workers: 4, Interval: 100 * time.Millisecond, MaxDuration: 4 * time.Minute})
	defer load.Stop()

	key := client.ObjectKey{Namespace: d.ns, Name: app}
	cv := &splicev1.CompilerVersion{
		ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: d.ns},
		Spec: splicev1.CompilerVersionSpec{
			GoVersion: "1.26.8",
			// v3 declares API 1.1.0 over v2's 1.0.1: a minor change, which rolls out only with
			// the CompilerVersion's consent.
			Plugin:   splicev1.PluginSpec{Source: splicev1.PluginSource{Artifact: refs["v2"]}, APIVersion: "1.0.1", AllowMinorAPIChange: true},
			Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": app}},
			Strategy: splicev1.RolloutStrategy{Type: splicev1.StrategyRollingPatch,
				RollingPatch: &splicev1.RollingPatchStrategy{MaxUnavailable: ptr.To(intstr.FromInt32(1))}},
		},
	}
	d.say("step 1: CompilerVersion %s pins go1.26.8 and plugin v2 (%s); its first rollout moves every pod at once", app, short(refs["v2"]))
	if err := d.cli.Create(ctx, cv); err != nil {
		return fmt.Errorf("create CompilerVersion %s: %w", app, err)
	}
	if err := d.follow(ctx, key, refs["v2"], load); err != nil {
		return err
	}

	d.say("step 2: v3 (%s) as a Canary: 1 pod at 50%% of its calls for 10s, then 2 pods for 5s, then every pod", short(refs["v3"]))
	if err := d.update(ctx, key, func(cv *splicev1.CompilerVersion) {
		cv.Spec.Plugin.Source.Artifact, cv.Spec.Plugin.APIVersion = refs["v3"], "1.1.0"
		cv.Spec.Strategy = splicev1.RolloutStrategy{Type: splicev1.StrategyCanary, Canary: &splicev1.CanaryStrategy{Steps: []splicev1.CanaryStep{
			// Weights round up to whole pods: 33% of 3 is 1 pod, 66% is 2.
			{SetWeight: 33, TrafficPercent: ptr.To[int32](50), Pause: &splicev1.CanaryPause{Duration: &metav1.Duration{Duration: 10 * time.Second}}},
			{SetWeight: 66, Pause: &splicev1.CanaryPause{Duration: &metav1.Duration{Duration: 5 * time.Second}}},
		}}}
	}); err != nil {
		return err
	}
	if err := d.follow(ctx, key, refs["v3"], load); err != nil {
		return err
	}
	time.Sleep(2 * time.Second)
	res := load.Stop()

	d.say("kubectl splice get %s -n %s", app, d.ns)
	out, err := exec.CommandContext(ctx, d.kubectlSplice, "get", app, "-n", d.ns, "--kubeconfig", d.kubeconfig).CombinedOutput()
	fmt.Print(string(out))
	if err != nil {
		return fmt.Errorf("kubectl splice get: %w", err)
	}

	restarts, err := d.restarts(ctx)
	if err != nil {
		return err
	}
	d.say("the Service answered %d requests during both rollouts, %d failed (answers by version: %s); container restarts in the greeter pods: %d",
		res.Requests, res.Failures, res.VersionsString(), restarts)
	for _, e := range res.FirstErrors {
		fmt.Println("  failed:", e)
	}
	fmt.Printf(`
The cluster keeps running. In another shell:

  export KUBECONFIG=%s
  %s get %s -n %s --watch      # live per-pod view
  %s/bin/k8s/kubectl -n %s edit cv %s    # change spec.plugin.source.artifact (v2: %s)
  %s promote|pause|resume|abort|retry %s -n %s
  make demo           # play the story again
  make cluster-down   # stop the cluster and put this machine back as it was
`, d.kubeconfig, d.kubectlSplice, app, d.ns, d.root, d.ns, app, refs["v2"], d.kubectlSplice, app, d.ns)
	if res.Failures > 0 || restarts > 0 {
		return fmt.Errorf("%d of %d requests failed and %d containers restarted during hot-swap rollouts", res.Failures, res.Requests, restarts)
	}
	return nil
}

// restarts counts the container restarts in the greeter pods.
func (d *demo) restarts(ctx context.Context) (int32, error) {
	pods, err := d.kube.CoreV1().Pods(d.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		return 0, err
	}
	var n int32
	for _, p := range pods.Items {
		for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
			n += cs.RestartCount
		}
	}
	return n, nil
}

// install runs helm upgrade --install with the local images and the agent's role bound to the
// demo's ServiceAccount.
func (d *demo) install(ctx context.Context) error {
	start := time.Now()
	cmd := exec.CommandContext(ctx, d.helm, "upgrade", "--install", "splice", filepath.Join(d.root, "charts", "splice"),
		"--namespace", "splice-system", "--create-namespace", "--wait", "--timeout", "3m", "--kubeconfig", d.kubeconfig,
		"--set", "image.pullPolicy=Never", "--set", "agent.image.pullPolicy=Never",
		"--set", "manager.insecureRegistries[0]="+registryIP+":5000",
		"--set", "agent.rbacBindings[0].namespace="+d.ns, "--set", "agent.rbacBindings[0].serviceAccount="+app)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("helm upgrade --install: %w\n%s", err, out.String())
	}
	fmt.Printf("  release splice installed, manager Ready in %s\n", time.Since(start).Round(100*time.Millisecond))
	return nil
}

// prepare makes the registry and a fresh greeter Deployment and Service, and
// pushes plugins v2 and v3; it returns their refs.
func (d *demo) prepare(ctx context.Context) (map[string]string, error) {
	// A run again starts over: the previous CompilerVersion and pods go first.
	if err := d.cli.Delete(ctx, &splicev1.CompilerVersion{ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: d.ns}}); err == nil {
		fmt.Println("  deleted the previous run's CompilerVersion and greeter pods")
	}
	if err := d.kube.AppsV1().Deployments(d.ns).Delete(ctx, app, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)}); err != nil && !apierrors.IsNotFound(err) {
		return nil, err
	}
	if err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := d.kube.CoreV1().Pods(d.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
		return err == nil && len(pods.Items) == 0, nil
	}); err != nil {
		return nil, fmt.Errorf("the previous run's greeter pods did not go away: %w", err)
	}

	reg := clusterkit.Fixed{Name: "registry", ClusterIP: registryIP, Port: 5000, PartOf: "splice-demo",
		Container: corev1.Container{Image: clusterkit.ServicesImage, Args: []string{"registry", "-addr", ":5000"}}}
	if err := clusterkit.Deploy(ctx, d.kube, d.ns, reg); err != nil {
		return nil, err
	}
	if _, err := d.kube.AppsV1().Deployments(d.ns).Create(ctx, clusterkit.Greeter(d.ns, app, app, replicas), metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	if _, err := d.kube.CoreV1().Services(d.ns).Create(ctx, clusterkit.GreeterService(d.ns, app), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	if err := clusterkit.WaitServing(ctx, d.kube, d.ns, reg, 2*time.Minute); err != nil {
		return nil, err
	}

	start := time.Now()
	gb := &greeterbuild.Builder{Root: d.root, Out: filepath.Join(d.root, ".local", "demo", "plugins")}
	refs := map[string]string{}
	nonce := fmt.Sprintf("demo-%d", time.Now().Unix())
	for _, p := range []struct{ name, api string }{{"v2", "1.0.1"}, {"v3", "1.1.0"}} {
		built, err := gb.Plugin(ctx, p.name, nonce)
		if err != nil {
			return nil, err
		}
		if refs[p.name], _, err = artifact.Push(ctx, registryIP+":5000/greeter", built.Path, artifact.Config{APIVersion: p.api}, artifact.WithInsecureRegistries(registryIP+":5000")); err != nil {
			return nil, fmt.Errorf("push plugin %s to the demo registry: %w", p.name, err)
		}
	}
	fmt.Printf("  plugins v2 and v3 built with -buildmode=plugin and pushed in %s\n", time.Since(start).Round(100*time.Millisecond))
	if err := clusterkit.WaitReady(ctx, d.kube, d.ns, app, replicas, 3*time.Minute); err != nil {
		return nil, err
	}
	return refs, nil
}

// update changes the CompilerVersion, retrying conflicts.
func (d *demo) update(ctx context.Context, key client.ObjectKey, mutate func(*splicev1.CompilerVersion)) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cv := &splicev1.CompilerVersion{}
		if err := d.cli.Get(ctx, key, cv); err != nil {
			return err
		}
		mutate(cv)
		return d.cli.Update(ctx, cv)
	})
}

// follow prints a line a second, the rollout and the answers since the last line, until the
// CompilerVersion completes with ref; a terminal failure ends the demo.
func (d *demo) follow(ctx context.Context, key client.ObjectKey, ref string, load *loadgen.Generator) error {
	digest := splicev1.DigestOf(ref)
	prev := load.Snapshot()
	deadline := time.Now().Add(3 * time.Minute)
	for tick := time.NewTicker(time.Second); ; {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		cv := &splicev1.CompilerVersion{}
		if err := d.cli.Get(ctx, key, cv); err != nil {
			return err
		}
		now := load.Snapshot()
		var answers []string
		for v, n := range now.Versions {
			if n > prev.Versions[v] {
				answers = append(answers, fmt.Sprintf("%s=%d", v, n-prev.Versions[v]))
			}
		}
		slices.Sort(answers)
		st := cv.Status
		fmt.Printf("[%5.1fs] %-11s %d/%d pods updated, %d ready | last second: %-16s failed %d | %s\n",
			time.Since(d.start).Seconds(), st.Phase, st.Updated, st.Targeted, st.Ready, strings.Join(answers, " "), now.Failures-prev.Failures, st.Progress)
		prev = now
		switch {
		case st.Artifact != nil && st.Artifact.Digest == digest && st.Phase == splicev1.PhaseCompleted:
			return nil
		case st.Phase == splicev1.PhaseBuildFailed || st.Phase == splicev1.PhaseDegraded || st.Phase == splicev1.PhaseRolledBack:
			return fmt.Errorf("the rollout of %s ended %s: %s", short(ref), st.Phase, st.Progress)
		case time.Now().After(deadline):
			return errors.New("the rollout did not complete within 3 minutes; see kubectl splice get " + app + " -n " + d.ns)
		}
	}
}

// short is a ref's digest, abbreviated.
func short(ref string) string {
	if i := strings.LastIndex(ref, "sha256:"); i >= 0 && len(ref) >= i+19 {
		return ref[i : i+19]
	}
	return ref
}
