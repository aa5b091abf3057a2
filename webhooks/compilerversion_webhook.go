package webhooks

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

// Both CompilerVersion webhooks fail closed: an outage blocks only writes of CompilerVersions,
// which do nothing without the manager anyway, and never anything else (deletes are not sent).
//
// +kubebuilder:webhook:path=/mutate-splice-dev-v1alpha1-compilerversion,mutating=true,failurePolicy=fail,sideEffects=None,groups=splice.dev,resources=compilerversions,verbs=create;update,versions=v1alpha1,name=default.compilerversions.splice.dev,admissionReviewVersions=v1,timeoutSeconds=10,serviceName=splice-webhook-service,serviceNamespace=splice-system
// +kubebuilder:webhook:path=/validate-splice-dev-v1alpha1-compilerversion,mutating=false,failurePolicy=fail,sideEffects=None,groups=splice.dev,resources=compilerversions,verbs=create;update,versions=v1alpha1,name=validate.compilerversions.splice.dev,admissionReviewVersions=v1,timeoutSeconds=10,serviceName=splice-webhook-service,serviceNamespace=splice-system

// CompilerVersionWebhook defaults and validates CompilerVersions for what the CRD schema cannot
// express: selectors overlapping another CompilerVersion's, changes during a rollout, and canary
// steps that go backwards.
type CompilerVersionWebhook struct {
	// Reader lists CompilerVersions straight from the API server: an overlap with one created a
	// moment ago must be caught, and a cache could miss it. (Two creates racing each other can
	// still both pass — admission is not a transaction — so the rollout controller must not
	// trust that selectors are disjoint either.)
	Reader client.Reader
}

var (
	_ admission.Defaulter[*splicev1.CompilerVersion] = &CompilerVersionWebhook{}
	_ admission.Validator[*splicev1.CompilerVersion] = &CompilerVersionWebhook{}
)

var compilerVersionGK = splicev1.GroupVersion.WithKind("CompilerVersion").GroupKind()

// Default implements admission.Defaulter.
func (w *CompilerVersionWebhook) Default(_ context.Context, cv *splicev1.CompilerVersion) error {
	DefaultCompilerVersion(cv)
	return nil
}

// ValidateCreate implements admission.Validator.
func (w *CompilerVersionWebhook) ValidateCreate(ctx context.Context, cv *splicev1.CompilerVersion) (admission.Warnings, error) {
	errs := validateSelector(cv)
	if len(errs) == 0 {
		more, err := w.overlaps(ctx, cv)
		if err != nil {
			return nil, err
		}
		errs = append(errs, more...)
	}
	errs = append(errs, validateStrategy(&cv.Spec)...)
	return nil, w.invalid(ctx, cv, errs)
}

// ValidateUpdate implements admission.Validator. Rules are checked only against what the update
// changes (validation ratcheting): an object stored before a rule existed, or left overlapping by
// a race, can still be aborted, annotated, or have its finalizers removed.
func (w *CompilerVersionWebhook) ValidateUpdate(ctx context.Context, old, cv *splicev1.CompilerVersion) (admission.Warnings, error) {
	if cv.DeletionTimestamp != nil {
		// Never stand in the way of a deletion finishing.
		return nil, nil
	}
	var errs field.ErrorList
	if !equality.Semantic.DeepEqual(old.Spec.Selector, cv.Spec.Selector) {
		errs = validateSelector(cv)
		if len(errs) == 0 {
			more, err := w.overlaps(ctx, cv)
			if err != nil {
				return nil, err
			}
			errs = append(errs, more...)
		}
	}
	if !equality.Semantic.DeepEqual(old.Spec.Strategy, cv.Spec.Strategy) {
		errs = append(errs, validateStrategy(&cv.Spec)...)
	}
	errs = append(errs, validateInFlight(old, cv)...)
	return nil, w.invalid(ctx, cv, errs)
}

// ValidateDelete implements admission.Validator; deletes are not sent to the webhook.
func (w *CompilerVersionWebhook) ValidateDelete(context.Context, *splicev1.CompilerVersion) (admission.Warnings, error) {
	return nil, nil
}

func (w *CompilerVersionWebhook) overlaps(ctx context.Context, cv *splicev1.CompilerVersion) (field.ErrorList, error) {
	var list splicev1.CompilerVersionList
	if err := w.Reader.List(ctx, &list, client.InNamespace(cv.Namespace)); err != nil {
		// Not a verdict on the object: the API server reports it as an internal error and
		// the client may retry.
		return nil, apierrors.NewInternalError(fmt.Errorf("list CompilerVersions in namespace %s to check for overlapping selectors: %w", cv.Namespace, err))
	}
	return validateNoOverlap(cv, list.Items), nil
}

func (w *CompilerVersionWebhook) invalid(ctx context.Context, cv *splicev1.CompilerVersion, errs field.ErrorList) error {
	if len(errs) == 0 {
		return nil
	}
	logf.FromContext(ctx).V(1).Info("refusing CompilerVersion", "compilerVersion", klog.KObj(cv), "errors", errs.ToAggregate().Error())
	return apierrors.NewInvalid(compilerVersionGK, cv.Name, errs)
}
