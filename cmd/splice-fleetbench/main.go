// Command splice-fleetbench measures the rollout engine on a fleet: a real API server (etcd and
// kube-apiserver from bin/k8s), the real manager binary (cmd/manager, every controller), a real
// registry (go-containerregistry's, on loopback) holding two real plugin builds, and N pods whose
// agents are simulated on the pod side only (internal/simagent: the real annotation/condition
// protocol, no kubelet). For every policy and fleet size it rolls the fleet from one artifact to
// the next and prints the time to converge, the manager's API writes per pod per step (from its
// own rest_client_requests_total), and the manager's memory (VmRSS and VmHWM of its process).
//
// Bounded: every rollout has a deadline, pods are deleted after each run, and nothing leaves
// 127.0.0.1.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/internal/loopreg"
	"github.com/splice-dev/splice/internal/simagent"
	"github.com/splice-dev/splice/internal/testenv"
)

func main() {
	sizes := flag.String("sizes", "50,200,1000", "Fleet sizes, comma-separated.")
	policies := flag.String("policies", "RollingPatch,Canary,Strict", "Policies, comma-separated.")
	deadline := flag.Duration("deadline", 5*time.Minute, "Longest one rollout may take before the run fails.")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *sizes, *policies, *deadline); err != nil {
		log.Fatalf("splice-fleetbench: %v", err)
	}
}

// result is one row of the table.
type result struct {
	policy        splicev1.StrategyType
	pods, steps   int
	converge      time.Duration
	managerWrites float64
	agentWrites   int64
	// statusWrites and statusConflicts are the CompilerVersion status patches the API server
	// accepted and refused with 409 Conflict during the rollout (its apiserver_request_total).
	statusWrites, statusConflicts float64
	rss, hwm                      uint64
}

// parseSizes reads -sizes: fleet sizes from 1 to 5000, comma-separated.
func parseSizes(flag string) ([]int, error) {
	var sizes []int
	for _, s := range strings.Split(flag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 5000 {
			return nil, fmt.Errorf("-sizes: %q is not a fleet size from 1 to 5000", s)
		}
		sizes = append(sizes, n)
	}
	return sizes, nil
}

// parsePolicies reads -policies: strategy types, comma-separated.
func parsePolicies(flag string) ([]splicev1.StrategyType, error) {
	var policies []splicev1.StrategyType
	for _, p := range strings.Split(flag, ",") {
		switch t := splicev1.StrategyType(strings.TrimSpace(p)); t {
		case splicev1.StrategyStrict, splicev1.StrategyRollingPatch, splicev1.StrategyCanary:
			policies = append(policies, t)
		default:
			return nil, fmt.Errorf("-policies: %q is not Strict, RollingPatch or Canary", p)
		}
	}
	return policies, nil
}

func run(ctx context.Context, sizesFlag, policiesFlag string, deadline time.Duration) error {
	sizes, err := parseSizes(sizesFlag)
	if err != nil {
		return err
	}
	policies, err := parsePolicies(policiesFlag)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "splice-fleetbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	// Two real plugin builds in a real registry, and the manager binary.
	progress("building the greeter plugins v1 and v2 and the manager")
	managerBin := filepath.Join(work, "manager")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", managerBin, "./cmd/manager").CombinedOutput(); err != nil {
		return fmt.Errorf("build the manager: %v\n%s", err, out)
	}
	reg, err := loopreg.Start()
	if err != nil {
		return err
	}
	defer reg.Close()
	refs, err := reg.PushGreeter(ctx, filepath.Join(work, "build"), "fleet/greeter", map[string]string{"v1": "1.0.0", "v2": "1.0.1"},
		fmt.Sprint(os.Getpid()))
	if err != nil {
		return err
	}

	// A real control plane and the real manager.
	progress("starting the control plane")
	env, err := testenv.New()
	if err != nil {
		return err
	}
	cfg, err := env.Start()
	if err != nil {
		return fmt.Errorf("start control plane: %w", err)
	}
	defer env.Stop()
	kubeconfig, err := writeKubeconfig(env, work)
	if err != nil {
		return err
	}
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = splicev1.AddToScheme(scheme)
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	cs := kubernetes.NewForConfigOrDie(cfg)
	mgr, err := startManager(ctx, managerBin, kubeconfig, work, reg.Host)
	if err != nil {
		return err
	}
	defer mgr.stop()

	var results []result
	for _, policy := range policies {
		for _, n := range sizes {
			progress(fmt.Sprintf("%s with %d pods", policy, n))
			r, err := rollout(ctx, c, cs, mgr, policy, n, refs, deadline)
			if err != nil {
				return fmt.Errorf("%s with %d pods: %w", policy, n, err)
			}
			results = append(results, r)
		}
	}
	printResults(os.Stdout, results)
	return nil
}

func progress(msg string) {
	fmt.Fprintf(os.Stderr, "[fleetbench %s] %s\n", time.Now().Format("15:04:05"), msg)
}

// strategy is the policy under test and how many steps it takes: Canary runs three steps
// without pauses, RollingPatch batches of the default maxUnavailable.
func strategy(p splicev1.StrategyType) (splicev1.RolloutStrategy, int) {
	switch p {
	case splicev1.StrategyCanary:
		return splicev1.RolloutStrategy{Type: p, Canary: &splicev1.CanaryStrategy{Steps: []splicev1.CanaryStep{
			{SetWeight: 10}, {SetWeight: 50}, {SetWeight: 100}}}}, 3
	case splicev1.StrategyRollingPatch:
		rp := &splicev1.RollingPatchStrategy{}
		mu := rp.MaxUnavailableOrDefault()
		rp.MaxUnavailable = &mu
		// Counted on 100 pods: a percentage makes as many batches of every fleet it divides
		// evenly, as the benchmark's sizes are.
		batch, err := intstr.GetScaledValueFromIntOrPercent(&mu, 100, true)
		if err != nil || batch < 1 {
			batch = 1
		}
		return splicev1.RolloutStrategy{Type: p, RollingPatch: rp}, (100 + batch - 1) / batch
	default:
		return splicev1.RolloutStrategy{Type: p}, 1
	}
}

// rollout puts n pods on v1 (a first rollout, every pod at once), then measures the rollout
// from v1 to v2 under the policy.
func rollout(ctx context.Context, c client.Client, cs kubernetes.Interface, mgr *managerProc, policy splicev1.StrategyType, n int,
	refs map[string]string, deadline time.Duration) (result, error) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "fleet-"}}
	if err := c.Create(ctx, ns); err != nil {
		return result{}, err
	}
	labels := map[string]string{"app": "greeter"}
	if err := createPods(ctx, c, ns.Name, n, labels); err != nil {
		return result{}, err
	}
	defer c.DeleteAllOf(context.Background(), &corev1.Pod{}, client.InNamespace(ns.Name), client.GracePeriodSeconds(0))
	actx, stopAgents := context.WithCancel(ctx)
	defer stopAgents()
	agents := simagent.New(cs, ns.Name)
	agents.Workers = 8
	if err := agents.Start(actx); err != nil {
		return result{}, err
	}
	st, steps := strategy(policy)
	cv := &splicev1.CompilerVersion{ObjectMeta: metav1.ObjectMeta{Name: "greeter", Namespace: ns.Name},
		Spec: splicev1.CompilerVersionSpec{GoVersion: strings.TrimPrefix(goVersion(), "go"),
			Plugin:   splicev1.PluginSpec{Source: splicev1.PluginSource{Artifact: refs["v1"]}},
			Selector: metav1.LabelSelector{MatchLabels: labels}, Strategy: st}}
	if err := c.Create(ctx, cv); err != nil {
		return result{}, err
	}
	defer c.Delete(context.Background(), cv)
	if err := waitStable(ctx, c, cv, refs["v1"], deadline); err != nil {
		return result{}, fmt.Errorf("first rollout: %w", err)
	}

	before, err := mgr.writes()
	if err != nil {
		return result{}, err
	}
	statusBefore, err := statusPatches(ctx, cs)
	if err != nil {
		return result{}, err
	}
	agentsBefore := agents.Writes()
	start := time.Now()
	patch := client.MergeFrom(cv.DeepCopy())
	cv.Spec.Plugin.Source.Artifact = refs["v2"]
	if err := c.Patch(ctx, cv, patch); err != nil {
		return result{}, err
	}
	if err := waitStable(ctx, c, cv, refs["v2"], deadline); err != nil {
		return result{}, err
	}
	converge := time.Since(start)
	after, err := mgr.writes()
	if err != nil {
		return result{}, err
	}
	statusAfter, err := statusPatches(ctx, cs)
	if err != nil {
		return result{}, err
	}
	if agents.MaxSwaps() > 1 {
		return result{}, errors.New("a pod was asked to swap to the same artifact twice")
	}
	rss, hwm := mgr.memory()
	return result{policy: policy, pods: n, steps: steps, converge: converge, managerWrites: after - before,
		agentWrites: agents.Writes() - agentsBefore, rss: rss, hwm: hwm,
		statusWrites: statusAfter["200"] - statusBefore["200"], statusConflicts: statusAfter["409"] - statusBefore["409"]}, nil
}

func goVersion() string {
	out, err := exec.Command("go", "env", "GOVERSION").Output()
	if err != nil {
		return "go1.26.8"
	}
	return strings.TrimSpace(string(out))
}

// createPods creates n pods with a few concurrent writers.
func createPods(ctx context.Context, c client.Client, ns string, n int, labels map[string]string) error {
	errs := make(chan error, n)
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("greeter-%04d", i), Namespace: ns, Labels: labels},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.com/greeter:1"}}}}
				if err := c.Create(ctx, pod); err != nil {
					errs <- err
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	return <-errs
}

// waitStable waits until the CompilerVersion completed a rollout of ref.
func waitStable(ctx context.Context, c client.Client, cv *splicev1.CompilerVersion, ref string, deadline time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	digest := splicev1.DigestOf(ref)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		got := &splicev1.CompilerVersion{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(cv), got); err == nil {
			if got.Status.Phase == splicev1.PhaseCompleted && got.Status.StableArtifact != nil && got.Status.StableArtifact.Digest == digest {
				*cv = *got
				return nil
			}
			if got.Status.Phase == splicev1.PhaseRolledBack || got.Status.Phase == splicev1.PhaseDegraded || got.Status.Phase == splicev1.PhaseBuildFailed {
				return fmt.Errorf("rollout of %s ended %s: %v", digest, got.Status.Phase, got.Status.Conditions)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("rollout of %s did not complete within %s", digest, deadline)
		case <-tick.C:
		}
	}
}

func printResults(w io.Writer, rs []result) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "policy\tpods\tsteps\tconverge\tmanager writes\twrites/pod/step\tstatus writes\tstatus 409s\tagent writes\tmanager RSS\tmanager peak RSS\t")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%.0f\t%.2f\t%.0f\t%.0f\t%d\t%.1fMiB\t%.1fMiB\t\n", r.policy, r.pods, r.steps, r.converge.Round(10*time.Millisecond),
			r.managerWrites, r.managerWrites/float64(r.pods*r.steps), r.statusWrites, r.statusConflicts, r.agentWrites, float64(r.rss)/(1<<20), float64(r.hwm)/(1<<20))
	}
	tw.Flush()
	fmt.Fprintln(w, "\n(manager writes: POST/PUT/PATCH/DELETE the manager sent during the v1 -> v2 rollout, from its rest_client_requests_total;")
	fmt.Fprintln(w, " status writes and 409s: PATCHes of compilerversions/status the API server answered 200 and 409 Conflict, from its apiserver_request_total;")
	fmt.Fprintf(w, " steps: RollingPatch %s batches, Canary 10/50/100%%, Strict all at once; agents are simulated on the pod side only)\n",
		splicev1.DefaultMaxUnavailable)
}

func writeKubeconfig(env *envtest.Environment, dir string) (string, error) {
	user, err := env.AddUser(envtest.User{Name: "fleetbench-manager", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return "", err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "kubeconfig")
	return path, os.WriteFile(path, kc, 0o600)
}

// managerProc is the manager running as its own process, so its memory is its own.
type managerProc struct {
	cmd     *exec.Cmd
	metrics string
}

func startManager(ctx context.Context, bin, kubeconfig, dir, registry string) (*managerProc, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	logFile, err := os.Create(filepath.Join(dir, "manager.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--kubeconfig", kubeconfig, "--metrics-bind-address", addr, "--health-probe-bind-address", "0",
		"--insecure-registries="+registry, "--enable-webhooks=false", "--zap-log-level", "info")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start manager: %w", err)
	}
	m := &managerProc{cmd: cmd, metrics: "http://" + addr + "/metrics"}
	waitCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		if _, err := m.writes(); err == nil {
			return m, nil
		}
		select {
		case <-waitCtx.Done():
			m.stop()
			tail, _ := os.ReadFile(logFile.Name())
			if len(tail) > 4000 {
				tail = tail[len(tail)-4000:]
			}
			return nil, fmt.Errorf("the manager did not serve metrics within a minute; its log ends:\n%s", tail)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (m *managerProc) stop() {
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { m.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = m.cmd.Process.Kill()
		<-done
	}
}

// writes sums the manager's mutating API requests.
func (m *managerProc) writes() (float64, error) {
	resp, err := http.Get(m.metrics)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("parse manager metrics: %w", err)
	}
	fam, ok := families["rest_client_requests_total"]
	if !ok {
		return 0, errors.New("manager exposes no rest_client_requests_total")
	}
	total := 0.0
	for _, metric := range fam.GetMetric() {
		if isWrite(metric) {
			total += metric.GetCounter().GetValue()
		}
	}
	return total, nil
}

func isWrite(m *dto.Metric) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == "method" {
			switch l.GetValue() {
			case "POST", "PUT", "PATCH", "DELETE":
				return true
			}
		}
	}
	return false
}

// statusPatches reads the API server's count of CompilerVersion status PATCHes by response code.
// Only the manager writes CompilerVersion status here, so these are its status writes.
func statusPatches(ctx context.Context, cs kubernetes.Interface) (map[string]float64, error) {
	raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the API server's metrics: %w", err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(raw)))
	if err != nil {
		return nil, fmt.Errorf("parse the API server's metrics: %w", err)
	}
	byCode := map[string]float64{}
	for _, m := range families["apiserver_request_total"].GetMetric() {
		l := map[string]string{}
		for _, p := range m.GetLabel() {
			l[p.GetName()] = p.GetValue()
		}
		if l["resource"] == "compilerversions" && l["subresource"] == "status" && l["verb"] == "PATCH" {
			byCode[l["code"]] += m.GetCounter().GetValue()
		}
	}
	return byCode, nil
}

// memory reads the manager's resident and peak resident set size from /proc.
func (m *managerProc) memory() (rss, hwm uint64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", m.cmd.Process.Pid))
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 2 {
			continue
		}
		kb, _ := strconv.ParseUint(fields[1], 10, 64)
		switch fields[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			hwm = kb << 10
		}
	}
	return rss, hwm
}
