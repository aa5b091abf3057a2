// Command manager runs Splice's controllers against the cluster in its kubeconfig (in-cluster
// config when run in a pod).
package main

import (
	"flag"
	"os"
	"strings"

	"go.uber.org/zap/zapcore"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/splice-dev/splice/internal/manager"
)

func main() {
	o := manager.DefaultOptions()
	flag.StringVar(&o.MetricsAddr, "metrics-bind-address", o.MetricsAddr, `Address the Prometheus metrics endpoint binds to; "0" disables it. `+
		`The default is loopback only; to expose metrics on another interface (":8080"), set --metrics-secure too.`)
	flag.BoolVar(&o.MetricsSecure, "metrics-secure", false, "Serve metrics over HTTPS, only to bearer tokens the API server authenticates and authorizes for GET /metrics "+
		"(the manager needs create on tokenreviews and subjectaccessreviews).")
	flag.TextVar((*listFlag)(&o.PrometheusAllowedAddresses), "prometheus-allowed-addresses", listFlag(nil),
		"Prometheus base URLs (comma-separated, or the flag repeated) that canary analyses may query, such as http://prometheus.monitoring:9090; "+
			"an address is allowed when its scheme, host and port are an entry's and its path is under the entry's path. Default: none.")
	flag.StringVar(&o.ProbeAddr, "health-probe-bind-address", o.ProbeAddr, "Address the /healthz and /readyz endpoints bind to.")
	flag.BoolVar(&o.LeaderElection, "leader-elect", false, "Elect a leader so that only one manager replica acts at a time.")
	flag.StringVar(&o.LeaderElectionNamespace, "leader-election-namespace", "", "Namespace of the leader-election Lease (default: the pod's namespace).")
	flag.DurationVar(&o.LeaseDuration, "leader-elect-lease-duration", o.LeaseDuration, "How long a non-leader waits before taking over an unrenewed lease.")
	flag.DurationVar(&o.RenewDeadline, "leader-elect-renew-deadline", o.RenewDeadline, "How long the leader retries renewing before giving up leadership.")
	flag.DurationVar(&o.RetryPeriod, "leader-elect-retry-period", o.RetryPeriod, "How often leader-election clients retry.")
	flag.TextVar((*listFlag)(&o.InsecureRegistries), "insecure-registries", listFlag(nil),
		"Registries (host or host:port as in references, comma-separated or the flag repeated) reached over plain HTTP: by the manager, its build Jobs "+
			"and the agents it injects. Every other registry gets TLS, loopback and in-cluster addresses included. Default: none.")
	flag.TextVar((*listFlag)(&o.Namespaces), "namespaces", listFlag(nil),
		"The only namespaces the manager works in (comma-separated or repeated): CompilerVersions, their pods and build Jobs elsewhere are not seen, "+
			"so Roles in these namespaces are all the RBAC it needs beyond its cluster-scoped rules. Default: every namespace.")
	flag.StringVar(&o.TrustPolicyFile, "trust-policy", "", "Trust policy file (YAML: policies of namespaces, keys and registries): artifacts of covered namespaces "+
		"must be signed by a policy key, checked by the manager and again by each agent. Default: none, nothing checked.")
	flag.StringVar(&o.SigningKeyFile, "signing-key", "", "Private key (cosign format or PKCS#8 PEM) the manager signs the artifacts its builds push with. Default: none.")
	flag.StringVar(&o.SigningKeyPasswordFile, "signing-key-password-file", "", "File holding the signing key's password (absent or empty: no password).")
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

// listFlag is a flag of comma-separated values that may also be repeated: each use appends.
type listFlag []string

func (l listFlag) MarshalText() ([]byte, error) { return []byte(strings.Join(l, ",")), nil }

func (l *listFlag) UnmarshalText(b []byte) error {
	for _, e := range strings.Split(string(b), ",") {
		if e = strings.TrimSpace(e); e != "" {
			*l = append(*l, e)
		}
	}
	return nil
}
