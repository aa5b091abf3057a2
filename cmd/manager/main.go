// Command manager runs Splice's controllers against the cluster in its kubeconfig (in-cluster
// config when run in a pod).
package main

import (
	"flag"
	"os"

	"go.uber.org/zap/zapcore"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/splice-dev/splice/internal/manager"
)

func main() {
	o := manager.DefaultOptions()
	flag.StringVar(&o.MetricsAddr, "metrics-bind-address", o.MetricsAddr, `Address the Prometheus metrics endpoint binds to; "0" disables it.`)
	flag.StringVar(&o.ProbeAddr, "health-probe-bind-address", o.ProbeAddr, "Address the /healthz and /readyz endpoints bind to.")
	flag.BoolVar(&o.LeaderElection, "leader-elect", false, "Elect a leader so that only one manager replica acts at a time.")
	flag.StringVar(&o.LeaderElectionNamespace, "leader-election-namespace", "", "Namespace of the leader-election Lease (default: the pod's namespace).")
	flag.DurationVar(&o.LeaseDuration, "leader-elect-lease-duration", o.LeaseDuration, "How long a non-leader waits before taking over an unrenewed lease.")
	flag.DurationVar(&o.RenewDeadline, "leader-elect-renew-deadline", o.RenewDeadline, "How long the leader retries renewing before giving up leadership.")
	flag.DurationVar(&o.RetryPeriod, "leader-elect-retry-period", o.RetryPeriod, "How often leader-election clients retry.")
	flag.BoolVar(&o.RegistryInsecure, "registry-insecure", false, "Read prebuilt artifacts from registries over plain HTTP (loopback or in-cluster registries without TLS).")
	o.Webhooks.BindFlags(flag.CommandLine)
	// Conflicts and other retried errors are routine; keep stack traces for panics.
	zapOpts := zap.Options{StacktraceLevel: zapcore.DPanicLevel}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()

	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("setup")
	cfg, err := ctrl.GetConfig()
	if err != nil {
		log.Error(err, "load kubeconfig: set KUBECONFIG or --kubeconfig, or run in a pod")
		os.Exit(1)
	}
	ctx := ctrl.LoggerInto(ctrl.SetupSignalHandler(), log)
	if err := manager.Run(ctx, cfg, o); err != nil {
		log.Error(err, "manager stopped")
		os.Exit(1)
	}
}
