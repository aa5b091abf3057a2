package controllers

import (
	"cmp"
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
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
	var cvs splicev1.CompilerVersionList
	if err := r.List(ctx, &cvs, client.InNamespace(s.cv.Namespace)); err != nil {
		return fmt.Errorf("list the CompilerVersions of namespace %s to tell which owns each pod: %w", s.cv.Namespace, err)
	}
	owners := claimants(cvs.Items)
	for i := range list.Items {
		pod := &list.Items[i]
		if !targetable(pod) {
			continue
		}
		// A pod another CompilerVersion owns is not this one's to count, tell or evict; nor
		// is any pod while this one is being deleted (it claims none).
		if owner := ownerOf(owners, labels.Set(pod.Labels)); owner != s.cv.Name {
			if owner != "" {
				s.foreign = append(s.foreign, foreignPod{pod: pod.Name, owner: owner})
			}
			continue
		}
		st := observePod(pod, s.cv.Name)
		if r.swaps.observe(pod.Namespace, pod.UID, st.report) && st.report.State == splicev1.SwapCrashed {
			// Once per report and manager process (swapCounter), under every policy: a canary
			// step may tolerate the failure, and then no phase change says it.
			r.Recorder.Eventf(s.cv, pod, corev1.EventTypeWarning, "HostCrashed", "Swap", "pod %s: %s", pod.Name,
				reportedFailure(st, metav1.Now()).Message)
		}
		s.pods = append(s.pods, st)
		s.podObjects[pod.Name] = pod
	}
	logf.FromContext(ctx).V(1).Info("resolved targets", "selector", sel.String(), "pods", len(s.pods), "ownedByOthers", len(s.foreign))
	return nil
}

// podState is what one targeted pod says about itself, decoded once.
type podState struct {
	name string
	// uid is the pod's UID.
	uid string
	// template names the pod template the pod was created from (templateOf).
	template string
	// target is what the pod's rollout annotations say now.
	target splicev1.DesiredState
	// ready is the pod's splice.dev/plugin-ready condition.
	ready bool
	// report is the agent's decoded report; nil when absent.
	report *splicev1.PodReport
	// reportErr is why a present report was refused.
	reportErr error
}

// observePod reads the pod protocol off a pod for the CompilerVersion cv, which owns it. A
// malformed report is kept as an error rather than dropped, so status can say which pod sends
// garbage. Malformed desired-state annotations (which this controller never writes) are kept as
// far as they could be read: the pod's agent reports them (Failed, InvalidDesiredArtifact), and
// the next plan replaces them. Desired state that another CompilerVersion wrote (the pod's
// splice.dev/compiler-version names it: the pod changed owner) is not this one's: the pod counts
// as told nothing, so that no plan keeps another's artifact on it.
func observePod(pod *corev1.Pod, cv string) podState {
	target, _ := splicev1.ParseDesiredState(pod.Annotations)
	if by := pod.Annotations[splicev1.AnnotationCompilerVersion]; by != "" && by != cv {
		target = splicev1.DesiredState{}
	}
	s := podState{name: pod.Name, uid: string(pod.UID), template: templateOf(pod), target: target, ready: pluginReady(pod)}
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

// Labels the workload controllers put on a pod to name the template it was created from: the
// ReplicaSet's (Deployment) and the ControllerRevision's (StatefulSet, DaemonSet).
const (
	labelPodTemplateHash = "pod-template-hash"
	labelRevisionHash    = "controller-revision-hash"
)

// templateOf names the pod template a pod was created from, for Strict's bounded evictions: the
// kind and name of its controller and the template hash its controller labelled it with
// ("ReplicaSet/greeter-7d9f@7d9f", "StatefulSet/db@db-6f7"); the controller alone when it sets
// no such label (its pods are taken as one template); "Pod/<name>" for a pod without a
// controller, which nothing recreates.
func templateOf(pod *corev1.Pod) string {
	owner := metav1.GetControllerOf(pod)
	if owner == nil {
		return "Pod/" + pod.Name
	}
	key := owner.Kind + "/" + owner.Name
	if h := cmp.Or(pod.Labels[labelPodTemplateHash], pod.Labels[labelRevisionHash]); h != "" {
		key += "@" + h
	}
	return key
}
