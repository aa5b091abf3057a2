package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

// Observing the targets: the pods a CompilerVersion's selector matches, and what each says about
// itself through the pod protocol (api/v1alpha1). The first phase of a reconcile.

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

// podState is what one targeted pod says about itself, decoded once.
type podState struct {
	name string
	// target is what the pod's rollout annotations say now.
	target splicev1.DesiredState
	// ready is the pod's splice.dev/plugin-ready condition.
	ready bool
	// report is the agent's decoded report; nil when absent.
	report *splicev1.PodReport
	// reportErr is why a present report was refused.
	reportErr error
}

// observePod reads the pod protocol off a pod. A malformed report is kept as an error rather
// than dropped, so status can say which pod sends garbage. Malformed desired-state annotations
// (which this controller never writes) are kept as far as they could be read: the pod's agent
// reports them (Failed, InvalidDesiredArtifact), and the next plan replaces them.
func observePod(pod *corev1.Pod) podState {
	target, _ := splicev1.ParseDesiredState(pod.Annotations)
	s := podState{name: pod.Name, target: target, ready: pluginReady(pod)}
	if raw, ok := pod.Annotations[splicev1.AnnotationReport]; ok {
		s.report, s.reportErr = splicev1.DecodeReport(raw)
	}
	return s
}

// pluginReady reports the pod's splice.dev/plugin-ready condition (the last one, should a
// writer have appended a duplicate).
func pluginReady(pod *corev1.Pod) bool {
	ready := false
	for _, c := range pod.Status.Conditions {
		if c.Type == splicev1.PodConditionPluginReady {
			ready = c.Status == corev1.ConditionTrue
		}
	}
	return ready
}

// targetable reports whether a pod counts as a target: running or about to, and not going away.
func targetable(pod *corev1.Pod) bool {
	if pod.DeletionTimestamp != nil {
		return false
	}
	return pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed
}
