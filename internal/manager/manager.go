// Package manager assembles Splice's controller manager: the scheme, the reconcilers, health
// checks, metrics and leader election. cmd/manager runs it against a cluster; cmd/splice-local
// runs it against a local control plane. It holds no reconcile logic of its own.
package manager

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/artifact"
	"github.com/splice-dev/splice/controllers"
)

// Options are the manager's settings, one per command-line flag.
type Options struct {
	// MetricsAddr is where Prometheus metrics are served ("0" disables).
	MetricsAddr string
	// ProbeAddr is where /healthz and /readyz are served.
	ProbeAddr string
	// LeaderElection makes only one replica act at a time.
	LeaderElection bool
	// LeaderElectionNamespace holds the Lease (defaults to the pod's namespace in-cluster).
	LeaderElectionNamespace string
	// LeaseDuration, RenewDeadline and RetryPeriod tune leader election.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// RegistryInsecure lets the manager read prebuilt artifacts' configs over plain HTTP (a
	// registry on loopback or inside the cluster without TLS).
	RegistryInsecure bool
	// Webhooks configure the admission webhooks and the agent they inject (webhooks.go);
	// disabled unless Webhooks.Enabled.
	Webhooks WebhookOptions
	// OnStarted, if set, is called once the manager's caches are synced (used by
	// cmd/splice-local to start its demo only when the manager is ready).
	OnStarted func(ctx context.Context)
}

// DefaultOptions are the defaults the flags show.
func DefaultOptions() Options {
	return Options{
		MetricsAddr: ":8080", ProbeAddr: ":8081",
		LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second,
		Webhooks: DefaultWebhookOptions(),
	}
}

// Scheme returns a scheme with the Kubernetes built-ins and Splice's API.
func Scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := splicev1.AddToScheme(s); err != nil {
		return nil, err
	}
	return s, nil
}

// Run builds the manager and blocks until ctx is done or the manager fails.
func Run(ctx context.Context, cfg *rest.Config, o Options) error {
	scheme, err := Scheme()
	if err != nil {
		return fmt.Errorf("build scheme: %w", err)
	}
	wh, err := newWebhookSetup(o.Webhooks)
	if err != nil {
		return fmt.Errorf("webhook options: %w", err)
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsserver.Options{BindAddress: o.MetricsAddr},
		HealthProbeBindAddress:  o.ProbeAddr,
		LeaderElection:          o.LeaderElection,
		LeaderElectionID:        "splice-manager.splice.dev",
		LeaderElectionNamespace: o.LeaderElectionNamespace,
		LeaseDuration:           &o.LeaseDuration,
		RenewDeadline:           &o.RenewDeadline,
		RetryPeriod:             &o.RetryPeriod,
		// Release the lease on a clean shutdown so a successor takes over at once.
		LeaderElectionReleaseOnCancel: true,
		WebhookServer:                 wh.server(),
		Cache:                         cache.Options{ByObject: controllers.BuildCacheOptions()},
	})
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}
	if err := (&controllers.CompilerVersionReconciler{
		Client:   mgr.GetClient(),
		Recorder: mgr.GetEventRecorder("splice-manager"),
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up CompilerVersion controller: %w", err)
	}
	var registryOptions []artifact.Option
	if o.RegistryInsecure {
		registryOptions = append(registryOptions, artifact.WithInsecure(true))
	}
	if err := controllers.SetupBuildController(mgr, registryOptions...); err != nil {
		return fmt.Errorf("set up build controller: %w", err)
	}
	if err := wh.setup(ctx, mgr); err != nil {
		return fmt.Errorf("set up webhooks: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("add health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return fmt.Errorf("add ready check: %w", err)
	}
	if o.OnStarted != nil {
		go func() {
			if mgr.GetCache().WaitForCacheSync(ctx) {
				o.OnStarted(ctx)
			}
		}()
	}
	ctrl.LoggerFrom(ctx).Info("starting manager", "metricsAddr", o.MetricsAddr, "probeAddr", o.ProbeAddr, "leaderElection", o.LeaderElection)
	return mgr.Start(ctx)
}
