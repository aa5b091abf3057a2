// Command splice-local is the embedded default behind `make run`: it starts a local control plane
// (etcd and kube-apiserver from bin/k8s), installs Splice's CRDs, writes a kubeconfig and runs
// the real manager against it. Then it plays a rollout story: it builds two real greeter plugin
// versions and pushes them to a registry on loopback, creates a CompilerVersion per policy
// (Strict, RollingPatch, Canary) over a few pods each, rolls every fleet to v1, then to v2 (the
// canary pausing for a promotion, which the demo gives as a person would), then sends the canary
// a v3 whose plugin calls fail, which its analysis rolls back. It prints the CompilerVersions
// whenever their status changes, and shows a malformed CompilerVersion being refused.
//
// The local control plane has no kubelet, so pods are stored but never run: their agents are
// simulated on the pod side (internal/simagent follows the real annotation/condition protocol).
// Everything else — the manager, its build controller reading the artifacts from the registry,
// the rollout engine — is the real thing. The real agent and host are exercised by the swap
// runtime's own tests and benchmark, and on a real cluster by the end-to-end suite.
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
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/internal/loopreg"
	"github.com/splice-dev/splice/internal/manager"
	"github.com/splice-dev/splice/internal/testenv"
)

func main() {
	root := testenv.RepoRoot()
	kubeconfig := flag.String("kubeconfig-out", filepath.Join(root, ".local", "kubeconfig"), "Where to write the local control plane's kubeconfig.")
	podsPer := flag.Int("demo-pods", 4, "Pods in each policy's fleet.")
	runFor := flag.Duration("for", 0, "Stop after this long (0: run until interrupted).")
	// Conflicts and other retried errors are routine; keep stack traces for panics.
	logPath := flag.String("log-file", filepath.Join(root, ".local", "splice-local.log"),
		`Where the manager's and the control plane's logs go ("-" for stderr), so the terminal shows the story.`)
	zapOpts := zap.Options{Development: true, StacktraceLevel: zapcore.DPanicLevel}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	if *logPath != "-" {
		if err := os.MkdirAll(filepath.Dir(*logPath), 0o755); err != nil {
			fmt.Fprintf(os.Stderr, "splice-local: %v\n", err)
			os.Exit(1)
		}
		f, err := os.Create(*logPath)
		if err != nil {
			fmt.Fprintf(os.Stderr, "splice-local: %v\n", err)
			os.Exit(1)
		}
		defer f.Close()
		zapOpts.DestWriter = f
		fmt.Printf("logs: %s\n", *logPath)
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))

	if err := run(*kubeconfig, *podsPer, *runFor); err != nil {
		fmt.Fprintf(os.Stderr, "splice-local: %v\n", err)
		os.Exit(1)
	}
}

func run(kubeconfigPath string, podsPer int, runFor time.Duration) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if runFor > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, runFor)
		defer cancel()
	}
	log := ctrl.Log.WithName("splice-local")

	env, err := testenv.NewWithWebhooks()
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
	stopKCM, err := startControllerManager(ctx, env.BinaryAssetsDirectory, kubeconfigPath)
	if err != nil {
		return err
	}
	defer stopKCM()
	fmt.Printf("\nLocal control plane is up at %s with the CompilerVersion CRD and Splice's webhooks installed.\n", cfg.Host)
	fmt.Printf("In another shell:\n  export KUBECONFIG=%s\n  bin/k8s/kubectl get cv -o wide\n  go run ./cmd/kubectl-splice get greeter-canary --watch\n\n", kubeconfigPath)

	reg, err := loopreg.Start()
	if err != nil {
		return err
	}
	defer reg.Close()
	work, err := os.MkdirTemp("", "splice-local-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

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
	o.InsecureRegistries = []string{reg.Host}
	// The API server calls the webhooks by URL on loopback with envtest's certificate; the
	// manager serves that certificate as it would a mounted cert-manager one.
	wio := env.WebhookInstallOptions
	o.Webhooks.Enabled = true
	o.Webhooks.CertMode = "cert-manager"
	o.Webhooks.CertDir = wio.LocalServingCertDir
	o.Webhooks.Host, o.Webhooks.Port = wio.LocalServingHost, wio.LocalServingPort
	o.OnStarted = func(ctx context.Context) {
		d := &demo{c: c, cs: kubernetes.NewForConfigOrDie(cfg), reg: reg, work: work, pods: podsPer}
		if err := d.run(ctx); err != nil && ctx.Err() == nil {
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
