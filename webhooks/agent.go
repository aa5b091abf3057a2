package webhooks

import (
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/splice-dev/splice/artifact"
	"github.com/splice-dev/splice/host/control"
	"github.com/splice-dev/splice/internal/trust"
	"github.com/splice-dev/splice/sidecar"
)

// Names the injection gives to what it adds to a pod. Other components find the agent and the
// shared volume by these names, so they are part of the pod protocol.
const (
	// AgentContainerName is the agent sidecar's name. It is a native sidecar: an init container
	// with restartPolicy Always (see addAgent for why).
	AgentContainerName = "splice-agent"
	// SharedVolumeName is the emptyDir shared by the agent and the app containers: the host
	// library's control socket (control.SocketName) and the plugin files live in it.
	SharedVolumeName = "splice-shared"
	// AgentHTTPPortName names the agent's one port: /readyz, /livez and /metrics.
	AgentHTTPPortName = "splice-http"
	// AgentTokenVolumeName is the agent's own service-account credentials: a projected volume
	// (a bound token, the cluster's CA, the namespace) mounted into the agent only, at the path
	// in-cluster clients read. The UPDATE guard (PodGuard) refuses any other container that
	// mounts it.
	AgentTokenVolumeName = "splice-agent-token"
)

// AnnotationAppServiceAccountToken on a pod, set to "true", keeps the API server's
// service-account token in the pod's app containers (automountServiceAccountToken is left as it
// is), for apps that call the Kubernetes API themselves. Without it the injection takes that
// token away from them: only the agent holds credentials. An app that keeps its token holds
// the agent's rights too, since both are the same ServiceAccount — limited by the
// splice-agent-own-pod ValidatingAdmissionPolicy (config/policy) to its own pod's
// splice.dev/report annotation and splice.dev/plugin-ready condition.
const AnnotationAppServiceAccountToken = "splice.dev/app-service-account-token"

// AgentTokenExpirationSeconds is the lifetime of the agent's projected token. The kubelet
// renews it at 80% of that, and client-go re-reads the file, so the agent never sees it expire.
// An hour, and not the 3607 s of the API server's own kube-api-access volumes, which the API
// server silently extends to a year for clients that do not re-read their token.
const AgentTokenExpirationSeconds int64 = 3600

// Defaults of AgentConfig, also the manager's flag defaults.
const (
	// DefaultAgentImage is a locally built image name; deployments set the release's image.
	DefaultAgentImage = "splice-agent:dev"
	// DefaultSharedDir is where the shared volume is mounted, in the agent and in the app
	// containers alike: an application points the host library's shared directory here.
	DefaultSharedDir = sidecar.DefaultSharedDir
	// DefaultAgentHTTPPort is cmd/agent's default (--http-address=:9440), away from the ports
	// applications commonly use: the agent shares the pod's network namespace with the app.
	DefaultAgentHTTPPort int32 = 9440
	// DefaultAgentProbeTimeout bounds the host request behind each probe (--probe-timeout); the
	// kubelet's probe timeout is one second longer, so the agent answers before the kubelet
	// gives up and a slow host reads as "not ready" with a reason, not as a timeout.
	DefaultAgentProbeTimeout = 2 * time.Second
	// DefaultAgentUID runs the agent as the conventional "nonroot" user when the app's UID is
	// unknown.
	DefaultAgentUID int64 = 65532
)

// AgentConfig is everything the Pod mutator needs to build the agent sidecar. The manager fills
// it from its flags (Helm values); a zero field takes the default from WithDefaults.
type AgentConfig struct {
	// Image is the agent's container image.
	Image string
	// ImagePullPolicy of the agent's image; empty lets the API server default it from the tag,
	// so WithDefaults sets IfNotPresent to keep the injected container identical on every pass.
	ImagePullPolicy corev1.PullPolicy
	// Resources of the agent container.
	Resources corev1.ResourceRequirements
	// SharedDir is the mount path of the shared volume in the agent and the app containers.
	SharedDir string
	// HTTPPort serves /readyz, /livez and /metrics.
	HTTPPort int32
	// ProbeTimeout bounds the host request behind /readyz and /livez.
	ProbeTimeout time.Duration
	// RunAsUser is the agent's UID when the app container's UID is not known from the pod spec
	// or is root. When the app runs as a known non-root UID the agent runs as that same UID,
	// because the host library creates its control socket with mode 0600.
	RunAsUser int64
	// InsecureRegistries are the registries the agent may pull from over plain HTTP (the
	// manager's --insecure-registries); every other registry gets TLS.
	InsecureRegistries []string
	// Trust, when set, holds the trust policies: an agent injected into a namespace a policy
	// covers gets that policy ($SPLICE_TRUST_POLICY) and pulls only what its keys signed.
	Trust *trust.Config
	// Args builds the agent's command line from the configuration; nil means AgentArgs. It must
	// produce flags cmd/agent accepts.
	Args func(AgentConfig) []string
}

// DefaultAgentResources are small: the agent idles between swaps and holds at most one
// artifact in flight. Memory is limited because an unbounded sidecar can starve the app.
func DefaultAgentResources() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("10m"),
			corev1.ResourceMemory: resource.MustParse("32Mi"),
		},
		Limits: corev1.ResourceList{
			corev1.ResourceMemory: resource.MustParse("128Mi"),
		},
	}
}

// WithDefaults returns c with every zero field set to its default.
func (c AgentConfig) WithDefaults() AgentConfig {
	if c.Image == "" {
		c.Image = DefaultAgentImage
	}
	if c.ImagePullPolicy == "" {
		c.ImagePullPolicy = corev1.PullIfNotPresent
	}
	if c.Resources.Requests == nil && c.Resources.Limits == nil {
		c.Resources = DefaultAgentResources()
	}
	if c.SharedDir == "" {
		c.SharedDir = DefaultSharedDir
	}
	if c.HTTPPort == 0 {
		c.HTTPPort = DefaultAgentHTTPPort
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = DefaultAgentProbeTimeout
	}
	if c.RunAsUser == 0 {
		c.RunAsUser = DefaultAgentUID
	}
	if c.Args == nil {
		c.Args = AgentArgs
	}
	return c
}

// Validate reports what is wrong with a (defaulted) configuration, naming the manager flag to
// fix.
func (c AgentConfig) Validate() error {
	var errs []error
	if c.Image == "" {
		errs = append(errs, errors.New("agent image is empty: set --agent-image"))
	}
	switch c.ImagePullPolicy {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		errs = append(errs, fmt.Errorf("agent image pull policy %q: set --agent-image-pull-policy to Always, IfNotPresent or Never", c.ImagePullPolicy))
	}
	if !path.IsAbs(c.SharedDir) || path.Clean(c.SharedDir) != c.SharedDir || c.SharedDir == "/" {
		errs = append(errs, fmt.Errorf("agent shared dir %q must be a clean absolute path other than /: set --agent-shared-dir", c.SharedDir))
	}
	if c.HTTPPort < 1 || c.HTTPPort > 65535 {
		errs = append(errs, fmt.Errorf("--agent-http-port %d is not a TCP port (1-65535)", c.HTTPPort))
	}
	if c.ProbeTimeout < time.Second || c.ProbeTimeout%time.Second != 0 {
		errs = append(errs, fmt.Errorf("agent probe timeout %v must be a whole number of seconds, at least 1s (the kubelet counts probe timeouts in seconds)", c.ProbeTimeout))
	}
	for _, h := range c.InsecureRegistries {
		if err := artifact.ValidateRegistryHost(h); err != nil {
			errs = append(errs, fmt.Errorf("--insecure-registries: %w", err))
		}
	}
	if c.RunAsUser <= 0 {
		errs = append(errs, fmt.Errorf("--agent-run-as-user %d: the agent must run as a non-root UID", c.RunAsUser))
	}
	return errors.Join(errs...)
}

// AgentArgs is the agent's command line, built from cmd/agent's own flag names (package
// sidecar; TestAgentArgsParseWithAgentFlags parses it with the agent's flag set). The control
// socket is the host library's, inside the shared directory. The pod's name and namespace are
// not flags: the agent reads them from POD_NAME and POD_NAMESPACE, set from the downward API.
func AgentArgs(c AgentConfig) []string {
	args := []string{
		"--" + sidecar.FlagSharedDir + "=" + c.SharedDir,
		"--" + sidecar.FlagSocket + "=" + path.Join(c.SharedDir, control.SocketName),
		"--" + sidecar.FlagHTTPAddress + "=:" + strconv.Itoa(int(c.HTTPPort)),
		"--" + sidecar.FlagProbeTimeout + "=" + c.ProbeTimeout.String(),
	}
	if len(c.InsecureRegistries) > 0 {
		args = append(args, "--"+sidecar.FlagInsecureRegistries+"="+strings.Join(c.InsecureRegistries, ","))
	}
	return args
}
