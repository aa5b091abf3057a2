// Package manager assembles Splice's controller manager: the scheme, the reconcilers, health
// checks, metrics and leader election. cmd/manager runs it against a cluster; cmd/splice-local
// runs it against a local control plane. It holds no reconcile logic of its own.
package manager

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/artifact"
	"github.com/splice-dev/splice/controllers"
	"github.com/splice-dev/splice/internal/trust"
)

// Options are the manager's settings, one per command-line flag.
type Options struct {
	// MetricsAddr is where Prometheus metrics are served ("0" disables). The default is
	// loopback only: metrics on another interface should be MetricsSecure.
	MetricsAddr string
	// MetricsSecure serves metrics over HTTPS (a self-signed certificate) and only to clients
	// whose bearer token the API server authenticates (TokenReview) and authorizes for GET on
	// the non-resource URL /metrics (SubjectAccessReview).
	MetricsSecure bool
	// PrometheusAllowedAddresses are the Prometheus base URLs canary analyses may query
	// (controllers.ParsePrometheusAllowlist); empty allows none.
	PrometheusAllowedAddresses []string
	// ProbeAddr is where /healthz and /readyz are served.
	ProbeAddr string
	// LeaderElection makes only one replica act at a time.
	LeaderElection bool
	// LeaderElectionNamespace holds the Lease (defaults to the pod's namespace in-cluster).
	LeaderElectionNamespace string
	// LeaseDuration, RenewDeadline and RetryPeriod tune leader election.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// InsecureRegistries are the registries (host or host:port) that may be reached over plain
	// HTTP: by the manager reading prebuilt artifacts, by the build Jobs pushing to them and by
	// the agents it injects. Every other registry gets TLS, loopback and in-cluster addresses
	// included (artifact.WithInsecureRegistries).
	InsecureRegistries []string
	// Namespaces, when set, are the only namespaces the manager works in: its cache lists and
	// watches CompilerVersions, pods and Jobs there alone, so its RBAC can be Roles in those
	// namespaces (the chart's manager.namespaces) instead of cluster-wide grants. Empty: every
	// namespace.
	Namespaces []string
	// skipNameValidation lets a test run a second manager in one process (controller names
	// are registered process-wide, for their metrics).
	skipNameValidation bool
	// TrustPolicyFile is the trust policy (trust.Config, YAML); "" checks no signatures.
	TrustPolicyFile string
	// SigningKeyFile is the key the manager signs its builds' artifacts with (cosign's
	// encrypted format or PKCS#8 PEM), SigningKeyPasswordFile its password (may be absent or
	// empty); "" signs nothing.
	SigningKeyFile, SigningKeyPasswordFile string
	// Webhooks configure the admission webhooks and the agent they inject (webhooks.go);
	// disabled unless Webhooks.Enabled.
	Webhooks WebhookOptions
	// OnStarted, if set, is called once the manager's caches are synced (used by
	// cmd/splice-local to start its demo only when the manager is ready).
	OnStarted func(ctx context.Context)
}

// DefaultMetricsAddr is where metrics are served unless told otherwise: loopback only, as they
// are served without authentication unless MetricsSecure.
const DefaultMetricsAddr = "127.0.0.1:8080"

// DefaultOptions are the defaults the flags show.
func DefaultOptions() Options {
	return Options{
		MetricsAddr: DefaultMetricsAddr, ProbeAddr: ":8081",
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
	for _, h := range o.InsecureRegistries {
		if err := artifact.ValidateRegistryHost(h); err != nil {
			return fmt.Errorf("--insecure-registries: %w", err)
		}
	}
	for _, ns := range o.Namespaces {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return fmt.Errorf("--namespaces: %q is not a namespace name: %s", ns, strings.Join(errs, "; "))
		}
	}
	o.Webhooks.InsecureRegistries = o.InsecureRegistries
	at, err := loadTrust(o)
	if err != nil {
		return err
	}
	o.Webhooks.Trust = at.Policies
	wh, err := newWebhookSetup(o.Webhooks)
	if err != nil {
		return fmt.Errorf("webhook options: %w", err)
	}
	promAllowed, err := controllers.ParsePrometheusAllowlist(o.PrometheusAllowedAddresses)
	if err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsOptions(o),
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
		Cache:                         cache.Options{ByObject: controllers.BuildCacheOptions(), DefaultNamespaces: cacheNamespaces(o.Namespaces)},
		Controller:                    ctrlconfig.Controller{SkipNameValidation: &o.skipNameValidation},
	})
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}
	if err := (&controllers.CompilerVersionReconciler{
		Client:   mgr.GetClient(),
		Recorder: mgr.GetEventRecorder("splice-manager"),

		PrometheusAllowlist: promAllowed,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up CompilerVersion controller: %w", err)
	}
	if err := controllers.SetupBuildController(mgr, o.InsecureRegistries, at); err != nil {
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
	ctrl.LoggerFrom(ctx).Info("starting manager", "metricsAddr", o.MetricsAddr, "metricsSecure", o.MetricsSecure, "probeAddr", o.ProbeAddr,
		"leaderElection", o.LeaderElection, "prometheusAllowedAddresses", promAllowed.String())
	return mgr.Start(ctx)
}

// cacheNamespaces is the cache's namespace restriction for --namespaces; nil is every namespace.
func cacheNamespaces(namespaces []string) map[string]cache.Config {
	if len(namespaces) == 0 {
		return nil
	}
	m := map[string]cache.Config{}
	for _, ns := range namespaces {
		m[ns] = cache.Config{}
	}
	return m
}

// loadTrust reads the trust policy and the signing key, failing at start with what to fix.
func loadTrust(o Options) (controllers.ArtifactTrust, error) {
	var at controllers.ArtifactTrust
	if o.TrustPolicyFile != "" {
		c, err := trust.LoadConfig(o.TrustPolicyFile)
		if err != nil {
			return at, fmt.Errorf("--trust-policy: %w", err)
		}
		at.Policies = c
	}
	if o.SigningKeyFile != "" {
		key, err := os.ReadFile(o.SigningKeyFile)
		if err != nil {
			return at, fmt.Errorf("--signing-key: %w", err)
		}
		var pw []byte
		if o.SigningKeyPasswordFile != "" {
			if pw, err = os.ReadFile(o.SigningKeyPasswordFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return at, fmt.Errorf("--signing-key-password-file: %w", err)
			}
		}
		if at.Signer, err = trust.LoadSigner(key, bytes.TrimRight(pw, "\r\n")); err != nil {
			return at, fmt.Errorf("--signing-key %s: %w", o.SigningKeyFile, err)
		}
	}
	return at, nil
}

// The metrics filter (MetricsSecure) asks the API server who a scraper is and whether it may
// GET /metrics.
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// metricsOptions are the metrics server's options: plain HTTP at o.MetricsAddr, or HTTPS with
// authentication and authorization when o.MetricsSecure.
func metricsOptions(o Options) metricsserver.Options {
	m := metricsserver.Options{BindAddress: o.MetricsAddr}
	if o.MetricsSecure {
		m.SecureServing = true
		m.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	return m
}
