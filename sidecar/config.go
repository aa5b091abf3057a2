package sidecar

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/splice-dev/splice/artifact"
	"github.com/splice-dev/splice/host/control"
	"github.com/splice-dev/splice/internal/trust"
)

// The agent's command line, as the admission webhook injects it. The names are constants so
// the webhook builds its container args from them rather than from copies.
const (
	// FlagSharedDir: the volume shared with the app container (control socket, plugin files).
	FlagSharedDir = "shared-dir"
	// FlagSocket: the host's control socket; default <shared-dir>/splice-host.sock.
	FlagSocket = "socket"
	// FlagHTTPAddress: where /readyz, /livez and /metrics are served.
	FlagHTTPAddress = "http-address"
	// FlagPodName and FlagPodNamespace: the agent's own pod; default $POD_NAME and
	// $POD_NAMESPACE, which the webhook sets from the downward API.
	FlagPodName      = "pod-name"
	FlagPodNamespace = "pod-namespace"
	// FlagPodIP: the pod's IP, which an --http-address without a host binds to; default
	// $POD_IP, which the webhook sets from the downward API (status.podIP).
	FlagPodIP = "pod-ip"
	// FlagInsecureRegistries: the registries (host or host:port, comma-separated or the flag
	// repeated) that may be reached over plain HTTP; every other registry gets TLS, loopback
	// and RFC 1918 addresses included. The webhook sets it from the manager's
	// --insecure-registries.
	FlagInsecureRegistries = "insecure-registries"
	// FlagTrustPolicy: the namespace's trust policy, encoded (trust.Policy.Encode); default
	// $SPLICE_TRUST_POLICY, which the webhook sets when a policy covers the pod's namespace.
	FlagTrustPolicy = "trust-policy"
	// FlagMaxPluginBytes: the largest plugin layer pulled.
	FlagMaxPluginBytes = "max-plugin-bytes"
	// FlagPollInterval: how often the host's status is read between pod events.
	FlagPollInterval = "host-poll-interval"
	// FlagHostTimeout, FlagLoadTimeout, FlagPullTimeout, FlagProbeTimeout: deadlines of a
	// control request, of a load/swap/route, of a pull, and of the host request behind a probe.
	FlagHostTimeout  = "host-timeout"
	FlagLoadTimeout  = "load-timeout"
	FlagPullTimeout  = "pull-timeout"
	FlagProbeTimeout = "probe-timeout"
	// FlagWedgeAfter: /livez fails once a load/swap/route has waited this long.
	FlagWedgeAfter = "wedge-after"
	// FlagCountersInterval: the shortest time between report writes caused only by call
	// counters.
	FlagCountersInterval = "report-counters-interval"

	// EnvPodName and EnvPodNamespace are the downward-API variables the pod flags default to.
	EnvPodName      = "POD_NAME"
	EnvPodNamespace = "POD_NAMESPACE"
	// EnvPodIP is the downward-API variable --pod-ip defaults to.
	EnvPodIP = "POD_IP"

	// DefaultSharedDir is where the webhook mounts the shared volume in both containers.
	DefaultSharedDir = "/var/run/splice"
	// DefaultHTTPAddress is the probes' and metrics' address: no host, so the pod IP
	// (Config.ListenAddress).
	DefaultHTTPAddress = ":9440"
	// PathReadyz, PathLivez and PathMetrics are the HTTP endpoints.
	PathReadyz  = "/readyz"
	PathLivez   = "/livez"
	PathMetrics = "/metrics"
)

// Config is the agent's configuration, bound to its flags. Consent to a plugin API minor change
// is not among them: it comes from each pod's CompilerVersion, per target
// (splicev1.AnnotationAllowMinorAPIChange; see Target.AllowMinor).
type Config struct {
	SharedDir          string
	Socket             string
	HTTPAddress        string
	PodName            string
	PodNamespace       string
	PodIP              string
	InsecureRegistries []string
	// TrustPolicy is the encoded policy (FlagTrustPolicy); Validate decodes it into Trust.
	TrustPolicy string
	// Trust is nil when no policy covers the namespace: signatures are then not checked.
	Trust            *trust.Policy
	MaxPluginBytes   int64
	PollInterval     time.Duration
	HostTimeout      time.Duration
	LoadTimeout      time.Duration
	PullTimeout      time.Duration
	ProbeTimeout     time.Duration
	WedgeAfter       time.Duration
	CountersInterval time.Duration
}

// BindFlags registers the agent's flags on fs, with their defaults.
func (c *Config) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.SharedDir, FlagSharedDir, DefaultSharedDir, "directory shared with the app container: the host's control socket and the plugin files")
	fs.StringVar(&c.Socket, FlagSocket, "", "the host's control socket (default <shared-dir>/"+control.SocketName+")")
	fs.StringVar(&c.HTTPAddress, FlagHTTPAddress, DefaultHTTPAddress, "address serving "+PathReadyz+", "+PathLivez+" and "+PathMetrics+
		" (without a host: the --"+FlagPodIP+", or every interface when it is unset)")
	fs.StringVar(&c.PodIP, FlagPodIP, os.Getenv(EnvPodIP), "this pod's IP, which --"+FlagHTTPAddress+" binds to when it names no host (default $"+EnvPodIP+", from the downward API)")
	fs.StringVar(&c.PodName, FlagPodName, os.Getenv(EnvPodName), "this pod's name (default $"+EnvPodName+", from the downward API)")
	fs.StringVar(&c.PodNamespace, FlagPodNamespace, os.Getenv(EnvPodNamespace), "this pod's namespace (default $"+EnvPodNamespace+", from the downward API)")
	fs.Func(FlagInsecureRegistries, "registries (host or host:port, comma-separated; the flag may repeat) to pull from over plain HTTP; every other registry gets TLS",
		func(v string) error {
			for _, h := range strings.Split(v, ",") {
				if h = strings.TrimSpace(h); h != "" {
					if err := artifact.ValidateRegistryHost(h); err != nil {
						return err
					}
					c.InsecureRegistries = append(c.InsecureRegistries, h)
				}
			}
			return nil
		})
	fs.StringVar(&c.TrustPolicy, FlagTrustPolicy, os.Getenv(EnvTrustPolicy), "the namespace's trust policy, encoded (default $"+EnvTrustPolicy+
		", which the webhook sets); artifacts are pulled only once their signature verifies against it")
	fs.Int64Var(&c.MaxPluginBytes, FlagMaxPluginBytes, artifact.DefaultMaxLayerBytes, "largest plugin layer to pull, in bytes")
	fs.DurationVar(&c.PollInterval, FlagPollInterval, 10*time.Second, "how often to read the host's status between pod events (rollbacks and counters are only visible there)")
	fs.DurationVar(&c.HostTimeout, FlagHostTimeout, 10*time.Second, "deadline of a control request other than load, swap and route")
	fs.DurationVar(&c.LoadTimeout, FlagLoadTimeout, 3*time.Minute, "deadline of a load, swap or route request (keep above the host library's 2m plugin.Open bound)")
	fs.DurationVar(&c.PullTimeout, FlagPullTimeout, 5*time.Minute, "deadline of one artifact pull")
	fs.DurationVar(&c.ProbeTimeout, FlagProbeTimeout, 5*time.Second, "deadline of the host request behind "+PathReadyz+" and "+PathLivez+" (keep below the probes' timeoutSeconds)")
	fs.DurationVar(&c.WedgeAfter, FlagWedgeAfter, 5*time.Minute, PathLivez+" fails once a load, swap or route has waited this long")
	fs.DurationVar(&c.CountersInterval, FlagCountersInterval, time.Minute, "shortest time between report writes caused only by changed call counters (negative: never)")
}

// Validate checks the configuration and fills the socket default.
func (c *Config) Validate() error {
	var errs []error
	if c.PodName == "" || c.PodNamespace == "" {
		errs = append(errs, fmt.Errorf("--%s and --%s are required (or $%s and $%s from the downward API)", FlagPodName, FlagPodNamespace, EnvPodName, EnvPodNamespace))
	}
	if c.SharedDir == "" {
		errs = append(errs, fmt.Errorf("--%s is required", FlagSharedDir))
	} else if fi, err := os.Stat(c.SharedDir); err != nil || !fi.IsDir() {
		errs = append(errs, fmt.Errorf("--%s %s is not a directory (is the shared volume mounted?)", FlagSharedDir, c.SharedDir))
	}
	if c.Socket == "" {
		c.Socket = filepath.Join(c.SharedDir, control.SocketName)
	}
	if c.TrustPolicy != "" {
		p, err := trust.DecodePolicy(c.TrustPolicy)
		if err != nil {
			errs = append(errs, fmt.Errorf("--%s (or $%s): %w", FlagTrustPolicy, EnvTrustPolicy, err))
		}
		c.Trust = p
	}
	if c.MaxPluginBytes <= 0 {
		errs = append(errs, fmt.Errorf("--%s must be positive", FlagMaxPluginBytes))
	}
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{FlagPollInterval, c.PollInterval}, {FlagHostTimeout, c.HostTimeout}, {FlagLoadTimeout, c.LoadTimeout},
		{FlagPullTimeout, c.PullTimeout}, {FlagProbeTimeout, c.ProbeTimeout}, {FlagWedgeAfter, c.WedgeAfter}} {
		if f.d <= 0 {
			errs = append(errs, fmt.Errorf("--%s must be positive, got %v", f.name, f.d))
		}
	}
	return errors.Join(errs...)
}

// ListenAddress is where the agent serves HTTPAddress: an address without a host binds to the
// pod IP, where the kubelet's probes (and scrapes of the pod) arrive, rather than to every
// interface of the pod's network namespace. Without a usable pod IP it keeps HTTPAddress as it
// is, every interface, and warning says why, for the log. An address with a host is kept.
func (c *Config) ListenAddress() (addr, warning string) {
	host, port, err := net.SplitHostPort(c.HTTPAddress)
	if err != nil || host != "" {
		return c.HTTPAddress, "" // net.Listen reports a malformed address
	}
	ip := net.ParseIP(strings.TrimSpace(c.PodIP))
	if ip == nil {
		return c.HTTPAddress, fmt.Sprintf("no usable pod IP (--%s or $%s is %q): serving --%s %s on every interface; "+
			"inject $%s from the downward API (status.podIP) to bind the pod IP only", FlagPodIP, EnvPodIP, c.PodIP, FlagHTTPAddress, c.HTTPAddress, EnvPodIP)
	}
	return net.JoinHostPort(ip.String(), port), ""
}

// PullOptions are the registry options the configuration implies.
func (c *Config) PullOptions() []artifact.Option {
	return []artifact.Option{artifact.WithInsecureRegistries(c.InsecureRegistries...), artifact.WithMaxLayerBytes(c.MaxPluginBytes)}
}
