package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	wq "k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

// CompilerVersionReconciler keeps a CompilerVersion's status in step with the pods it targets.
type CompilerVersionReconciler struct {
	client.Client
	Recorder recorder.EventRecorder
	// Clock is the time source; tests may pin it.
	Clock clock.PassiveClock

	// MaxConcurrentReconciles is how many CompilerVersions are reconciled at once (default 4);
	// one CompilerVersion is never reconciled twice at the same time.
	MaxConcurrentReconciles int

	swaps swapCounter
	// core calls what the controller-runtime client cannot tune (the Eviction API, once).
	core kubernetes.Interface
}

type workqueue = wq.TypedRateLimitingInterface[reconcile.Request]

// scope carries what one reconcile observed, from phase to phase.
type scope struct {
	cv *splicev1.CompilerVersion
	// pods are the targeted pods' states, sorted by name.
	pods []podState
	// podObjects are the targeted pods by name, as listed.
	podObjects map[string]*corev1.Pod
	// selectorErr is set when spec.selector cannot be used; pods is then empty.
	selectorErr error
	// plan is the rollout decision; nil when the selector is unusable.
	plan *rolloutPlan
}

// +kubebuilder:rbac:groups=splice.dev,resources=compilerversions,verbs=get;list;watch
// +kubebuilder:rbac:groups=splice.dev,resources=compilerversions/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile reads the CompilerVersion and its pods, computes status and writes it once.
func (r *CompilerVersionReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	cv := &splicev1.CompilerVersion{}
	if err := r.Get(ctx, req.NamespacedName, cv); err != nil {
		if apierrors.IsNotFound(err) {
			forgetRollout(req.Namespace, req.Name)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	log := logf.FromContext(ctx).WithValues("compilerversion", klog.KObj(cv), "generation", cv.Generation)
	ctx = logf.IntoContext(ctx, log)

	s := &scope{cv: cv, podObjects: map[string]*corev1.Pod{}}
	if err := r.observeTargets(ctx, s); err != nil {
		return ctrl.Result{}, err
	}
	if s.selectorErr == nil {
		r.planRollout(ctx, s)
	}
	// Record the decision before acting on it: if the status write fails (a conflict), no pod
	// has been touched and the next pass decides again from fresh state; if acting fails, the
	// recorded decision is acted on again. The other order can lose a decision whose evidence
	// the action erases (a rollback makes the failed pods swap back and report Ready).
	if err := r.writeStatus(ctx, s); err != nil {
		return conflictRetry(err)
	}
	if s.plan == nil {
		return ctrl.Result{}, nil
	}
	requeue, err := r.applyRollout(ctx, s)
	if err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: minPositive(requeue, s.plan.requeueAfter)}, nil
}

// minPositive returns the shorter of two requeue delays, ignoring zeros.
func minPositive(a, b time.Duration) time.Duration {
	if a == 0 || (b != 0 && b < a) {
		return b
	}
	return a
}

// observeTargets resolves the selector to the targeted pods.
func (r *CompilerVersionReconciler) observeTargets(ctx context.Context, s *scope) error {
	sel, err := metav1.LabelSelectorAsSelector(&s.cv.Spec.Selector)
	if err == nil && sel.Empty() {
		err = fmt.Errorf("the selector is empty and would target every pod")
	}
	if err != nil {
		// The schema cannot check everything (an operator's spelling, a value's syntax); say
		// so in status and an Event, and wait for the user to fix the spec.
		s.selectorErr = err
		r.Recorder.Eventf(s.cv, nil, corev1.EventTypeWarning, splicev1.ReasonInvalidSelector, "ResolveTargets",
			"spec.selector cannot be used: %v", err)
		return nil
	}
	var list corev1.PodList
	if err := r.List(ctx, &list, client.InNamespace(s.cv.Namespace), client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return fmt.Errorf("list pods matching %s: %w", sel, err)
	}
	for i := range list.Items {
		pod := &list.Items[i]
		if targetable(pod) {
			st := observePod(pod)
			r.swaps.observe(pod.Namespace, pod.UID, st.report)
			s.pods = append(s.pods, st)
			s.podObjects[pod.Name] = pod
		}
	}
	logf.FromContext(ctx).V(1).Info("resolved targets", "selector", sel.String(), "pods", len(s.pods))
	return nil
}

// writeStatus patches status once, with optimistic locking so a concurrent writer causes a
// conflict (retried by the workqueue) instead of a lost update; an unchanged status is not
// written at all.
func (r *CompilerVersionReconciler) writeStatus(ctx context.Context, s *scope) error {
	now := metav1.NewTime(r.Clock.Now())
	next := computeStatus(s.cv, s.pods, s.selectorErr, s.plan, now)
	if equality.Semantic.DeepEqual(s.cv.Status, next) {
		recordRollout(s.cv)
		return nil
	}
	orig := s.cv.DeepCopy()
	prevReady := apimeta.FindStatusCondition(orig.Status.Conditions, splicev1.ConditionReady)
	prevPhase := orig.Status.Phase
	s.cv.Status = next
	if err := r.Status().Patch(ctx, s.cv, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("patch status: %w", err)
	}
	recordRollout(s.cv)
	if s.plan != nil && next.Phase != prevPhase && s.plan.message != "" {
		typ := corev1.EventTypeNormal
		if next.Phase == splicev1.PhaseRolledBack || next.Phase == splicev1.PhaseDegraded {
			typ = corev1.EventTypeWarning
		}
		r.Recorder.Eventf(s.cv, nil, typ, string(next.Phase), "Rollout", "%s", s.plan.message)
	}
	if cur := apimeta.FindStatusCondition(s.cv.Status.Conditions, splicev1.ConditionReady); cur != nil && (prevReady == nil || prevReady.Status != cur.Status || prevReady.Reason != cur.Reason) {
		r.Recorder.Eventf(s.cv, nil, eventType(cur), cur.Reason, "UpdateStatus", "%s", cur.Message)
	}
	logf.FromContext(ctx).V(1).Info("status written", "targeted", next.Targeted, "updated", next.Updated, "ready", next.Ready)
	return nil
}

func eventType(c *metav1.Condition) string {
	if c.Status == metav1.ConditionTrue || c.Reason == splicev1.ReasonAwaitingArtifact || c.Reason == splicev1.ReasonPodsNotUpdated {
		return corev1.EventTypeNormal
	}
	return corev1.EventTypeWarning
}

// SetupWithManager registers the reconciler. The CompilerVersion watch is filtered to spec
// (generation) and annotation changes, so status writes do not loop; pods are watched and
// mapped to the CompilerVersions whose selectors match them, before and after a label change.
func (r *CompilerVersionReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.MaxConcurrentReconciles == 0 {
		r.MaxConcurrentReconciles = 4
	}
	core, err := kubernetes.NewForConfig(mgr.GetConfig())
	if err != nil {
		return fmt.Errorf("create clientset: %w", err)
	}
	r.core = core
	return ctrl.NewControllerManagedBy(mgr).
		Named("compilerversion").
		WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrentReconciles}).
		For(&splicev1.CompilerVersion{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}, artifactChanged))).
		Watches(&corev1.Pod{}, handler.Funcs{
			CreateFunc: func(ctx context.Context, e event.CreateEvent, q workqueue) {
				r.enqueueFor(ctx, q, e.Object.(*corev1.Pod))
			},
			UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q workqueue) {
				oldPod, newPod := e.ObjectOld.(*corev1.Pod), e.ObjectNew.(*corev1.Pod)
				if !podChangeMatters(oldPod, newPod) {
					return
				}
				r.enqueueFor(ctx, q, oldPod, newPod)
			},
			DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q workqueue) {
				if pod, ok := e.Object.(*corev1.Pod); ok {
					r.swaps.forget(pod.UID)
					r.enqueueFor(ctx, q, pod)
				}
			},
		}).
		Complete(r)
}

// artifactChanged passes the status writes of the build controller that start a rollout: a new
// artifact, or a change of the Built condition.
var artifactChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		oldCV, ok1 := e.ObjectOld.(*splicev1.CompilerVersion)
		newCV, ok2 := e.ObjectNew.(*splicev1.CompilerVersion)
		if !ok1 || !ok2 {
			return false
		}
		if (oldCV.Status.Artifact == nil) != (newCV.Status.Artifact == nil) ||
			(newCV.Status.Artifact != nil && oldCV.Status.Artifact.Digest != newCV.Status.Artifact.Digest) {
			return true
		}
		ob := apimeta.FindStatusCondition(oldCV.Status.Conditions, splicev1.ConditionBuilt)
		nb := apimeta.FindStatusCondition(newCV.Status.Conditions, splicev1.ConditionBuilt)
		return (ob == nil) != (nb == nil) || (nb != nil && (ob.Status != nb.Status || ob.ObservedGeneration != nb.ObservedGeneration))
	},
	CreateFunc:  func(event.CreateEvent) bool { return false },
	DeleteFunc:  func(event.DeleteEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
}

// podChangeMatters filters pod updates to what status depends on: labels (membership), phase and
// deletion (targetable), the plugin-ready condition and the report annotation.
func podChangeMatters(oldPod, newPod *corev1.Pod) bool {
	if !labels.Equals(oldPod.Labels, newPod.Labels) || targetable(oldPod) != targetable(newPod) {
		return true
	}
	if oldPod.Annotations[splicev1.AnnotationReport] != newPod.Annotations[splicev1.AnnotationReport] {
		return true
	}
	return pluginReady(oldPod) != pluginReady(newPod)
}

// enqueueFor queues every CompilerVersion in the pods' namespace whose selector matches any of
// them (old and new label sets, so a pod leaving a selection is seen too).
func (r *CompilerVersionReconciler) enqueueFor(ctx context.Context, q workqueue, pods ...*corev1.Pod) {
	var list splicev1.CompilerVersionList
	if err := r.List(ctx, &list, client.InNamespace(pods[0].Namespace)); err != nil {
		logf.FromContext(ctx).Error(err, "list CompilerVersions for a pod event", "pod", klog.KObj(pods[0]))
		return
	}
	for i := range list.Items {
		cv := &list.Items[i]
		sel, err := metav1.LabelSelectorAsSelector(&cv.Spec.Selector)
		if err != nil {
			continue
		}
		for _, p := range pods {
			if sel.Matches(labels.Set(p.Labels)) {
				q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: cv.Namespace, Name: cv.Name}})
				break
			}
		}
	}
}

// conflictRetryAfter is how soon a reconcile whose status write lost a race runs again.
const conflictRetryAfter = 100 * time.Millisecond

// conflictRetry turns a status write that lost an optimistic-lock race (the build and the
// rollout reconcilers both write status, and so does a newer pass) into a quiet, quick retry:
// such a conflict is routine and must not be logged as a reconciler error. Other errors stay.
func conflictRetry(err error) (ctrl.Result, error) {
	if apierrors.IsConflict(err) {
		return ctrl.Result{RequeueAfter: conflictRetryAfter}, nil
	}
	return ctrl.Result{}, err
}
