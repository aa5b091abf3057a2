package manager

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/splice-dev/splice/internal/trust"
	"github.com/splice-dev/splice/webhooks"
)

// WebhookOptions configure the admission webhooks, their serving certificate and the agent
// sidecar they inject. The zero value (Enabled false) runs no webhook server, so embedders such
// as cmd/splice-local and controller tests opt in explicitly; cmd/manager enables them by
// default through BindFlags.
type WebhookOptions struct {
	// Enabled runs the webhook server and registers the webhooks.
	Enabled bool
	// Host and Port are where the webhook server listens (Host empty: every address).
	Host string
	Port int
	// CertMode is "self" (the manager manages its certificate) or "cert-manager".
	CertMode string
	// CertDir holds tls.crt and tls.key (see webhooks.CertOptions).
	CertDir string
	// CertSecret is the Secret, in Namespace, that holds the certificate in self mode.
	CertSecret string
	// Namespace is the manager's: the webhook Service's and the certificate Secret's.
	Namespace string
	// ServiceName is the webhook Service; the certificate is issued for
	// <ServiceName>.<Namespace>.svc (and .svc.cluster.local).
	ServiceName string
	// ExtraDNSNames are added to the certificate, e.g. "localhost" when the API server calls
	// the manager by URL.
	ExtraDNSNames []string
	// Cert tunes self-mode rotation (validity, renewal lead time, check interval); zero fields
	// keep cert-controller's defaults.
	Cert webhooks.CertOptions

	// Agent sidecar settings; resource quantities as strings so flags can carry them ("" means
	// none).
	AgentImage           string
	AgentImagePullPolicy string
	AgentCPURequest      string
	AgentMemoryRequest   string
	AgentCPULimit        string
	AgentMemoryLimit     string
	AgentSharedDir       string
	AgentHTTPPort        int
	AgentRunAsUser       int64
	// InsecureRegistries is copied from Options.InsecureRegistries by Run: the agents it
	// injects may pull from these over plain HTTP.
	InsecureRegistries []string
	// Trust is copied by Run from the trust policy file: the agents it injects get their
	// namespace's policy.
	Trust *trust.Config
}

// DefaultWebhookOptions are the flag defaults (with Enabled false; see WebhookOptions).
func DefaultWebhookOptions() WebhookOptions {
	ns := os.Getenv("POD_NAMESPACE")
	if ns == "" {
		ns = "splice-system"
	}
	res := webhooks.DefaultAgentResources()
	return WebhookOptions{
		Port:                 9443,
		CertMode:             string(webhooks.CertModeSelf),
		CertDir:              filepath.Join(os.TempDir(), "k8s-webhook-server", "serving-certs"),
		CertSecret:           "splice-webhook-server-cert",
		Namespace:            ns,
		ServiceName:          "splice-webhook-service",
		AgentImage:           webhooks.DefaultAgentImage,
		AgentImagePullPolicy: string(corev1.PullIfNotPresent),
		AgentCPURequest:      res.Requests.Cpu().String(),
		AgentMemoryRequest:   res.Requests.Memory().String(),
		AgentMemoryLimit:     res.Limits.Memory().String(),
		AgentSharedDir:       webhooks.DefaultSharedDir,
		AgentHTTPPort:        int(webhooks.DefaultAgentHTTPPort),
		AgentRunAsUser:       webhooks.DefaultAgentUID,
	}
}

// BindFlags registers the webhook flags on fs, enabling the webhooks by default.
func (o *WebhookOptions) BindFlags(fs *flag.FlagSet) {
	fs.BoolVar(&o.Enabled, "enable-webhooks", true, "Serve the admission webhooks (agent injection, CompilerVersion validation and defaulting).")
	fs.StringVar(&o.Host, "webhook-host", o.Host, "Address the webhook server binds to (empty: all).")
	fs.IntVar(&o.Port, "webhook-port", o.Port, "Port the webhook server listens on (the webhook Service's targetPort).")
	fs.StringVar(&o.CertMode, "webhook-cert-mode", o.CertMode, `Who provides the webhook serving certificate: "self" (the manager creates, injects and rotates it) or "cert-manager" (mounted at --webhook-cert-dir, CA injected by cert-manager).`)
	fs.StringVar(&o.CertDir, "webhook-cert-dir", o.CertDir, "Directory of tls.crt and tls.key: written by the manager in self mode, the mounted cert-manager Secret otherwise.")
	fs.StringVar(&o.CertSecret, "webhook-cert-secret", o.CertSecret, "Secret (in --webhook-namespace) that holds the webhook CA and serving certificate in self mode.")
	fs.StringVar(&o.Namespace, "webhook-namespace", o.Namespace, "Namespace of the webhook Service and certificate Secret (default: $POD_NAMESPACE, else splice-system).")
	fs.StringVar(&o.ServiceName, "webhook-service", o.ServiceName, "Name of the Service the API server calls the webhooks through.")
	fs.StringVar(&o.AgentImage, "agent-image", o.AgentImage, "Image of the injected agent sidecar.")
	fs.StringVar(&o.AgentImagePullPolicy, "agent-image-pull-policy", o.AgentImagePullPolicy, "Pull policy of the agent image: Always, IfNotPresent or Never.")
	fs.StringVar(&o.AgentCPURequest, "agent-cpu-request", o.AgentCPURequest, `CPU request of the agent sidecar ("" for none).`)
	fs.StringVar(&o.AgentMemoryRequest, "agent-memory-request", o.AgentMemoryRequest, `Memory request of the agent sidecar ("" for none).`)
	fs.StringVar(&o.AgentCPULimit, "agent-cpu-limit", o.AgentCPULimit, `CPU limit of the agent sidecar ("" for none).`)
	fs.StringVar(&o.AgentMemoryLimit, "agent-memory-limit", o.AgentMemoryLimit, `Memory limit of the agent sidecar ("" for none).`)
	fs.StringVar(&o.AgentSharedDir, "agent-shared-dir", o.AgentSharedDir, "Mount path of the shared volume (control socket, plugin files) in the agent and the app containers.")
	fs.IntVar(&o.AgentHTTPPort, "agent-http-port", o.AgentHTTPPort, "Port of the agent's /readyz and /livez (probed by the kubelet) and /metrics.")
	fs.Int64Var(&o.AgentRunAsUser, "agent-run-as-user", o.AgentRunAsUser, "UID of the agent when the app container's UID is unknown or root (otherwise the agent takes the app's UID).")
}

// webhookSetup is what Run needs from the options: the server and what to register on it.
// A nil *webhookSetup means webhooks are disabled.
type webhookSetup struct {
	opts  WebhookOptions
	agent webhooks.AgentConfig
	certs *webhooks.ServingCerts
}

// newWebhookSetup checks the options before anything starts, so a bad flag fails at once with
// its name.
func newWebhookSetup(o WebhookOptions) (*webhookSetup, error) {
	if !o.Enabled {
		return nil, nil
	}
	var errs []error
	quantity := func(flag, s string) *resource.Quantity {
		if s == "" {
			return nil
		}
		q, err := resource.ParseQuantity(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("--%s %q: %w", flag, s, err))
			return nil
		}
		return &q
	}
	res := corev1.ResourceRequirements{}
	set := func(list *corev1.ResourceList, name corev1.ResourceName, q *resource.Quantity) {
		if q == nil {
			return
		}
		if *list == nil {
			*list = corev1.ResourceList{}
		}
		(*list)[name] = *q
	}
	set(&res.Requests, corev1.ResourceCPU, quantity("agent-cpu-request", o.AgentCPURequest))
	set(&res.Requests, corev1.ResourceMemory, quantity("agent-memory-request", o.AgentMemoryRequest))
	set(&res.Limits, corev1.ResourceCPU, quantity("agent-cpu-limit", o.AgentCPULimit))
	set(&res.Limits, corev1.ResourceMemory, quantity("agent-memory-limit", o.AgentMemoryLimit))
	if res.Requests == nil && res.Limits == nil {
		// All four flags "": keep it that way rather than fall back to the defaults.
		res.Requests = corev1.ResourceList{}
	}
	agent := webhooks.AgentConfig{
		Image:           o.AgentImage,
		ImagePullPolicy: corev1.PullPolicy(o.AgentImagePullPolicy),
		Resources:       res,
		SharedDir:       o.AgentSharedDir,
		HTTPPort:        int32(o.AgentHTTPPort),
		RunAsUser:       o.AgentRunAsUser,

		InsecureRegistries: o.InsecureRegistries,
		Trust:              o.Trust,
	}.WithDefaults()
	if err := agent.Validate(); err != nil {
		errs = append(errs, err)
	}

	svc := fmt.Sprintf("%s.%s.svc", o.ServiceName, o.Namespace)
	cert := o.Cert
	cert.Mode = webhooks.CertMode(o.CertMode)
	cert.Secret = types.NamespacedName{Namespace: o.Namespace, Name: o.CertSecret}
	cert.CertDir = o.CertDir
	cert.DNSNames = append([]string{svc, svc + ".cluster.local"}, o.ExtraDNSNames...)
	cert.MutatingConfigName, cert.ValidatingConfigName = webhooks.MutatingConfigName, webhooks.ValidatingConfigName
	certs, err := webhooks.NewServingCerts(cert)
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &webhookSetup{opts: o, agent: agent, certs: certs}, nil
}

// server is the manager's webhook server, or nil (the manager's lazy default, never started
// because nothing registers on it) when webhooks are disabled.
func (w *webhookSetup) server() webhook.Server {
	if w == nil {
		return nil
	}
	return webhook.NewServer(webhook.Options{
		Host:    w.opts.Host,
		Port:    w.opts.Port,
		CertDir: w.opts.CertDir,
		TLSOpts: []func(*tls.Config){
			w.certs.ConfigureTLS,
			// HTTP/2 stays off, as in kubebuilder's scaffold: the API server speaks HTTP/1.1
			// to webhooks, and HTTP/2 brought the Rapid Reset and stream-cancel CVEs.
			func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} },
		},
	})
}

// setup registers the webhooks and the certificate management on mgr, and makes the manager
// ready only once the webhook server completes TLS handshakes (so a Service never sends the API
// server to a replica without a certificate).
func (w *webhookSetup) setup(ctx context.Context, mgr ctrl.Manager) error {
	if w == nil {
		return nil
	}
	if err := w.certs.SetupWithManager(ctx, mgr); err != nil {
		return fmt.Errorf("webhook certificates: %w", err)
	}
	if err := webhooks.SetupWithManager(mgr, w.agent); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("webhook-server", mgr.GetWebhookServer().StartedChecker()); err != nil {
		return fmt.Errorf("add webhook ready check: %w", err)
	}
	ctrl.LoggerFrom(ctx).Info("webhooks enabled", "port", w.opts.Port, "certMode", w.opts.CertMode,
		"agentImage", w.agent.Image, "agentArgs", strings.Join(w.agent.Args(w.agent), " "))
	return nil
}
