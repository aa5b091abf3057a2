package webhooks

import (
	"fmt"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

// SetupWithManager registers the Pod mutator, the Pod UPDATE guard and the CompilerVersion
// defaulter and validator on mgr's webhook server. agent is defaulted and validated here, so a bad flag stops the manager
// at start-up instead of failing every pod creation.
func SetupWithManager(mgr ctrl.Manager, agent AgentConfig) error {
	agent = agent.WithDefaults()
	if err := agent.Validate(); err != nil {
		return fmt.Errorf("agent sidecar configuration: %w", err)
	}
	mgr.GetWebhookServer().Register(PodInjectPath, &admission.Webhook{Handler: &PodInjector{
		Agent:   agent,
		Reader:  mgr.GetAPIReader(),
		Decoder: admission.NewDecoder(mgr.GetScheme()),
	}})
	mgr.GetWebhookServer().Register(PodGuardPath, &admission.Webhook{Handler: &PodGuard{
		Decoder: admission.NewDecoder(mgr.GetScheme()),
	}})
	cv := &CompilerVersionWebhook{Reader: mgr.GetAPIReader()}
	if err := ctrl.NewWebhookManagedBy(mgr, &splicev1.CompilerVersion{}).
		WithDefaulter(cv).
		WithValidator(cv).
		Complete(); err != nil {
		return fmt.Errorf("register CompilerVersion webhooks: %w", err)
	}
	return nil
}
