package webhooks

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/sidecar"
)

// A podMutator adds one feature to an opted-in pod. Each one "ensures" its feature: it converges
// the pod to the desired state whatever it finds, so running it on its own output changes
// nothing. That is what makes the whole injection idempotent (the API server may call the
// webhook again under reinvocationPolicy IfNeeded, and a pod created from a copy of an injected
// pod's spec must come out the same).
type podMutator struct {
	name   string
	mutate func(pod *corev1.Pod, in *injection) error
}

// podMutators run in this order, because later ones build on earlier ones:
//
//  1. shared-volume: the emptyDir the agent and the apps share;
//  2. agent: the sidecar container, mounting that volume;
//     agent-token: the agent's own credentials (a projected token volume mounted into it
//     alone), and the API server's token taken away from the app containers unless the pod
//     keeps it (annotation splice.dev/app-service-account-token: "true");
//     registry-credentials: the splice.dev/registry-secret Secret, on the agent only;
//     trust-policy: the trust policy of the pod's namespace, in the agent's environment;
//  3. agent-probes: readiness on /readyz and liveness on /livez, on the agent container that
//     step 2 just (re)built — the app containers' own probes are never touched;
//  4. app-mounts: the shared volume in each app container;
//  5. readiness-gate: splice.dev/plugin-ready, which the agent's condition satisfies.
var podMutators = []podMutator{
	{"shared-volume", ensureSharedVolume},
	{"agent", ensureAgent},
	{"agent-token", ensureAgentToken},
	{"registry-credentials", ensureRegistryCredentials},
	{"trust-policy", ensureTrustPolicy},
	{"agent-probes", ensureAgentProbes},
	{"app-mounts", ensureAppMounts},
	{"readiness-gate", ensureReadinessGate},
}

// injection carries what the mutators share: the configuration and the decisions taken once
// per pod.
type injection struct {
	agent AgentConfig
	// apps are the names of the containers that link the host library.
	apps []string
	// uid and gid are the agent's; see agentIdentity.
	uid int64
	gid *int64
	// appToken: the app containers keep the API server's service-account token
	// (AnnotationAppServiceAccountToken).
	appToken bool
}

// Inject adds the agent, the shared volume, the readiness gate and the agent's probes to pod, in
// place. cfg must be defaulted and valid. It returns warnings for the person creating the pod,
// and an error, saying what to fix, when the pod cannot be injected as written (the pod may then
// be half changed: work on a copy).
func Inject(pod *corev1.Pod, cfg AgentConfig) (warnings []string, err error) {
	apps, err := appContainers(pod)
	if err != nil {
		return nil, err
	}
	if err := checkConflicts(pod, cfg); err != nil {
		return nil, err
	}
	appToken, err := keepsAppToken(pod)
	if err != nil {
		return nil, err
	}
	in := &injection{agent: cfg, apps: apps, appToken: appToken}
	in.uid, in.gid, warnings = agentIdentity(pod, apps[0], cfg.RunAsUser)
	warnings = append(warnings, environmentWarnings(pod, cfg, appToken)...)
	for _, m := range podMutators {
		if err := m.mutate(pod, in); err != nil {
			return warnings, fmt.Errorf("%s: %w", m.name, err)
		}
	}
	return warnings, nil
}

// appContainers resolves the annotation splice.dev/app-containers (comma-separated container
// names) or, without it, the pod's first container.
func appContainers(pod *corev1.Pod) ([]string, error) {
	if len(pod.Spec.Containers) == 0 {
		return nil, fmt.Errorf("the pod has no containers to inject into")
	}
	raw, ok := pod.Annotations[splicev1.AnnotationAppContainers]
	if !ok {
		return []string{pod.Spec.Containers[0].Name}, nil
	}
	var names []string
	for _, n := range strings.Split(raw, ",") {
		n = strings.TrimSpace(n)
		if n == "" || slices.Contains(names, n) {
			continue
		}
		if n == AgentContainerName {
			return nil, fmt.Errorf("annotation %s names %q, the agent itself: list the containers that link the host library", splicev1.AnnotationAppContainers, n)
		}
		if !slices.ContainsFunc(pod.Spec.Containers, func(c corev1.Container) bool { return c.Name == n }) {
			return nil, fmt.Errorf("annotation %s names container %q, which the pod does not have; its containers are %s", splicev1.AnnotationAppContainers, n, containerNames(pod.Spec.Containers))
		}
		names = append(names, n)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("annotation %s is empty: name the containers that link the host library (comma-separated), or remove it to use the first container", splicev1.AnnotationAppContainers)
	}
	return names, nil
}

// checkConflicts refuses pods whose own spec collides with what the injection needs, rather
// than producing a pod that the API server rejects or whose agent cannot bind its ports.
func checkConflicts(pod *corev1.Pod, cfg AgentConfig) error {
	for _, c := range allContainers(pod) {
		if c.Name == AgentContainerName {
			continue
		}
		for _, p := range c.Ports {
			if p.ContainerPort == cfg.HTTPPort {
				return fmt.Errorf("container %q declares port %d, which the Splice agent serves its probes and metrics on: move the app off it, or have the operator change --agent-http-port", c.Name, p.ContainerPort)
			}
		}
		for _, m := range c.VolumeMounts {
			if m.MountPath == cfg.SharedDir && m.Name != SharedVolumeName {
				return fmt.Errorf("container %q already mounts volume %q at %s, where Splice mounts its shared volume: mount it elsewhere", c.Name, m.Name, cfg.SharedDir)
			}
			if m.Name == AgentTokenVolumeName {
				return fmt.Errorf("container %q mounts volume %q, the Splice agent's own credentials, which only the agent may mount: remove that mount", c.Name, m.Name)
			}
		}
	}
	return nil
}

// agentIdentity picks the agent's UID and GID. The host library creates its control socket with
// mode 0600, so the agent can talk to it only as the app's own UID: when the first app
// container's effective runAsUser is known and not root, the agent takes it (and its group);
// otherwise the agent runs as fallback, with a warning, because it must never run as root.
func agentIdentity(pod *corev1.Pod, app string, fallback int64) (int64, *int64, []string) {
	var uid, gid *int64
	if psc := pod.Spec.SecurityContext; psc != nil {
		uid, gid = psc.RunAsUser, psc.RunAsGroup
	}
	for _, c := range pod.Spec.Containers {
		if c.Name == app && c.SecurityContext != nil {
			if c.SecurityContext.RunAsUser != nil {
				uid = c.SecurityContext.RunAsUser
			}
			if c.SecurityContext.RunAsGroup != nil {
				gid = c.SecurityContext.RunAsGroup
			}
		}
	}
	switch {
	case uid == nil:
		return fallback, nil, []string{fmt.Sprintf("splice: container %q sets no runAsUser, so the agent runs as UID %d; the host library's control socket (mode 0600) is reachable only if the app runs as that UID too: set securityContext.runAsUser", app, fallback)}
	case *uid == 0:
		return fallback, nil, []string{fmt.Sprintf("splice: container %q runs as root; the agent never does and runs as UID %d, so it cannot reach the host library's control socket (mode 0600): run the app as a non-root UID", app, fallback)}
	}
	if gid != nil {
		gid = ptr.To(*gid)
	}
	return *uid, gid, nil
}

// keepsAppToken reads AnnotationAppServiceAccountToken: "true" keeps the API server's token in
// the app containers; absent or "false" takes it away.
func keepsAppToken(pod *corev1.Pod) (bool, error) {
	switch v, ok := pod.Annotations[AnnotationAppServiceAccountToken]; {
	case !ok || v == "false":
		return false, nil
	case v == "true":
		return true, nil
	default:
		return false, fmt.Errorf("annotation %s is %q: set it to \"true\" to keep the service-account token in the app containers, or remove it to leave the token to the agent alone", AnnotationAppServiceAccountToken, v)
	}
}

// environmentWarnings flags pod settings under which the agent is injected but cannot work, or
// under which the app containers can reach the agent's credentials; they are the pod author's
// choice, so they warn rather than refuse.
func environmentWarnings(pod *corev1.Pod, cfg AgentConfig, appToken bool) []string {
	var w []string
	if appToken {
		w = append(w, fmt.Sprintf("splice: annotation %s=true: the app containers keep the pod's service-account token, and with it the agent's rights (which the splice-agent-own-pod policy limits to this pod's splice.dev/report annotation and splice.dev/plugin-ready condition)", AnnotationAppServiceAccountToken))
	} else {
		w = append(w, leftTokenWarnings(pod)...)
	}
	if ptr.Deref(pod.Spec.ShareProcessNamespace, false) {
		w = append(w, "splice: the pod shares one process namespace (shareProcessNamespace: true), so the app containers can read the agent's service-account token through /proc: turn it off unless the app must see the agent's processes")
	}
	if pod.Spec.HostNetwork {
		w = append(w, fmt.Sprintf("splice: the pod uses the host's network, so the agent's port %d is a port of the node: two injected pods on one node collide", cfg.HTTPPort))
	}
	return w
}

// leftTokenWarnings names the app containers that mount, at the service-account path, a volume
// of the pod's own (not the API server's token, which the injection removes): if it holds a
// token of the pod's ServiceAccount, that container holds the agent's rights.
func leftTokenWarnings(pod *corev1.Pod) []string {
	var w []string
	for _, c := range allContainers(pod) {
		for _, m := range c.VolumeMounts {
			if c.Name == AgentContainerName || m.MountPath != serviceAccountTokenPath || isAPIServerToken(pod, m.Name) {
				continue
			}
			w = append(w, fmt.Sprintf("splice: container %q mounts volume %q at %s, which the injection leaves in place: if it holds a token of the pod's ServiceAccount, that container holds the agent's rights too", c.Name, m.Name, serviceAccountTokenPath))
		}
	}
	return w
}

// ensureSharedVolume adds the emptyDir. It has no size limit: exceeding one would evict the pod,
// a worse outcome than the disk a few plugin files (megabytes each) take.
func ensureSharedVolume(pod *corev1.Pod, _ *injection) error {
	want := corev1.Volume{Name: SharedVolumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
	if i := slices.IndexFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == SharedVolumeName }); i >= 0 {
		if pod.Spec.Volumes[i].EmptyDir == nil {
			return fmt.Errorf("the pod already has a volume named %q that is not an emptyDir; rename it, the name is reserved for Splice's shared volume", SharedVolumeName)
		}
		pod.Spec.Volumes[i] = want
		return nil
	}
	pod.Spec.Volumes = append(pod.Spec.Volumes, want)
	return nil
}

// ensureAgent makes the agent a native sidecar (an init container with restartPolicy Always),
// appended after the pod's own init containers: the kubelet starts it before the app
// containers, keeps it running for the pod's life, stops it only after them (so it can report
// until the end) and does not let it hold a Job's pod open; its readiness still counts toward
// the pod's. A container of that name already present is replaced whole, so the result does not
// depend on what was there.
func ensureAgent(pod *corev1.Pod, in *injection) error {
	if i := slices.IndexFunc(pod.Spec.Containers, func(c corev1.Container) bool { return c.Name == AgentContainerName }); i >= 0 {
		return fmt.Errorf("the pod already has an app container named %q; rename it, the name is reserved for the agent", AgentContainerName)
	}
	want := agentContainer(in)
	if i := slices.IndexFunc(pod.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == AgentContainerName }); i >= 0 {
		pod.Spec.InitContainers[i] = want
		return nil
	}
	pod.Spec.InitContainers = append(pod.Spec.InitContainers, want)
	return nil
}

// agentContainer is the agent without probes. Every field the API server would default is set
// explicitly, so the stored container is exactly this one and a second pass sees no difference.
func agentContainer(in *injection) corev1.Container {
	c := in.agent
	return corev1.Container{
		Name:            AgentContainerName,
		Image:           c.Image,
		ImagePullPolicy: c.ImagePullPolicy,
		Args:            c.Args(c),
		Env: []corev1.EnvVar{
			{Name: sidecar.EnvPodName, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.name"}}},
			{Name: sidecar.EnvPodNamespace, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}}},
			// The agent binds its port to the pod IP (sidecar.Config.ListenAddress), where the
			// kubelet's probes arrive, instead of every interface.
			{Name: sidecar.EnvPodIP, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "status.podIP"}}},
		},
		Ports:        []corev1.ContainerPort{{Name: AgentHTTPPortName, ContainerPort: c.HTTPPort, Protocol: corev1.ProtocolTCP}},
		Resources:    *c.Resources.DeepCopy(),
		VolumeMounts: []corev1.VolumeMount{{Name: SharedVolumeName, MountPath: c.SharedDir}},
		// Restartable init container: a native sidecar.
		RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways),
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr.To(in.uid),
			RunAsGroup:               in.gid,
			RunAsNonRoot:             ptr.To(true),
			ReadOnlyRootFilesystem:   ptr.To(true),
			AllowPrivilegeEscalation: ptr.To(false),
			Privileged:               ptr.To(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		TerminationMessagePath: corev1.TerminationMessagePathDefault,
		// The agent's last log lines say why it died when it wrote no message.
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
}

// serviceAccountTokenPath is where the kubelet mounts a pod's service-account token, and where
// in-cluster clients (the agent's client-go) read it.
const serviceAccountTokenPath = "/var/run/secrets/kubernetes.io/serviceaccount"

// apiServerTokenPrefix names the projected volume the API server's ServiceAccount admission
// plugin adds to a pod ("kube-api-access-" and five random characters).
const apiServerTokenPrefix = "kube-api-access-"

// ensureAgentToken gives the agent credentials of its own and, unless the pod keeps them for its
// app containers (AnnotationAppServiceAccountToken), takes the API server's away from them.
//
// The API server's ServiceAccount admission plugin runs before any webhook: by now it has added
// a kube-api-access-<random> projected volume and mounted it into every container the pod had,
// which would hand the application the agent's rights, and a container a webhook adds gets
// none. So the agent gets AgentTokenVolumeName instead, with the same three sources (a bound
// token, the kube-root-ca.crt ConfigMap, the namespace), mounted into it alone at
// serviceAccountTokenPath; the plugin's volume and its mounts are removed, and
// automountServiceAccountToken is set to false so that nothing mounts one again (on a second
// pass, or in a pod created from this one's spec). A pod that set automountServiceAccountToken:
// false itself gets the same: the agent cannot work without credentials, and only it holds them.
func ensureAgentToken(pod *corev1.Pod, in *injection) error {
	agent, err := injectedAgent(pod, "give the token to")
	if err != nil {
		return err
	}
	want := agentTokenVolume()
	if j := slices.IndexFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == AgentTokenVolumeName }); j >= 0 {
		if pod.Spec.Volumes[j].Projected == nil {
			return fmt.Errorf("the pod already has a volume named %q that is not a projected volume; rename it, the name is reserved for the Splice agent's credentials", AgentTokenVolumeName)
		}
		pod.Spec.Volumes[j] = want
	} else {
		pod.Spec.Volumes = append(pod.Spec.Volumes, want)
	}
	// The token is the pod's ServiceAccount's. The API server's ServiceAccount admission has
	// named it already ("default" when the pod names none); where that plugin is off it has
	// not, and the API server refuses a token projection in a pod that names no ServiceAccount.
	if pod.Spec.ServiceAccountName == "" {
		pod.Spec.ServiceAccountName = cmp.Or(pod.Spec.DeprecatedServiceAccount, "default")
	}
	agent.VolumeMounts = append(agent.VolumeMounts, corev1.VolumeMount{Name: AgentTokenVolumeName, MountPath: serviceAccountTokenPath, ReadOnly: true})
	if in.appToken {
		return nil
	}
	removeAPIServerToken(pod)
	pod.Spec.AutomountServiceAccountToken = ptr.To(false)
	return nil
}

// agentTokenVolume is what the API server's kube-api-access volume holds — a token bound to the
// pod, the cluster's CA bundle and the namespace — with every field the API server would
// default set, so the stored volume is exactly this one.
func agentTokenVolume() corev1.Volume {
	return corev1.Volume{Name: AgentTokenVolumeName, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		DefaultMode: ptr.To[int32](0o644),
		Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ptr.To(AgentTokenExpirationSeconds)}},
			{ConfigMap: &corev1.ConfigMapProjection{
				LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"},
				Items:                []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}},
			}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{
				{Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}},
			}}},
		},
	}}}
}

// isAPIServerToken reports whether the pod's volume name is the API server's kube-api-access
// token volume: that name prefix, projected, with a service-account token source.
func isAPIServerToken(pod *corev1.Pod, name string) bool {
	if !strings.HasPrefix(name, apiServerTokenPrefix) {
		return false
	}
	i := slices.IndexFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == name })
	return i >= 0 && pod.Spec.Volumes[i].Projected != nil &&
		slices.ContainsFunc(pod.Spec.Volumes[i].Projected.Sources, func(s corev1.VolumeProjection) bool { return s.ServiceAccountToken != nil })
}

// removeAPIServerToken removes the API server's token volumes and every mount of them.
func removeAPIServerToken(pod *corev1.Pod) {
	var removed []string
	for _, v := range pod.Spec.Volumes {
		if isAPIServerToken(pod, v.Name) {
			removed = append(removed, v.Name)
		}
	}
	if len(removed) == 0 {
		return
	}
	pod.Spec.Volumes = nilIfEmpty(slices.DeleteFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return slices.Contains(removed, v.Name) }))
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			cs[i].VolumeMounts = nilIfEmpty(slices.DeleteFunc(cs[i].VolumeMounts, func(m corev1.VolumeMount) bool { return slices.Contains(removed, m.Name) }))
		}
	}
}

// nilIfEmpty keeps "none" as the API server stores it (omitted, so nil when decoded).
func nilIfEmpty[S ~[]E, E any](s S) S {
	if len(s) == 0 {
		return nil
	}
	return s
}

// ensureAgentProbes puts the version-checking probes on the agent. Readiness (/readyz) fails
// while the host does not serve the pod's desired artifact or was built with another Go release
// than the splice.dev/go-version annotation pins, taking the pod out of Service endpoints.
// Liveness (/livez) fails when the host stops answering its control socket or a load stays
// wedged, and restarts the agent (only: the app container's probes are the app's). The kubelet
// starts the native sidecar before the app, so /livez fails until the host is up: the initial
// delay and threshold give the app over a minute. There is deliberately no startup probe: on a
// native sidecar it would hold the app containers back, and /livez needs the app.
func ensureAgentProbes(pod *corev1.Pod, in *injection) error {
	agent, err := injectedAgent(pod, "put the probes on")
	if err != nil {
		return err
	}
	port := intstr.FromInt32(in.agent.HTTPPort)
	// One second above the agent's own bound on the host request behind the probe.
	timeout := int32(in.agent.ProbeTimeout/time.Second) + 1
	get := func(path string) corev1.ProbeHandler {
		return corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: port, Scheme: corev1.URISchemeHTTP}}
	}
	agent.ReadinessProbe = &corev1.Probe{
		ProbeHandler:     get(sidecar.PathReadyz),
		TimeoutSeconds:   timeout,
		PeriodSeconds:    5,
		SuccessThreshold: 1,
		FailureThreshold: 3,
	}
	agent.LivenessProbe = &corev1.Probe{
		ProbeHandler:        get(sidecar.PathLivez),
		InitialDelaySeconds: 10,
		TimeoutSeconds:      timeout,
		PeriodSeconds:       10,
		SuccessThreshold:    1,
		FailureThreshold:    6,
	}
	return nil
}

func ensureAppMounts(pod *corev1.Pod, in *injection) error {
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		if !slices.Contains(in.apps, c.Name) {
			continue
		}
		want := corev1.VolumeMount{Name: SharedVolumeName, MountPath: in.agent.SharedDir}
		if j := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == SharedVolumeName }); j >= 0 {
			c.VolumeMounts[j] = want
			continue
		}
		c.VolumeMounts = append(c.VolumeMounts, want)
	}
	return nil
}

func ensureReadinessGate(pod *corev1.Pod, _ *injection) error {
	if slices.ContainsFunc(pod.Spec.ReadinessGates, func(g corev1.PodReadinessGate) bool {
		return g.ConditionType == splicev1.PodConditionPluginReady
	}) {
		return nil
	}
	pod.Spec.ReadinessGates = append(pod.Spec.ReadinessGates, corev1.PodReadinessGate{ConditionType: splicev1.PodConditionPluginReady})
	return nil
}

func allContainers(pod *corev1.Pod) []corev1.Container {
	return slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers)
}

func containerNames(cs []corev1.Container) string {
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = fmt.Sprintf("%q", c.Name)
	}
	return strings.Join(names, ", ")
}
