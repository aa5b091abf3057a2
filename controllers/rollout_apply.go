package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

// evictionRetry is how soon a blocked eviction (a PodDisruptionBudget said no) is tried again.
const evictionRetry = 10 * time.Second

// Applying the plan: pod annotations and evictions, after its decision is recorded in status.

// +kubebuilder:rbac:groups="",resources=pods,verbs=patch
// +kubebuilder:rbac:groups="",resources=pods/eviction,verbs=create

// applyRollout writes the plan's pod annotations (only where they differ) and evictions. Only
// pods this CompilerVersion owns are in s.podObjects, so no other pod is ever written. The
// evictions are in status.incompatibleEvictions already (writeStatus ran first).
func (r *CompilerVersionReconciler) applyRollout(ctx context.Context, s *scope) (time.Duration, error) {
	log := logf.FromContext(ctx)
	cv := s.cv
	for _, pod := range s.podObjects {
		t, ok := s.plan.targets[pod.Name]
		if !ok {
			continue
		}
		patch, err := annotationPatch(pod, t, cv)
		if err != nil {
			// Only a frozen plan copies a pod's own state back, and that pod's agent reports
			// what is wrong with it; leave it for the next plan that moves the pod.
			log.Info("malformed desired-state annotations left as they are", "pod", klog.KObj(pod), "error", err.Error())
			continue
		}
		if patch == nil {
			continue
		}
		if err := r.Patch(ctx, pod, client.RawPatch(types.MergePatchType, patch)); err != nil {
			if apierrors.IsNotFound(err) {
				continue // gone since we listed it; the delete event brings us back
			}
			return 0, fmt.Errorf("set rollout annotations on pod %s: %w", pod.Name, err)
		}
		log.V(1).Info("pod target set", "pod", klog.KObj(pod), "artifact", t.Artifact, "traffic", t.TrafficPercent)
	}
	var requeue time.Duration
	for _, name := range s.plan.evict {
		pod := s.podObjects[name]
		if pod == nil || pod.DeletionTimestamp != nil {
			continue
		}
		err := r.evict(ctx, pod)
		switch {
		case err == nil:
			r.Recorder.Eventf(cv, pod, corev1.EventTypeNormal, "EvictedIncompatible", "Evict",
				"evicted pod %s: its host cannot load %s; its controller recreates it from pod template %s, whose pods are evicted once for this artifact",
				pod.Name, cv.Status.Artifact.Digest, templateOf(pod))
		case apierrors.IsTooManyRequests(err):
			// A PodDisruptionBudget holds it; try again later rather than forcing it.
			log.Info("eviction blocked by a disruption budget", "pod", klog.KObj(pod))
			requeue = evictionRetry
		case apierrors.IsNotFound(err):
		default:
			return 0, fmt.Errorf("evict incompatible pod %s: %w", pod.Name, err)
		}
	}
	return requeue, nil
}

// annotationPatch returns the JSON merge patch that brings a pod's rollout annotations to t (the
// pod protocol's own encoding, DesiredState.Encode) and names its CompilerVersion and Go
// version, or nil when they already match.
func annotationPatch(pod *corev1.Pod, t splicev1.DesiredState, cv *splicev1.CompilerVersion) ([]byte, error) {
	want, err := t.Encode()
	if err != nil {
		return nil, fmt.Errorf("desired state for pod %s: %w", pod.Name, err)
	}
	want[splicev1.AnnotationCompilerVersion] = strOrNil(cv.Name)
	want[splicev1.AnnotationGoVersion] = strOrNil(cv.Spec.GoVersion)
	changes := map[string]*string{}
	for k, v := range want {
		cur, has := pod.Annotations[k]
		switch {
		case v == nil && has:
			changes[k] = nil
		case v != nil && (!has || cur != *v):
			changes[k] = v
		}
	}
	if len(changes) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": changes}})
	if err != nil {
		return nil, fmt.Errorf("encode the annotation patch: %w", err)
	}
	return b, nil
}

func strOrNil(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// evict asks the Eviction API to evict a pod, once. client-go retries a 429 by itself after the
// server's Retry-After (10 s for a disruption budget, up to 10 times), which would hold this
// reconcile — and every CompilerVersion queued behind it — for minutes; a blocked eviction is
// instead retried by requeueing.
func (r *CompilerVersionReconciler) evict(ctx context.Context, pod *corev1.Pod) error {
	body, err := json.Marshal(&policyv1.Eviction{
		TypeMeta:   metav1.TypeMeta{APIVersion: "policy/v1", Kind: "Eviction"},
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace}})
	if err != nil {
		return err
	}
	return r.core.CoreV1().RESTClient().Post().Namespace(pod.Namespace).Resource("pods").Name(pod.Name).
		SubResource("eviction").MaxRetries(0).Body(body).Do(ctx).Error()
}
