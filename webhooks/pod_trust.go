package webhooks

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/splice-dev/splice/sidecar"
)

// ensureTrustPolicy gives the agent the trust policy that covers the pod's namespace
// (AgentConfig.Trust, the manager's --trust-policy): the policy, encoded, in the agent's
// $SPLICE_TRUST_POLICY, so the agent pulls only artifacts one of its keys signed. The value is
// always the webhook's: whatever the pod spec carried under that name is replaced (covered
// namespace) or removed (namespace no policy covers), so a pod creator can neither weaken nor
// forge it. Pod env is immutable after creation, and the guard webhook refuses an agent
// container added by an ephemeral-container update.
//
// The namespace is the pod's; Handle fills it from the admission request when the pod omits
// it. A pod without one, while policies are configured, is refused rather than left unchecked.
func ensureTrustPolicy(pod *corev1.Pod, in *injection) error {
	agent, err := injectedAgent(pod, "give the trust policy to")
	if err != nil {
		return err
	}
	agent.Env = slices.DeleteFunc(agent.Env, func(e corev1.EnvVar) bool { return e.Name == sidecar.EnvTrustPolicy })
	if in.agent.Trust == nil || len(in.agent.Trust.Policies) == 0 {
		return nil
	}
	if pod.Namespace == "" {
		return fmt.Errorf("the pod has no namespace, so no trust policy can be chosen for its agent")
	}
	p := in.agent.Trust.For(pod.Namespace)
	if p == nil {
		return nil
	}
	enc, err := p.Encode()
	if err != nil {
		return fmt.Errorf("trust policy for namespace %s: %w", pod.Namespace, err)
	}
	agent.Env = append(agent.Env, corev1.EnvVar{Name: sidecar.EnvTrustPolicy, Value: enc})
	return nil
}
