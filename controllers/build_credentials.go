package controllers

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

// ReasonCredentialsNotAllowed: a Secret the spec names for a build (git secretRef or
// pushSecretRef) is missing or not labelled splice.dev/build-credentials=true.
const ReasonCredentialsNotAllowed = "CredentialsNotAllowed"

// The manager reads the labels of the Secrets a build would mount with a metadata-only GET,
// uncached (no list or watch of Secrets). It reads a Secret's data in one case only: with a
// signing key (--signing-key), the push Secret of a finished build, to push the signature
// beside the artifact with the same credentials (pushKeychain); RBAC cannot grant metadata
// alone, so `get` on Secrets is granted either way.
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get

// checkCredentials returns why the spec's build Secrets may not be used ("" when they may):
// each must exist and carry LabelBuildCredentials=true, so an editor of a CompilerVersion
// can hand a build only credentials their owner released to builds. An error is an API
// failure, retried.
func (r *BuildReconciler) checkCredentials(ctx context.Context, cv *splicev1.CompilerVersion) (string, error) {
	var refs []struct{ field, name string }
	if g := cv.Spec.Plugin.Source.Git; g != nil && g.SecretRef != nil {
		refs = append(refs, struct{ field, name string }{"spec.plugin.source.git.secretRef", g.SecretRef.Name})
	}
	if ps := cv.Spec.Plugin.PushSecretRef; ps != nil {
		refs = append(refs, struct{ field, name string }{"spec.plugin.pushSecretRef", ps.Name})
	}
	var refused []string
	for _, ref := range refs {
		m := &metav1.PartialObjectMetadata{}
		m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
		err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: cv.Namespace, Name: ref.name}, m)
		switch {
		case apierrors.IsNotFound(err):
			refused = append(refused, fmt.Sprintf("%s: Secret %s/%s does not exist", ref.field, cv.Namespace, ref.name))
		case err != nil:
			return "", fmt.Errorf("read the labels of Secret %s/%s (%s): %w", cv.Namespace, ref.name, ref.field, err)
		case m.Labels[splicev1.LabelBuildCredentials] != "true":
			refused = append(refused, fmt.Sprintf("%s: Secret %s/%s is not labelled %s=true; its owner labels it to let builds use it",
				ref.field, cv.Namespace, ref.name, splicev1.LabelBuildCredentials))
		}
	}
	if len(refused) == 0 {
		return "", nil
	}
	return strings.Join(refused, "; ") + " (no build was started)", nil
}

// DefaultCredentialsRecheck is how soon a build refused for its Secrets looks at them again.
const DefaultCredentialsRecheck = time.Minute

// refuseBuild records a refusal to start a build; the reconcile looks again after
// CredentialsRecheck.
func (r *BuildReconciler) refuseBuild(s *buildScope, reason, msg string) {
	s.decision = decided(nil, metav1.ConditionFalse, reason, msg)
	s.onChange = func() {
		buildResults.WithLabelValues("git", "refused", reason).Inc()
		r.Recorder.Eventf(s.cv, nil, corev1.EventTypeWarning, reason, "Build", "%s", clipMessage(msg, maxEventNote))
	}
}
