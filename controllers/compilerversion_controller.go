package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
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

	// PrometheusAllowlist is where canary analyses may send their Prometheus queries; the zero
	// value allows none (the manager's --prometheus-allowed-addresses).
	PrometheusAllowlist PrometheusAllowlist

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
	// foreign are the pods the selector matches that another CompilerVersion owns
	// (compilerversion_owners.go): left alone.
	foreign []foreignPod
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
	// the action erases (a rollback makes the failed pods swap back and report Ready). A
	// conflict (the build reconciler wrote its fields, or this one's cache had not caught up
	// with its own last write) is returned like any error: the workqueue retries it with its
	// rate-limited backoff.
	if err := r.writeStatus(ctx, s); err != nil {
		return ctrl.Result{}, err
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

// SetupWithManager registers the reconciler. The CompilerVersion watch is filtered to spec
// (generation) and annotation changes, so status writes do not loop; a CompilerVersion that is
// created, deleted or changes its spec also queues the others of its namespace (pod ownership);
// pods are watched and mapped to the CompilerVersions whose selectors match them, before and
// after a label change.
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
		// Which CompilerVersion owns a pod depends on the others of its namespace: one that
		// comes, goes or changes its selector may give pods to, or take them from, the rest.
		Watches(&splicev1.CompilerVersion{}, handler.Funcs{
			CreateFunc: func(ctx context.Context, e event.CreateEvent, q workqueue) { r.enqueueOthers(ctx, q, e.Object) },
			UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q workqueue) {
				if e.ObjectOld.GetGeneration() != e.ObjectNew.GetGeneration() {
					r.enqueueOthers(ctx, q, e.ObjectNew)
				}
			},
			DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q workqueue) { r.enqueueOthers(ctx, q, e.Object) },
		}).
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

// artifactChanged passes the status writes of the build reconciler that this one acts on: a new
// artifact (a rollout starts), or a change of the Built condition's status, reason or
// generation (the phase is derived from it: Building -> BuildFailed keeps Built False).
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
		return (ob == nil) != (nb == nil) ||
			(nb != nil && (ob.Status != nb.Status || ob.Reason != nb.Reason || ob.ObservedGeneration != nb.ObservedGeneration))
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

// enqueueOthers queues every other CompilerVersion of the namespace of cv.
func (r *CompilerVersionReconciler) enqueueOthers(ctx context.Context, q workqueue, cv client.Object) {
	var list splicev1.CompilerVersionList
	if err := r.List(ctx, &list, client.InNamespace(cv.GetNamespace())); err != nil {
		logf.FromContext(ctx).Error(err, "list CompilerVersions for a CompilerVersion event", "compilerversion", klog.KObj(cv))
		return
	}
	for i := range list.Items {
		if o := &list.Items[i]; o.Name != cv.GetName() {
			q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: o.Namespace, Name: o.Name}})
		}
	}
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
