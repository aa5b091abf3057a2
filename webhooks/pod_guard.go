package webhooks

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/klog/v2"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// The UPDATE guard: injection runs only when a pod is created, so without a second look anyone
// allowed to update pods could take back what it set up — point the agent at another image,
// or add an ephemeral container that reads the agent's token or the plugin files. It is a
// validating webhook on pods and pods/ephemeralcontainers UPDATE that fails closed, in every
// namespace but the control plane's. Its matchConditions send it only updates of an injected
// pod (the old pod has the splice-agent init container) that change the pod's spec: the
// metadata-only updates that make up nearly all pod writes (the rollout controller's
// annotations, labels, finalizers) never reach it, so a manager outage blocks none of them.
//
// +kubebuilder:webhook:path=/validate--v1-pod,mutating=false,failurePolicy=fail,sideEffects=None,groups="",resources=pods;pods/ephemeralcontainers,verbs=update,versions=v1,name=guard.inject.splice.dev,admissionReviewVersions=v1,timeoutSeconds=5,serviceName=splice-webhook-service,serviceNamespace=splice-system,patch=`{"namespaceSelector":{"matchExpressions":[{"key":"kubernetes.io/metadata.name","operator":"NotIn","values":["kube-system","splice-system"]}]},"matchConditions":[{"name":"injected-pod-spec-changes","expression":"has(oldObject.spec.initContainers) && oldObject.spec.initContainers.exists(c, c.name == 'splice-agent') && object.spec != oldObject.spec"}]}`

// PodGuardPath is where the Pod UPDATE guard is served.
const PodGuardPath = "/validate--v1-pod"

// podGuardAllowed says what an update of an injected pod may do, for every refusal.
const podGuardAllowed = "on an injected pod an update may change the app containers (their images) and add ephemeral containers that neither mount " +
	SharedVolumeName + " or " + AgentTokenVolumeName + " nor target the " + AgentContainerName +
	" container; to change the agent or its volumes, recreate the pod, and the webhook injects the configured agent"

// PodGuard is the Pod UPDATE guard: it refuses updates of an injected pod that change the
// agent container, remove or re-point what the injection added (the shared volume, the agent's
// token volume and their mounts), or add an ephemeral container that could read the agent's
// token or the shared volume.
type PodGuard struct {
	// Decoder decodes the admission request's old and new pod.
	Decoder admission.Decoder
}

var _ admission.Handler = &PodGuard{}

// Handle implements admission.Handler.
func (h *PodGuard) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Operation != admissionv1.Update {
		return admission.Allowed("splice guards only updates")
	}
	pod, old := &corev1.Pod{}, &corev1.Pod{}
	if err := h.Decoder.Decode(req, pod); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decode pod: %w", err))
	}
	if err := h.Decoder.DecodeRaw(req.OldObject, old); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decode the pod before the update: %w", err))
	}
	problems := GuardUpdate(old, pod)
	if len(problems) == 0 {
		return admission.Allowed("")
	}
	logf.FromContext(ctx).Info("refusing an update of an injected pod", "pod", klog.KRef(req.Namespace, req.Name),
		"subResource", req.SubResource, "user", req.UserInfo.Username, "problems", problems)
	return admission.Denied("splice: " + strings.Join(problems, "; ") + ": " + podGuardAllowed)
}

// GuardUpdate lists what an update from old to pod does that an injected pod must not undergo;
// none for a pod that was not injected (old has no agent container).
func GuardUpdate(old, pod *corev1.Pod) []string {
	oldAgent := findInit(old, AgentContainerName)
	if oldAgent == nil {
		return nil
	}
	var problems []string
	switch agent := findInit(pod, AgentContainerName); {
	case agent == nil:
		problems = append(problems, fmt.Sprintf("the update removes the %s container", AgentContainerName))
	case agent.Image != oldAgent.Image:
		problems = append(problems, fmt.Sprintf("the update changes the %s container's image from %q to %q", AgentContainerName, oldAgent.Image, agent.Image))
	case !equality.Semantic.DeepEqual(withoutResources(*agent), withoutResources(*oldAgent)):
		problems = append(problems, fmt.Sprintf("the update changes the %s container", AgentContainerName))
	}
	for _, name := range []string{SharedVolumeName, AgentTokenVolumeName, RegistryCredentialsVolumeName} {
		problems = append(problems, volumeChanges(old, pod, name)...)
	}
	return append(problems, ephemeralProblems(old, pod)...)
}

// withoutResources is c without its resources, which in-place resize may change.
func withoutResources(c corev1.Container) corev1.Container {
	c.Resources = corev1.ResourceRequirements{}
	return c
}

// volumeChanges reports the injected volume name removed or changed, and any change to the
// mounts of it by the pod's (non-ephemeral) containers.
func volumeChanges(old, pod *corev1.Pod, name string) []string {
	i := slices.IndexFunc(old.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == name })
	if i < 0 {
		return nil
	}
	var problems []string
	switch j := slices.IndexFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == name }); {
	case j < 0:
		problems = append(problems, fmt.Sprintf("the update removes volume %q, which Splice injected", name))
	case !equality.Semantic.DeepEqual(old.Spec.Volumes[i], pod.Spec.Volumes[j]):
		problems = append(problems, fmt.Sprintf("the update changes volume %q, which Splice injected", name))
	}
	before, after := mountsOf(allContainers(old), name), mountsOf(allContainers(pod), name)
	for c, m := range before {
		if n, ok := after[c]; !ok || !equality.Semantic.DeepEqual(m, n) {
			problems = append(problems, fmt.Sprintf("the update removes or re-points container %q's mount of volume %q", c, name))
		}
	}
	for c := range after {
		if _, ok := before[c]; !ok {
			problems = append(problems, fmt.Sprintf("the update mounts volume %q into container %q", name, c))
		}
	}
	slices.Sort(problems)
	return problems
}

// mountsOf maps each container that mounts volume name to that mount.
func mountsOf(cs []corev1.Container, name string) map[string]corev1.VolumeMount {
	out := map[string]corev1.VolumeMount{}
	for _, c := range cs {
		if i := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == name }); i >= 0 {
			out[c.Name] = c.VolumeMounts[i]
		}
	}
	return out
}

// ephemeralProblems reports the ephemeral containers the update adds that could read the
// agent's credentials or the plugin files: a mount of the shared or the token volume, or the
// agent as target (which shares the agent's process namespace, and through /proc its files).
func ephemeralProblems(old, pod *corev1.Pod) []string {
	var problems []string
	for _, e := range pod.Spec.EphemeralContainers {
		if slices.ContainsFunc(old.Spec.EphemeralContainers, func(o corev1.EphemeralContainer) bool { return o.Name == e.Name }) {
			continue
		}
		for _, m := range e.VolumeMounts {
			if m.Name == SharedVolumeName || m.Name == AgentTokenVolumeName || m.Name == RegistryCredentialsVolumeName {
				problems = append(problems, fmt.Sprintf("ephemeral container %q mounts volume %q", e.Name, m.Name))
			}
		}
		if e.TargetContainerName == AgentContainerName {
			problems = append(problems, fmt.Sprintf("ephemeral container %q targets the %s container, whose process namespace holds its token", e.Name, AgentContainerName))
		}
	}
	return problems
}

// injectedAgent is the pod's agent container, for a mutator that needs the agent step's
// output; the error says what the mutator wanted to do with it.
func injectedAgent(pod *corev1.Pod, what string) (*corev1.Container, error) {
	if c := findInit(pod, AgentContainerName); c != nil {
		return c, nil
	}
	return nil, fmt.Errorf("no %s container to %s", AgentContainerName, what)
}

// findInit is the pod's init container name, or nil.
func findInit(pod *corev1.Pod, name string) *corev1.Container {
	i := slices.IndexFunc(pod.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == name })
	if i < 0 {
		return nil
	}
	return &pod.Spec.InitContainers[i]
}
