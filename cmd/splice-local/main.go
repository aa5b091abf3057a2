// Command splice-local is the embedded default behind `make run`: it starts a local control plane
// (etcd and kube-apiserver from bin/k8s), installs Splice's CRDs, writes a kubeconfig, runs the
// manager against it, applies the sample CompilerVersions with a few pods for each to target,
// shows a malformed CompilerVersion being refused, and prints the CompilerVersions whenever their
// status changes.
//
// The local control plane has no kubelet: pods are stored and targeted but never run, so no
// plugin is built or swapped here. The full cluster demo replaces this once the build, agent
// and rollout pieces exist.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/internal/manager"
	"github.com/splice-dev/splice/internal/testenv"
)

func main() {
	root := testenv.RepoRoot()
	kubeconfig := flag.String("kubeconfig-out", filepath.Join(root, ".local", "kubeconfig"), "Where to write the local control plane's kubeconfig.")
	samples := flag.String("samples", filepath.Join(root, "config", "samples"), "Directory of CompilerVersions to apply (empty: none).")
	podsPer := flag.Int("demo-pods", 3, "Pods to create for each sample's selector.")
	runFor := flag.Duration("for", 0, "Stop after this long (0: run until interrupted).")
	// Conflicts and other retried errors are routine; keep stack traces for panics.
	zapOpts := zap.Options{Development: true, StacktraceLevel: zapcore.DPanicLevel}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))

	if err := run(*kubeconfig, *samples, *podsPer, *runFor); err != nil {
		fmt.Fprintf(os.Stderr, "splice-local: %v\n", err)
		os.Exit(1)
	}
}

func run(kubeconfigPath, samplesDir string, podsPer int, runFor time.Duration) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if runFor > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, runFor)
		defer cancel()
	}
	log := ctrl.Log.WithName("splice-local")

	env, err := testenv.New()
	if err != nil {
		return err
	}
	log.Info("starting local control plane", "assets", env.BinaryAssetsDirectory)
	cfg, err := env.Start()
	if err != nil {
		return fmt.Errorf("start control plane: %w", err)
	}
	defer func() {
		log.Info("stopping local control plane")
		if err := env.Stop(); err != nil {
			log.Error(err, "stop control plane")
		}
	}()

	user, err := env.AddUser(envtest.User{Name: "splice-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("create admin user: %w", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return fmt.Errorf("render kubeconfig: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(kubeconfigPath), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(kubeconfigPath, kc, 0o600); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	kubectl := filepath.Join(env.BinaryAssetsDirectory, "kubectl")
	fmt.Printf("\nLocal control plane is up at %s with the CompilerVersion CRD installed.\n", cfg.Host)
	fmt.Printf("  export KUBECONFIG=%s\n  %s get compilerversions -A\n  %s apply -f %s\n\n", kubeconfigPath, kubectl, kubectl, samplesDir)

	scheme, err := manager.Scheme()
	if err != nil {
		return err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	o := manager.DefaultOptions()
	o.MetricsAddr, o.ProbeAddr = "0", "0"
	o.OnStarted = func(ctx context.Context) {
		if err := demo(ctx, c, samplesDir, podsPer); err != nil {
			log.Error(err, "demo")
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- manager.Run(ctrl.LoggerInto(ctx, log), cfg, o) }()
	go watchStatus(ctx, c)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return <-errc
	}
}

// demo applies the samples, creates pods for them to target, and shows a refusal.
func demo(ctx context.Context, c client.Client, dir string, podsPer int) error {
	if dir == "" {
		return nil
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return err
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		cv := &splicev1.CompilerVersion{}
		if err := yaml.UnmarshalStrict(raw, cv); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		if err := c.Create(ctx, cv); err != nil {
			return fmt.Errorf("apply %s: %w", f, err)
		}
		fmt.Printf("applied %s (%s)\n", cv.Name, cv.Spec.Strategy.Type)
		for i := 0; i < podsPer; i++ {
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", cv.Name, i), Namespace: cv.Namespace, Labels: cv.Spec.Selector.MatchLabels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.com/greeter:1"}}},
			}
			if err := c.Create(ctx, pod); err != nil {
				return fmt.Errorf("create demo pod: %w", err)
			}
		}
	}
	bad := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "splice.dev/v1alpha1", "kind": "CompilerVersion",
		"metadata": map[string]any{"name": "malformed", "namespace": "default"},
		"spec": map[string]any{
			"goVersion": "1.26",
			"plugin":    map[string]any{"source": map[string]any{"artifact": "registry.example.com/p:latest"}},
			"selector":  map[string]any{},
		},
	}}
	err = c.Create(ctx, bad)
	fmt.Printf("\na malformed CompilerVersion is refused by the API server:\n  %v\n\n", err)
	return nil
}

// watchStatus prints the CompilerVersions, like `kubectl get cv`, whenever the table changes.
func watchStatus(ctx context.Context, c client.Client) {
	last := ""
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var list splicev1.CompilerVersionList
		if err := c.List(ctx, &list); err != nil {
			continue
		}
		sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
		var b strings.Builder
		w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "NAME\tGO\tSTRATEGY\tPHASE\tUPDATED\tREADY\tREASON")
		for _, cv := range list.Items {
			ready, reason := "", ""
			if cond := apimeta.FindStatusCondition(cv.Status.Conditions, splicev1.ConditionReady); cond != nil {
				ready, reason = string(cond.Status), cond.Reason
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", cv.Name, cv.Spec.GoVersion, cv.Spec.Strategy.Type, cv.Status.Phase, cv.Status.Progress, ready, reason)
		}
		w.Flush()
		if s := b.String(); s != last && len(list.Items) > 0 {
			fmt.Printf("%s\n%s", time.Now().Format("15:04:05"), s)
			last = s
		}
	}
}
