package webhooks

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

// testAgent is a configuration with every value differing from the defaults, so a mutator that
// ignored it would be caught.
func testAgent() AgentConfig {
	return AgentConfig{
		Image:           "registry.example.com/splice/agent:v1.2.3",
		ImagePullPolicy: corev1.PullAlways,
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("20m"), corev1.ResourceMemory: resource.MustParse("40Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("100Mi")},
		},
		SharedDir:    "/splice",
		HTTPPort:     7001,
		ProbeTimeout: 4 * time.Second,
		RunAsUser:    4242,
	}.WithDefaults()
}

// wantAgent is the agent container the injection must produce, written out in full rather than
// built by the code under test.
func wantAgent(uid int64, gid *int64) corev1.Container {
	return corev1.Container{
		Name:            "splice-agent",
		Image:           "registry.example.com/splice/agent:v1.2.3",
		ImagePullPolicy: corev1.PullAlways,
		Args: []string{
			"--shared-dir=/splice",
			"--socket=/splice/splice-host.sock",
			"--http-address=:7001",
			"--probe-timeout=4s",
		},
		Env: []corev1.EnvVar{
			{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.name"}}},
			{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}}},
			// The agent binds its port to the pod IP, where the kubelet's probes arrive.
			{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "status.podIP"}}},
		},
		Ports: []corev1.ContainerPort{{Name: "splice-http", ContainerPort: 7001, Protocol: corev1.ProtocolTCP}},
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("20m"), corev1.ResourceMemory: resource.MustParse("40Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("100Mi")},
		},
		// The agent's own token, mounted where in-cluster clients read it.
		VolumeMounts: []corev1.VolumeMount{{Name: "splice-shared", MountPath: "/splice"},
			{Name: "splice-agent-token", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true}},
		RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways),
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:   corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromInt32(7001), Scheme: corev1.URISchemeHTTP}},
			TimeoutSeconds: 5, PeriodSeconds: 5, SuccessThreshold: 1, FailureThreshold: 3,
		},
		LivenessProbe: &corev1.Probe{
			ProbeHandler:        corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/livez", Port: intstr.FromInt32(7001), Scheme: corev1.URISchemeHTTP}},
			InitialDelaySeconds: 10, TimeoutSeconds: 5, PeriodSeconds: 10, SuccessThreshold: 1, FailureThreshold: 6,
		},
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr.To(uid),
			RunAsGroup:               gid,
			RunAsNonRoot:             ptr.To(true),
			ReadOnlyRootFilesystem:   ptr.To(true),
			AllowPrivilegeEscalation: ptr.To(false),
			Privileged:               ptr.To(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		TerminationMessagePath:   "/dev/termination-log",
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
}

var sharedMount = corev1.VolumeMount{Name: "splice-shared", MountPath: "/splice"}

func appProbe() *corev1.Probe {
	return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}}, PeriodSeconds: 3}
}

// basePod has two app containers with their own probes, an init container and a volume, and
// runs as UID 1000.
func basePod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: "shop", Labels: map[string]string{"splice.dev/inject": "true"}},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{RunAsUser: ptr.To(int64(1000)), RunAsGroup: ptr.To(int64(3000))},
			InitContainers:  []corev1.Container{{Name: "migrate", Image: "migrate:1"}},
			Containers: []corev1.Container{
				{Name: "app", Image: "app:1", Ports: []corev1.ContainerPort{{ContainerPort: 8080}}, ReadinessProbe: appProbe(), LivenessProbe: appProbe(),
					VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}},
				{Name: "worker", Image: "worker:1"},
			},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		},
	}
}

// tokenMount is what the ServiceAccount admission plugin adds to every container of a pod, and
// apiServerToken the volume it mounts.
var (
	tokenMount     = corev1.VolumeMount{Name: "kube-api-access-x7k2p", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true}
	apiServerToken = corev1.Volume{Name: "kube-api-access-x7k2p", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		DefaultMode: ptr.To[int32](420),
		Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ptr.To[int64](3607)}},
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}, Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}}}}},
		},
	}}}
)

// wantTokenVolume is the agent's own credentials volume, written out in full.
var wantTokenVolume = corev1.Volume{Name: "splice-agent-token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
	DefaultMode: ptr.To[int32](0o644),
	Sources: []corev1.VolumeProjection{
		{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ptr.To[int64](3600)}},
		{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}, Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
		{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}}}}},
	},
}}}

// withAPIServerToken is p as the API server's ServiceAccount admission hands it to the webhook:
// its token volume mounted into every container.
func withAPIServerToken(p *corev1.Pod) *corev1.Pod {
	p.Spec.ServiceAccountName = "default"
	p.Spec.Volumes = append(p.Spec.Volumes, apiServerToken)
	for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for i := range cs {
			cs[i].VolumeMounts = append(cs[i].VolumeMounts, tokenMount)
		}
	}
	return p
}

func TestInject(t *testing.T) {
	emptyDir := corev1.Volume{Name: "splice-shared", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
	gate := []corev1.PodReadinessGate{{ConditionType: "splice.dev/plugin-ready"}}
	// finish adds what every injection adds to the pod itself: the shared volume and the
	// agent's token volume, the readiness gate, no token for the app containers, and the
	// ServiceAccount the agent's token is of ("default" when the pod names none).
	finish := func(p *corev1.Pod) *corev1.Pod {
		p.Spec.Volumes = append(p.Spec.Volumes, emptyDir, wantTokenVolume)
		p.Spec.ReadinessGates = gate
		p.Spec.AutomountServiceAccountToken = ptr.To(false)
		if p.Spec.ServiceAccountName == "" {
			p.Spec.ServiceAccountName = "default"
		}
		return p
	}
	// injected is p as the mutator leaves it with the default choices: agent appended to the
	// init containers, the shared volume mounted into the first container, and finish.
	injected := func(p *corev1.Pod, agent corev1.Container) *corev1.Pod {
		p.Spec.InitContainers = append(p.Spec.InitContainers, agent)
		p.Spec.Containers[0].VolumeMounts = append(p.Spec.Containers[0].VolumeMounts, sharedMount)
		return finish(p)
	}
	tests := []struct {
		name     string
		pod      func() *corev1.Pod
		want     func() *corev1.Pod
		warnings []string // substrings, one per expected warning
		err      string   // substring of the refusal
	}{
		{
			name: "the API server's token leaves the app containers; the agent has a token of its own",
			pod:  func() *corev1.Pod { return withAPIServerToken(basePod()) },
			want: func() *corev1.Pod {
				p := basePod()
				p.Spec.ServiceAccountName = "default"
				return injected(p, wantAgent(1000, ptr.To(int64(3000))))
			},
		},
		{
			name: "the app keeps the API server's token when the pod says so, with a warning",
			pod: func() *corev1.Pod {
				p := withAPIServerToken(basePod())
				p.Annotations = map[string]string{"splice.dev/app-service-account-token": "true"}
				return p
			},
			want: func() *corev1.Pod {
				p := withAPIServerToken(basePod())
				p.Annotations = map[string]string{"splice.dev/app-service-account-token": "true"}
				p = injected(p, wantAgent(1000, ptr.To(int64(3000))))
				p.Spec.AutomountServiceAccountToken = nil
				return p
			},
			warnings: []string{"the app containers keep the pod's service-account token, and with it the agent's rights"},
		},
		{
			name: "the pod's own ServiceAccount is kept, and a pod without a token still gets one for the agent",
			pod: func() *corev1.Pod {
				p := basePod()
				p.Spec.ServiceAccountName = "web"
				p.Spec.AutomountServiceAccountToken = ptr.To(false)
				return p
			},
			want: func() *corev1.Pod {
				p := basePod()
				p.Spec.ServiceAccountName = "web"
				return injected(p, wantAgent(1000, ptr.To(int64(3000))))
			},
		},
		{
			name: "a volume of the pod's own at the token path stays, with a warning",
			pod: func() *corev1.Pod {
				p := basePod()
				p.Spec.Containers[1].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount"}}
				return p
			},
			want: func() *corev1.Pod {
				p := basePod()
				p.Spec.Containers[1].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount"}}
				return injected(p, wantAgent(1000, ptr.To(int64(3000))))
			},
			warnings: []string{`container "worker" mounts volume "data" at /var/run/secrets/kubernetes.io/serviceaccount`},
		},
		{
			name: "one process namespace: injected, with a warning",
			pod: func() *corev1.Pod {
				p := basePod()
				p.Spec.ShareProcessNamespace = ptr.To(true)
				return p
			},
			want: func() *corev1.Pod {
				p := basePod()
				p.Spec.ShareProcessNamespace = ptr.To(true)
				return injected(p, wantAgent(1000, ptr.To(int64(3000))))
			},
			warnings: []string{"can read the agent's service-account token through /proc"},
		},
		{
			name: "default: first container only, agent takes the pod's UID and GID",
			pod:  basePod,
			want: func() *corev1.Pod {
				p := basePod()
				return injected(p, wantAgent(1000, ptr.To(int64(3000))))
			},
		},
		{
			name: "annotation names both containers; the container's own UID wins over the pod's",
			pod: func() *corev1.Pod {
				p := basePod()
				p.Annotations = map[string]string{"splice.dev/app-containers": "app, worker"}
				p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{RunAsUser: ptr.To(int64(1500))}
				return p
			},
			want: func() *corev1.Pod {
				p := basePod()
				p.Annotations = map[string]string{"splice.dev/app-containers": "app, worker"}
				p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{RunAsUser: ptr.To(int64(1500))}
				p.Spec.InitContainers = append(p.Spec.InitContainers, wantAgent(1500, ptr.To(int64(3000))))
				p.Spec.Containers[0].VolumeMounts = append(p.Spec.Containers[0].VolumeMounts, sharedMount)
				p.Spec.Containers[1].VolumeMounts = []corev1.VolumeMount{sharedMount}
				return finish(p)
			},
		},
		{
			name: "annotation picks the second container: the agent takes that container's identity",
			pod: func() *corev1.Pod {
				p := basePod()
				p.Annotations = map[string]string{"splice.dev/app-containers": "worker"}
				p.Spec.Containers[1].SecurityContext = &corev1.SecurityContext{RunAsUser: ptr.To(int64(2000)), RunAsGroup: ptr.To(int64(2001))}
				return p
			},
			want: func() *corev1.Pod {
				p := basePod()
				p.Annotations = map[string]string{"splice.dev/app-containers": "worker"}
				p.Spec.Containers[1].SecurityContext = &corev1.SecurityContext{RunAsUser: ptr.To(int64(2000)), RunAsGroup: ptr.To(int64(2001))}
				p.Spec.InitContainers = append(p.Spec.InitContainers, wantAgent(2000, ptr.To(int64(2001))))
				p.Spec.Containers[1].VolumeMounts = []corev1.VolumeMount{sharedMount}
				return finish(p)
			},
		},
		{
			name: "unknown UID: agent falls back to the configured non-root UID, with a warning",
			pod: func() *corev1.Pod {
				p := basePod()
				p.Spec.SecurityContext = nil
				return p
			},
			want: func() *corev1.Pod {
				p := basePod()
				p.Spec.SecurityContext = nil
				p.Spec.InitContainers = append(p.Spec.InitContainers, wantAgent(4242, nil))
				p.Spec.Containers[0].VolumeMounts = append(p.Spec.Containers[0].VolumeMounts, sharedMount)
				return finish(p)
			},
			warnings: []string{"sets no runAsUser"},
		},
		{
			name: "app runs as root: the agent still does not",
			pod: func() *corev1.Pod {
				p := basePod()
				p.Spec.SecurityContext.RunAsUser = ptr.To(int64(0))
				return p
			},
			want: func() *corev1.Pod {
				p := basePod()
				p.Spec.SecurityContext.RunAsUser = ptr.To(int64(0))
				p.Spec.InitContainers = append(p.Spec.InitContainers, wantAgent(4242, nil))
				p.Spec.Containers[0].VolumeMounts = append(p.Spec.Containers[0].VolumeMounts, sharedMount)
				return finish(p)
			},
			warnings: []string{"runs as root"},
		},
		{
			name: "the host's network: injected, with a warning",
			pod: func() *corev1.Pod {
				p := basePod()
				p.Spec.HostNetwork = true
				return p
			},
			want: func() *corev1.Pod {
				p := basePod()
				p.Spec.HostNetwork = true
				return injected(p, wantAgent(1000, ptr.To(int64(3000))))
			},
			warnings: []string{"port 7001 is a port of the node"},
		},
		{
			name: "a stale agent, volume and gate from an old injection converge to the current ones",
			pod: func() *corev1.Pod {
				p := basePod()
				old := wantAgent(1, nil)
				old.Image, old.Args, old.ReadinessProbe = "agent:old", []string{"--old"}, nil
				p.Spec.InitContainers = append(p.Spec.InitContainers, old)
				p.Spec.Containers[0].VolumeMounts = append(p.Spec.Containers[0].VolumeMounts, corev1.VolumeMount{Name: "splice-shared", MountPath: "/old"})
				p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "splice-shared", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}})
				p.Spec.ReadinessGates = gate
				return p
			},
			want: func() *corev1.Pod {
				p := basePod()
				return injected(p, wantAgent(1000, ptr.To(int64(3000))))
			},
		},
		{
			name: "annotation names a missing container",
			pod: func() *corev1.Pod {
				p := basePod()
				p.Annotations = map[string]string{"splice.dev/app-containers": "app,sidecar"}
				return p
			},
			err: `names container "sidecar", which the pod does not have; its containers are "app", "worker"`,
		},
		{
			name: "annotation is empty",
			pod: func() *corev1.Pod {
				p := basePod()
				p.Annotations = map[string]string{"splice.dev/app-containers": " , "}
				return p
			},
			err: "is empty",
		},
		{
			name: "annotation names the agent",
			pod: func() *corev1.Pod {
				p := basePod()
				p.Annotations = map[string]string{"splice.dev/app-containers": "splice-agent"}
				return p
			},
			err: "the agent itself",
		},
		{
			name: "app already uses the agent's health port",
			pod: func() *corev1.Pod {
				p := basePod()
				p.Spec.Containers[1].Ports = []corev1.ContainerPort{{ContainerPort: 7001}}
				return p
			},
			err: `container "worker" declares port 7001`,
		},
		{
			name: "something else is mounted at the shared directory",
			pod: func() *corev1.Pod {
				p := basePod()
				p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/splice"}}
				return p
			},
			err: `already mounts volume "data" at /splice`,
		},
		{
			name: "the volume name is taken by something that is not an emptyDir",
			pod: func() *corev1.Pod {
				p := basePod()
				p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "splice-shared", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/x"}}})
				return p
			},
			err: "not an emptyDir",
		},
		{
			name: "the token annotation has another value",
			pod: func() *corev1.Pod {
				p := basePod()
				p.Annotations = map[string]string{"splice.dev/app-service-account-token": "yes"}
				return p
			},
			err: `annotation splice.dev/app-service-account-token is "yes": set it to "true"`,
		},
		{
			name: "an app container mounts the agent's token volume",
			pod: func() *corev1.Pod {
				p := basePod()
				p.Spec.Volumes = append(p.Spec.Volumes, wantTokenVolume)
				p.Spec.Containers[0].VolumeMounts = append(p.Spec.Containers[0].VolumeMounts, corev1.VolumeMount{Name: "splice-agent-token", MountPath: "/t"})
				return p
			},
			err: `container "app" mounts volume "splice-agent-token", the Splice agent's own credentials`,
		},
		{
			name: "the token volume's name is taken by something that is not projected",
			pod: func() *corev1.Pod {
				p := basePod()
				p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "splice-agent-token", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
				return p
			},
			err: "not a projected volume",
		},
		{
			name: "an app container is named like the agent",
			pod: func() *corev1.Pod {
				p := basePod()
				p.Spec.Containers[1].Name = "splice-agent"
				return p
			},
			err: "name is reserved for the agent",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := tt.pod()
			warnings, err := Inject(pod, testAgent())
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Inject error = %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Inject: %v", err)
			}
			if diff := cmp.Diff(tt.want(), pod); diff != "" {
				t.Errorf("injected pod differs (-want +got):\n%s", diff)
			}
			if len(warnings) != len(tt.warnings) {
				t.Fatalf("warnings = %q, want %d containing %q", warnings, len(tt.warnings), tt.warnings)
			}
			for i, w := range tt.warnings {
				if !strings.Contains(warnings[i], w) {
					t.Errorf("warning %q does not contain %q", warnings[i], w)
				}
			}

			// A second pass must change nothing.
			again := pod.DeepCopy()
			if _, err := Inject(again, testAgent()); err != nil {
				t.Fatalf("second Inject: %v", err)
			}
			if diff := cmp.Diff(pod, again); diff != "" {
				t.Errorf("second pass changed the pod (-first +second):\n%s", diff)
			}
		})
	}
}

// TestPodInjectorPatch drives the handler the way the API server does: the first call's patch
// applied to the request gives the injected pod, and a second call on that pod returns no patch.
func TestPodInjectorPatch(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	// No Reader: a pod with its own label must be decided without reading its namespace (a
	// read would panic here).
	h := &PodInjector{Agent: testAgent(), Decoder: admission.NewDecoder(scheme)}
	request := func(pod *corev1.Pod) admission.Request {
		raw, err := json.Marshal(pod)
		if err != nil {
			t.Fatal(err)
		}
		return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			UID: "1", Operation: admissionv1.Create, Namespace: pod.Namespace,
			Kind:   metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Object: runtime.RawExtension{Raw: raw},
		}}
	}

	req := request(basePod())
	resp := h.Handle(context.Background(), req)
	if !resp.Allowed || len(resp.Patches) == 0 {
		t.Fatalf("first pass: allowed=%v patches=%d (%v), want an allowed patch", resp.Allowed, len(resp.Patches), resp.Result)
	}
	ops, err := json.Marshal(resp.Patches)
	if err != nil {
		t.Fatal(err)
	}
	patch, err := jsonpatch.DecodePatch(ops)
	if err != nil {
		t.Fatal(err)
	}
	patched, err := patch.Apply(req.Object.Raw)
	if err != nil {
		t.Fatalf("apply the webhook's patch to the request: %v", err)
	}
	var got corev1.Pod
	if err := json.Unmarshal(patched, &got); err != nil {
		t.Fatal(err)
	}
	want := basePod()
	if _, err := Inject(want, testAgent()); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, &got); diff != "" {
		t.Fatalf("patched pod differs from the injected one (-want +got):\n%s", diff)
	}

	second := h.Handle(context.Background(), request(&got))
	if !second.Allowed || len(second.Patches) != 0 || second.PatchType != nil {
		t.Fatalf("second pass: allowed=%v patches=%v, want allowed with no patch", second.Allowed, second.Patches)
	}

	// Opted out, and not decided by this handler at all.
	for _, value := range []string{"false", "yes"} {
		p := basePod()
		p.Labels["splice.dev/inject"] = value
		r := h.Handle(context.Background(), request(p))
		if !r.Allowed || len(r.Patches) != 0 {
			t.Errorf("label %q: allowed=%v patches=%v, want allowed and untouched", value, r.Allowed, r.Patches)
		}
	}
	// Mirror pods cannot be changed.
	p := basePod()
	p.Annotations = map[string]string{"kubernetes.io/config.mirror": "x"}
	if r := h.Handle(context.Background(), request(p)); !r.Allowed || len(r.Patches) != 0 {
		t.Errorf("mirror pod: allowed=%v patches=%v, want allowed and untouched", r.Allowed, r.Patches)
	}
	// A pod that cannot be injected is refused with the reason.
	p = basePod()
	p.Annotations = map[string]string{splicev1.AnnotationAppContainers: "nope"}
	if r := h.Handle(context.Background(), request(p)); r.Allowed || !strings.Contains(r.Result.Message, `container "nope"`) {
		t.Errorf("bad annotation: allowed=%v message=%q, want a refusal naming the container", r.Allowed, r.Result.Message)
	}
}

func TestAgentConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*AgentConfig)
		err    string
	}{
		{name: "defaults are valid", mutate: func(*AgentConfig) {}},
		{name: "relative shared dir", mutate: func(c *AgentConfig) { c.SharedDir = "var/run" }, err: "--agent-shared-dir"},
		{name: "root shared dir", mutate: func(c *AgentConfig) { c.SharedDir = "/" }, err: "--agent-shared-dir"},
		{name: "port out of range", mutate: func(c *AgentConfig) { c.HTTPPort = 70000 }, err: "--agent-http-port 70000"},
		{name: "probe timeout below a second", mutate: func(c *AgentConfig) { c.ProbeTimeout = 500 * time.Millisecond }, err: "whole number of seconds"},
		{name: "root agent", mutate: func(c *AgentConfig) { c.RunAsUser = -1 }, err: "non-root"},
		{name: "bad pull policy", mutate: func(c *AgentConfig) { c.ImagePullPolicy = "Sometimes" }, err: "--agent-image-pull-policy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := AgentConfig{}.WithDefaults()
			tt.mutate(&c)
			err := c.Validate()
			if tt.err == "" && err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tt.err)
			}
		})
	}
}
