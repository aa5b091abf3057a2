package webhooks

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// injectedPod is basePod as the injection leaves it.
func injectedPod(t *testing.T) *corev1.Pod {
	t.Helper()
	p := basePod()
	if _, err := Inject(p, testAgent()); err != nil {
		t.Fatal(err)
	}
	return p
}

func agentOf(p *corev1.Pod) *corev1.Container { return findInit(p, AgentContainerName) }

func TestGuardUpdate(t *testing.T) {
	debug := func(mounts ...corev1.VolumeMount) corev1.EphemeralContainer {
		return corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: "busybox", VolumeMounts: mounts}}
	}
	tests := []struct {
		name   string
		change func(p *corev1.Pod)
		want   []string // substrings, one per expected problem; none: allowed
	}{
		{name: "metadata only", change: func(p *corev1.Pod) { p.Annotations = map[string]string{"splice.dev/desired-artifact": "x"} }},
		{name: "an app container's image", change: func(p *corev1.Pod) { p.Spec.Containers[0].Image = "app:2" }},
		{name: "the agent's resources (in-place resize)", change: func(p *corev1.Pod) {
			agentOf(p).Resources.Limits[corev1.ResourceMemory] = resource.MustParse("256Mi")
		}},
		{name: "an ephemeral container targeting the app, mounting nothing of Splice's", change: func(p *corev1.Pod) {
			e := debug(corev1.VolumeMount{Name: "data", MountPath: "/data"})
			e.TargetContainerName = "app"
			p.Spec.EphemeralContainers = append(p.Spec.EphemeralContainers, e)
		}},
		{name: "the agent's image", change: func(p *corev1.Pod) { agentOf(p).Image = "evil.example.com/agent:1" },
			want: []string{`changes the splice-agent container's image from "registry.example.com/splice/agent:v1.2.3" to "evil.example.com/agent:1"`}},
		{name: "the agent's arguments", change: func(p *corev1.Pod) { agentOf(p).Args = []string{"--evil"} },
			want: []string{"changes the splice-agent container"}},
		{name: "the agent removed", change: func(p *corev1.Pod) { p.Spec.InitContainers = p.Spec.InitContainers[:1] },
			want: []string{"removes the splice-agent container", `re-points container "splice-agent"'s mount of volume "splice-shared"`, `re-points container "splice-agent"'s mount of volume "splice-agent-token"`}},
		{name: "the shared volume re-pointed", change: func(p *corev1.Pod) {
			for i, v := range p.Spec.Volumes {
				if v.Name == SharedVolumeName {
					p.Spec.Volumes[i].VolumeSource = corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}
				}
			}
		}, want: []string{`changes volume "splice-shared"`}},
		{name: "the token volume removed", change: func(p *corev1.Pod) { p.Spec.Volumes = p.Spec.Volumes[:len(p.Spec.Volumes)-1] },
			want: []string{`removes volume "splice-agent-token"`}},
		{name: "the app's shared mount moved", change: func(p *corev1.Pod) { p.Spec.Containers[0].VolumeMounts[1].MountPath = "/elsewhere" },
			want: []string{`re-points container "app"'s mount of volume "splice-shared"`}},
		{name: "the agent's token mounted into an app container", change: func(p *corev1.Pod) {
			p.Spec.Containers[1].VolumeMounts = append(p.Spec.Containers[1].VolumeMounts, corev1.VolumeMount{Name: AgentTokenVolumeName, MountPath: "/t"})
		}, want: []string{`mounts volume "splice-agent-token" into container "worker"`}},
		{name: "an ephemeral container mounting the token", change: func(p *corev1.Pod) {
			p.Spec.EphemeralContainers = append(p.Spec.EphemeralContainers, debug(corev1.VolumeMount{Name: AgentTokenVolumeName, MountPath: "/t"}))
		}, want: []string{`ephemeral container "debug" mounts volume "splice-agent-token"`}},
		{name: "an ephemeral container mounting the shared volume", change: func(p *corev1.Pod) {
			p.Spec.EphemeralContainers = append(p.Spec.EphemeralContainers, debug(corev1.VolumeMount{Name: SharedVolumeName, MountPath: "/s"}))
		}, want: []string{`ephemeral container "debug" mounts volume "splice-shared"`}},
		{name: "an ephemeral container targeting the agent", change: func(p *corev1.Pod) {
			e := debug()
			e.TargetContainerName = AgentContainerName
			p.Spec.EphemeralContainers = append(p.Spec.EphemeralContainers, e)
		}, want: []string{`ephemeral container "debug" targets the splice-agent container`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := injectedPod(t)
			pod := old.DeepCopy()
			tt.change(pod)
			got := GuardUpdate(old, pod)
			if len(got) != len(tt.want) {
				t.Fatalf("problems %q, want %d containing %q", got, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %q does not contain %q", got[i], w)
				}
			}
		})
	}

	t.Run("a pod that was not injected", func(t *testing.T) {
		old := basePod()
		pod := old.DeepCopy()
		pod.Spec.Containers[0].Image = "app:2"
		pod.Spec.InitContainers = append(pod.Spec.InitContainers, corev1.Container{Name: AgentContainerName, Image: "anything"})
		if got := GuardUpdate(old, pod); len(got) != 0 {
			t.Errorf("problems %q for a pod that had no agent", got)
		}
	})
}

// TestPodGuardHandle drives the handler with an admission request as the API server sends it.
func TestPodGuardHandle(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	h := &PodGuard{Decoder: admission.NewDecoder(scheme)}
	request := func(old, pod *corev1.Pod, subresource string) admission.Request {
		o, _ := json.Marshal(old)
		n, _ := json.Marshal(pod)
		return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			UID: "1", Operation: admissionv1.Update, Namespace: pod.Namespace, Name: pod.Name, SubResource: subresource,
			Kind:   metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Object: runtime.RawExtension{Raw: n}, OldObject: runtime.RawExtension{Raw: o},
		}}
	}
	old := injectedPod(t)
	pod := old.DeepCopy()
	pod.Spec.Containers[0].Image = "app:2"
	if r := h.Handle(context.Background(), request(old, pod, "")); !r.Allowed {
		t.Errorf("an app image change refused: %v", r.Result)
	}
	pod = old.DeepCopy()
	pod.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
		Name: "debug", Image: "busybox", VolumeMounts: []corev1.VolumeMount{{Name: AgentTokenVolumeName, MountPath: "/t"}}}}}
	r := h.Handle(context.Background(), request(old, pod, "ephemeralcontainers"))
	if r.Allowed || !strings.Contains(r.Result.Message, `ephemeral container "debug" mounts volume "splice-agent-token"`) ||
		!strings.Contains(r.Result.Message, "recreate the pod") {
		t.Errorf("an ephemeral container mounting the agent's token: allowed=%v message %q, want a refusal saying what is wrong and what is allowed", r.Allowed, r.Result.Message)
	}
}
