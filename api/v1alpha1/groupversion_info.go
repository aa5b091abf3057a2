// Package v1alpha1 contains the splice.dev/v1alpha1 API: the CompilerVersion resource and the
// pod protocol (annotations, condition and report) that the controllers, the admission webhook
// and the agent sidecar share, and the rules about them that more than one of those apply: the
// spec's defaults, what the control annotations mean, the rollout conditions' reasons, and the
// codecs of the pod's desired-state and report annotations.
//
// It may import only Kubernetes API machinery and package host/control, the standard-library-only
// wire contract of the host library that owns the digest rule; nothing here talks to a cluster.
//
// +kubebuilder:object:generate=true
// +groupName=splice.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "splice.dev", Version: "v1alpha1"}

	// SchemeGroupVersion is GroupVersion under the name that client-go's conventions (and
	// generated clients, listers and informers) look for.
	SchemeGroupVersion = GroupVersion

	// SchemeBuilder registers the API's types with a runtime.Scheme. It is apimachinery's own
	// builder rather than controller-runtime's, so that importing the API does not import
	// controller-runtime.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the API's types to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// addKnownTypes registers the API's root types, and the meta types (options, status, watch
// events) every group version needs, under GroupVersion.
func addKnownTypes(scheme *runtime.Scheme) error {
	scheme.AddKnownTypes(GroupVersion, &CompilerVersion{}, &CompilerVersionList{})
	metav1.AddToGroupVersion(scheme, GroupVersion)
	return nil
}
