package webhooks

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

const (
	// RegistryCredentialsVolumeName is the volume of the splice.dev/registry-secret Secret.
	RegistryCredentialsVolumeName = "splice-registry-credentials"
	// registryCredentialsDir is where the agent finds it: DOCKER_CONFIG, whose config.json the
	// registry client (go-containerregistry's default keychain) reads.
	registryCredentialsDir = "/var/run/splice/registry"
)

// ensureRegistryCredentials gives the agent the pull credentials the pod names in
// splice.dev/registry-secret: the Secret's .dockerconfigjson mounted read-only as config.json
// in the agent container only, and DOCKER_CONFIG pointing at it. Without the annotation the
// agent pulls anonymously (and a leftover volume of a copied spec is removed). A Secret that
// does not exist keeps the pod from starting, with the kubelet's event naming it: the volume is
// not optional, so missing credentials are never mistaken for a registry that refuses.
func ensureRegistryCredentials(pod *corev1.Pod, _ *injection) error {
	agent, err := injectedAgent(pod, "give registry credentials to")
	if err != nil {
		return err
	}
	pod.Spec.Volumes = slices.DeleteFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == RegistryCredentialsVolumeName })
	agent.VolumeMounts = slices.DeleteFunc(agent.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == RegistryCredentialsVolumeName })
	agent.Env = slices.DeleteFunc(agent.Env, func(e corev1.EnvVar) bool { return e.Name == "DOCKER_CONFIG" })
	name, ok := pod.Annotations[splicev1.AnnotationRegistrySecret]
	if !ok {
		return nil
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return fmt.Errorf("annotation %s=%q must name a Secret of the pod's namespace: %v", splicev1.AnnotationRegistrySecret, name, errs)
	}
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: RegistryCredentialsVolumeName, VolumeSource: corev1.VolumeSource{
		Secret: &corev1.SecretVolumeSource{
			SecretName: name,
			Items:      []corev1.KeyToPath{{Key: corev1.DockerConfigJsonKey, Path: "config.json"}},
			// Readable by the agent's UID, whatever it is; only the agent mounts it.
			DefaultMode: ptr.To(int32(0o444)),
		},
	}})
	agent.VolumeMounts = append(agent.VolumeMounts, corev1.VolumeMount{Name: RegistryCredentialsVolumeName, MountPath: registryCredentialsDir, ReadOnly: true})
	agent.Env = append(agent.Env, corev1.EnvVar{Name: "DOCKER_CONFIG", Value: registryCredentialsDir})
	return nil
}
