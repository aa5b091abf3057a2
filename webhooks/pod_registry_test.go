package webhooks

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

// The registry Secret a pod names reaches the agent, and only the agent.
func TestInjectRegistryCredentials(t *testing.T) {
	cfg := AgentConfig{}.WithDefaults()
	pod := basePod()
	pod.Annotations = map[string]string{splicev1.AnnotationRegistrySecret: "team-pull"}
	if _, err := Inject(pod, cfg); err != nil {
		t.Fatalf("Inject: %v", err)
	}
	vi := slices.IndexFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == RegistryCredentialsVolumeName })
	if vi < 0 || pod.Spec.Volumes[vi].Secret == nil || pod.Spec.Volumes[vi].Secret.SecretName != "team-pull" ||
		!equality.Semantic.DeepEqual(pod.Spec.Volumes[vi].Secret.Items, []corev1.KeyToPath{{Key: ".dockerconfigjson", Path: "config.json"}}) {
		t.Fatalf("registry credentials volume: %+v", pod.Spec.Volumes)
	}
	agent := agentOf(pod)
	if !slices.ContainsFunc(agent.VolumeMounts, func(m corev1.VolumeMount) bool {
		return m.Name == RegistryCredentialsVolumeName && m.ReadOnly && m.MountPath == registryCredentialsDir
	}) || !slices.Contains(agent.Env, corev1.EnvVar{Name: "DOCKER_CONFIG", Value: registryCredentialsDir}) {
		t.Fatalf("agent mounts %+v, env %+v: want the credentials read-only at %s and DOCKER_CONFIG", agent.VolumeMounts, agent.Env, registryCredentialsDir)
	}
	for _, c := range pod.Spec.Containers {
		if slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == RegistryCredentialsVolumeName }) {
			t.Errorf("app container %s mounts the agent's registry credentials", c.Name)
		}
	}
	// A second pass (reinvocation, or a pod made from this one's spec) changes nothing.
	again := pod.DeepCopy()
	if _, err := Inject(again, cfg); err != nil || !equality.Semantic.DeepEqual(again, pod) {
		t.Fatalf("second Inject changed the pod (err %v)", err)
	}
	// Without the annotation, a copied spec's credentials are removed.
	delete(again.Annotations, splicev1.AnnotationRegistrySecret)
	if _, err := Inject(again, cfg); err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(again.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == RegistryCredentialsVolumeName }) ||
		slices.ContainsFunc(agentOf(again).Env, func(e corev1.EnvVar) bool { return e.Name == "DOCKER_CONFIG" }) {
		t.Fatalf("credentials left without the annotation: %+v", again.Spec.Volumes)
	}
	bad := basePod()
	bad.Annotations = map[string]string{splicev1.AnnotationRegistrySecret: "Not_A/Name"}
	if _, err := Inject(bad, cfg); err == nil || !strings.Contains(err.Error(), splicev1.AnnotationRegistrySecret) {
		t.Fatalf("a malformed Secret name was accepted: %v", err)
	}
}
