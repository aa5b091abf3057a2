// Package v1alpha1 contains the splice.dev/v1alpha1 API: the CompilerVersion resource and the
// pod protocol (annotations, condition and report) that the controllers, the admission webhook
// and the agent sidecar share.
//
// It may import only Kubernetes API machinery; nothing here talks to a cluster.
//
// +kubebuilder:object:generate=true
// +groupName=splice.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "splice.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the API's types with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the API's types to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
