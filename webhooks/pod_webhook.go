package webhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

// The two entries below send pods to the same handler; they differ only in how the pod opted in.
// Both are scoped so tightly that nothing else ever reaches the webhook, which is what lets them
// fail closed (see the package documentation for the trade-off):
//   - pod-label: the pod carries splice.dev/inject=true, in any namespace but the control plane's;
//   - namespace-label: the pod has no splice.dev/inject label at all and its namespace carries
//     splice.dev/inject=true ("false", or any other value, on the pod keeps it out).
// kube-system and splice-system are excluded so that the manager itself, and what it runs on, can
// always be recreated while the manager is down.
//
// +kubebuilder:webhook:path=/mutate--v1-pod,mutating=true,failurePolicy=fail,sideEffects=None,groups="",resources=pods,verbs=create,versions=v1,name=pod-label.inject.splice.dev,admissionReviewVersions=v1,timeoutSeconds=5,reinvocationPolicy=IfNeeded,serviceName=splice-webhook-service,serviceNamespace=splice-system,patch=`{"objectSelector":{"matchExpressions":[{"key":"splice.dev/inject","operator":"In","values":["true"]}]},"namespaceSelector":{"matchExpressions":[{"key":"kubernetes.io/metadata.name","operator":"NotIn","values":["kube-system","splice-system"]}]}}`
// +kubebuilder:webhook:path=/mutate--v1-pod,mutating=true,failurePolicy=fail,sideEffects=None,groups="",resources=pods,verbs=create,versions=v1,name=namespace-label.inject.splice.dev,admissionReviewVersions=v1,timeoutSeconds=5,reinvocationPolicy=IfNeeded,serviceName=splice-webhook-service,serviceNamespace=splice-system,patch=`{"objectSelector":{"matchExpressions":[{"key":"splice.dev/inject","operator":"DoesNotExist"}]},"namespaceSelector":{"matchExpressions":[{"key":"splice.dev/inject","operator":"In","values":["true"]},{"key":"kubernetes.io/metadata.name","operator":"NotIn","values":["kube-system","splice-system"]}]}}`

// PodInjectPath is where the Pod mutator is served.
const PodInjectPath = "/mutate--v1-pod"

// mirrorPodAnnotation marks the API copies of static pods, which cannot be changed.
const mirrorPodAnnotation = "kubernetes.io/config.mirror"

// PodInjector is the one Pod mutating webhook: for opted-in pods it runs the feature mutators
// (podMutators, in their documented order) and answers with a JSON patch, or with no patch at
// all when the pod already is as they would make it.
type PodInjector struct {
	// Agent is the defaulted, valid agent configuration.
	Agent AgentConfig
	// Reader reads namespaces straight from the API server: a namespace labelled a moment ago
	// must already count, and a cache could still hold the old labels.
	Reader client.Reader
	// Decoder decodes the admission request's pod.
	Decoder admission.Decoder
}

var _ admission.Handler = &PodInjector{}

// Handle implements admission.Handler.
func (h *PodInjector) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Operation != admissionv1.Create {
		return admission.Allowed("splice injects only at creation")
	}
	pod := &corev1.Pod{}
	if err := h.Decoder.Decode(req, pod); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decode pod: %w", err))
	}
	name := pod.Name
	if name == "" {
		name = pod.GenerateName + "*"
	}
	log := logf.FromContext(ctx).WithValues("pod", klog.KRef(req.Namespace, name))
	ctx = logf.IntoContext(ctx, log)

	if _, mirror := pod.Annotations[mirrorPodAnnotation]; mirror {
		return admission.Allowed("splice does not inject into mirror pods")
	}
	in, why, err := h.optedIn(ctx, req.Namespace, pod)
	if err != nil {
		// A denial with 500 makes the pod's controller retry, rather than admit a pod that
		// should have had the agent.
		return admission.Errored(http.StatusInternalServerError, err)
	}
	if !in {
		log.V(1).Info("pod not opted in; left alone", "reason", why)
		return admission.Allowed(why)
	}

	// The pod's namespace decides its trust policy; a pod created through its namespace's URL
	// may leave metadata.namespace empty. Set on both sides, it adds nothing to the patch.
	if pod.Namespace == "" {
		pod.Namespace = req.Namespace
	}
	mutated := pod.DeepCopy()
	warnings, err := Inject(mutated, h.Agent)
	if err != nil {
		log.Info("refusing pod that cannot be injected", "reason", err.Error())
		return admission.Denied("splice: cannot inject the agent: " + err.Error()).WithWarnings(warnings...)
	}
	if equality.Semantic.DeepEqual(pod, mutated) {
		log.V(1).Info("pod already injected; no patch")
		return admission.Allowed("already injected").WithWarnings(warnings...)
	}
	patch, err := diff(pod, mutated)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	log.V(1).Info("injecting agent", "operations", len(patch), "appContainers", pod.Annotations[splicev1.AnnotationAppContainers])
	return admission.Patched("agent injected", patch...).WithWarnings(warnings...)
}

// optedIn applies the opt-in rule again, whatever the webhook configuration's selectors let
// through, so that a mis-edited configuration can never make Splice touch other pods: a pod
// label "true" opts in, any other pod label value opts out, and without a pod label the
// namespace's label must be "true".
func (h *PodInjector) optedIn(ctx context.Context, namespace string, pod *corev1.Pod) (bool, string, error) {
	if v, ok := pod.Labels[splicev1.LabelInject]; ok {
		if v == "true" {
			return true, "", nil
		}
		return false, fmt.Sprintf("pod label %s=%q", splicev1.LabelInject, v), nil
	}
	ns := &corev1.Namespace{}
	if err := h.Reader.Get(ctx, client.ObjectKey{Name: namespace}, ns); err != nil {
		return false, "", fmt.Errorf("read namespace %s to decide whether to inject the Splice agent: %w", namespace, err)
	}
	if ns.Labels[splicev1.LabelInject] == "true" {
		return true, "", nil
	}
	return false, fmt.Sprintf("neither the pod nor namespace %s is labelled %s=true", namespace, splicev1.LabelInject), nil
}

// diff is the JSON patch from the decoded pod to the mutated one. Both sides are marshalled from
// the same Go type, so the patch holds only the mutators' changes: diffing against the raw
// request instead would also remove any field this build's k8s.io/api does not know.
func diff(from, to *corev1.Pod) ([]jsonpatch.JsonPatchOperation, error) {
	a, err := json.Marshal(from)
	if err != nil {
		return nil, fmt.Errorf("marshal pod: %w", err)
	}
	b, err := json.Marshal(to)
	if err != nil {
		return nil, fmt.Errorf("marshal injected pod: %w", err)
	}
	ops, err := jsonpatch.CreatePatch(a, b)
	if err != nil {
		return nil, fmt.Errorf("compute injection patch: %w", err)
	}
	return ops, nil
}
