// Package admission proves, against a real kube-apiserver (envtest), what the cluster's
// admission does as config/ installs it, without a manager running:
//
//   - the ValidatingAdmissionPolicy splice-agent-own-pod (config/policy/agent_policy.yaml), as
//     a real bound service-account token of a ServiceAccount bound to the agent's Role
//     (config/rbac/agent_role.yaml): it may write its own pod's report annotation and
//     plugin-ready condition and nothing else, and a token bound to no pod may write nothing;
//   - the policy splice-manager-limits (config/policy/manager_policy.yaml), as the manager's
//     ServiceAccount (impersonated) holding config/rbac's ClusterRole: splice.dev/ annotations
//     on pods only, build Jobs of the build ServiceAccount without host access only, and writes
//     to Splice's own webhook configurations only;
//   - the webhook configurations (config/webhook/manifests.yaml, failurePolicy Fail) with no
//     webhook server: opted-in pods are refused with an error naming the Splice webhook, and
//     every other pod, and every pod of kube-system and of the manager's namespace, is created.
//
// Nothing here is simulated: the tokens come from the TokenRequest API and are authenticated by
// the API server, the policies and RBAC are the files under config/, and each refusal is
// checked to come from the rule that should refuse it.
package admission
