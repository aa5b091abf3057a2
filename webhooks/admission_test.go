package webhooks

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/internal/testenv"
)

// eventually bounds how long a test waits for the control plane to settle; it is a limit, not
// something the test asserts.
const eventually = 60 * time.Second

// TestAdmission runs the real API server with config/webhook installed, calling these webhooks
// over TLS in a real manager: what the API server stores is what a cluster would store.
func TestAdmission(t *testing.T) {
	env, cfg := testenv.StartWithWebhooks(t)
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := splicev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}

	// The webhook server uses the certificate envtest wrote and injected: the way it runs with
	// cert-manager (files in a directory, CA injected by someone else).
	wio := env.WebhookInstallOptions
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:  scheme,
		Metrics: metricsserver.Options{BindAddress: "0"},
		WebhookServer: webhook.NewServer(webhook.Options{
			Host: wio.LocalServingHost, Port: wio.LocalServingPort, CertDir: wio.LocalServingCertDir,
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := SetupWithManager(mgr, testAgent()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}

	// Wait until the API server reaches the webhook: a dry-run create of an opted-in pod comes
	// back injected.
	g := NewWithT(t)
	plain := namespace(t, c, "plain", nil)
	g.Eventually(func(g Gomega) {
		p := testPod(plain, "probe", "true")
		g.Expect(c.Create(context.Background(), p, client.DryRunAll)).To(Succeed())
		g.Expect(p.Spec.ReadinessGates).NotTo(BeEmpty())
	}).WithTimeout(eventually).Should(Succeed())

	t.Run("Pods", func(t *testing.T) { testPodAdmission(t, c, plain) })
	t.Run("CompilerVersions", func(t *testing.T) { testCompilerVersionAdmission(t, c) })
}

func testPodAdmission(t *testing.T, c client.Client, plain string) {
	ctx := context.Background()
	labelled := namespace(t, c, "labelled", map[string]string{"splice.dev/inject": "true"})

	// control is the same pod, opted out: the API server defaults it exactly as it defaults the
	// injected one, so comparing with it shows what the webhook changed and nothing else.
	control := create(t, c, testPod(plain, "control", "false"))
	injected := create(t, c, testPod(plain, "injected", "true"))

	t.Run("an opted-in pod gets exactly the agent, the volume, the gate and the probes", func(t *testing.T) {
		want := control.Spec.DeepCopy()
		want.InitContainers = append(want.InitContainers, wantAgent(1000, ptr.To(int64(3000))))
		want.Containers[0].VolumeMounts = append(want.Containers[0].VolumeMounts, sharedMount)
		want.Volumes = append(want.Volumes, corev1.Volume{Name: "splice-shared", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}, wantTokenVolume)
		want.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: splicev1.PodConditionPluginReady}}
		// The agent's token is of the pod's ServiceAccount: envtest's API server runs no
		// ServiceAccount admission, so the webhook names "default" as that plugin would; the
		// app containers get no token.
		want.ServiceAccountName, want.DeprecatedServiceAccount = "default", "default"
		want.AutomountServiceAccountToken = ptr.To(false)
		if diff := cmp.Diff(*want, injected.Spec); diff != "" {
			t.Fatalf("stored pod spec differs (-want +got):\n%s", diff)
		}
		// Spelled out, since they are the point: the app's own probes are untouched, the
		// second container is not an app container, and the agent probes the agent.
		if diff := cmp.Diff(control.Spec.Containers[0].ReadinessProbe, injected.Spec.Containers[0].ReadinessProbe); diff != "" {
			t.Errorf("the app's readiness probe changed:\n%s", diff)
		}
		if len(injected.Spec.Containers[1].VolumeMounts) != 0 {
			t.Errorf("container %q is not named as an app container but got mounts %v", injected.Spec.Containers[1].Name, injected.Spec.Containers[1].VolumeMounts)
		}
	})

	t.Run("a second pass changes nothing", func(t *testing.T) {
		again := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "again", Namespace: plain, Labels: injected.Labels, Annotations: injected.Annotations}, Spec: *injected.Spec.DeepCopy()}
		again = create(t, c, again)
		if diff := cmp.Diff(injected.Spec, again.Spec); diff != "" {
			t.Fatalf("re-admitting an injected pod changed it (-first +second):\n%s", diff)
		}
	})

	t.Run("a namespace opts its pods in", func(t *testing.T) {
		p := create(t, c, testPod(labelled, "by-namespace", ""))
		if !hasAgent(p) {
			t.Fatalf("pod without a label in namespace %s labelled splice.dev/inject=true was not injected: %+v", labelled, p.Spec.InitContainers)
		}
	})

	t.Run("opted-out pods and pods in other namespaces are untouched", func(t *testing.T) {
		for _, p := range []*corev1.Pod{
			testPod(labelled, "opted-out", "false"),
			testPod(plain, "unlabelled", ""),
		} {
			got := create(t, c, p)
			controlHere := create(t, c, testPod(p.Namespace, p.Name+"-control", "false"))
			if diff := cmp.Diff(controlHere.Spec, got.Spec); diff != "" {
				t.Errorf("pod %s/%s was changed (-untouched +got):\n%s", p.Namespace, p.Name, diff)
			}
		}
	})

	t.Run("updates of an injected pod may not undo the injection", func(t *testing.T) {
		testGuard(t, c, injected)
	})

	t.Run("a pod that cannot be injected is refused with the reason", func(t *testing.T) {
		p := testPod(plain, "bad-annotation", "true")
		p.Annotations[splicev1.AnnotationAppContainers] = "app,nope"
		err := c.Create(ctx, p)
		if err == nil || !strings.Contains(err.Error(), `names container "nope", which the pod does not have`) {
			t.Fatalf("create = %v, want a refusal naming the missing container", err)
		}
	})
}

// testGuard changes the stored injected pod through the API server: the update guard lets the
// app's image change and refuses a new agent image and an ephemeral container that mounts the
// agent's token, saying what is allowed.
func testGuard(t *testing.T, c client.Client, injected *corev1.Pod) {
	ctx := context.Background()
	p := &corev1.Pod{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(injected), p); err != nil {
		t.Fatal(err)
	}
	orig := p.DeepCopy()
	p.Spec.Containers[0].Image = "app:2"
	if err := c.Patch(ctx, p, client.MergeFrom(orig)); err != nil {
		t.Errorf("changing the app container's image: %v", err)
	}

	orig = p.DeepCopy()
	for i := range p.Spec.InitContainers {
		if p.Spec.InitContainers[i].Name == AgentContainerName {
			p.Spec.InitContainers[i].Image = "evil.example.com/agent:1"
		}
	}
	err := c.Patch(ctx, p, client.MergeFrom(orig))
	if err == nil || !strings.Contains(err.Error(), "changes the splice-agent container's image") || !strings.Contains(err.Error(), "recreate the pod") {
		t.Errorf("changing the agent's image: %v, want a refusal that says what is allowed", err)
	}

	if err := c.Get(ctx, client.ObjectKeyFromObject(injected), p); err != nil {
		t.Fatal(err)
	}
	p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
		Name: "debug", Image: "busybox", TerminationMessagePolicy: corev1.TerminationMessageReadFile,
		VolumeMounts: []corev1.VolumeMount{{Name: AgentTokenVolumeName, MountPath: "/t"}}}}}
	err = c.SubResource("ephemeralcontainers").Update(ctx, p)
	if err == nil || !strings.Contains(err.Error(), `ephemeral container "debug" mounts volume "splice-agent-token"`) {
		t.Errorf("adding an ephemeral container that mounts the agent's token: %v, want a refusal", err)
	}
	p.Spec.EphemeralContainers[0].VolumeMounts = nil
	p.Spec.EphemeralContainers[0].TargetContainerName = "app"
	if err := c.SubResource("ephemeralcontainers").Update(ctx, p); err != nil {
		t.Errorf("adding an ephemeral container that targets the app: %v", err)
	}
}

func testCompilerVersionAdmission(t *testing.T, c client.Client) {
	ctx := context.Background()
	ns := namespace(t, c, "cvs", nil)
	cv := func(name string, selector map[string]string) *splicev1.CompilerVersion {
		o := gitCV(name, selector)
		o.Namespace = ns
		o.Spec.Plugin.Tags = nil
		return o
	}

	t.Run("defaults appear on create", func(t *testing.T) {
		o := cv("defaults", map[string]string{"app": "defaults"})
		o.Spec.Strategy = splicev1.RolloutStrategy{Type: splicev1.StrategyRollingPatch} // no rollingPatch block
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
		got := &splicev1.CompilerVersion{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(o), got); err != nil {
			t.Fatal(err)
		}
		rp := got.Spec.Strategy.RollingPatch
		if rp == nil || rp.MaxUnavailable == nil || *rp.MaxUnavailable != intstr.FromString("25%") || rp.OnFailure != splicev1.FailureRollback {
			t.Errorf("spec.strategy.rollingPatch = %+v, want maxUnavailable 25%% and onFailure Rollback", rp)
		}
		if got.Spec.Plugin.Symbol != "Plugin" || ptr.Deref(got.Spec.MaxLoadedVersions, 0) != 8 {
			t.Errorf("symbol %q, maxLoadedVersions %v; want Plugin and 8", got.Spec.Plugin.Symbol, got.Spec.MaxLoadedVersions)
		}

		canary := cv("canary-defaults", map[string]string{"app": "canary-defaults"})
		canary.Spec.Strategy = splicev1.RolloutStrategy{Type: splicev1.StrategyCanary, Canary: &splicev1.CanaryStrategy{Steps: []splicev1.CanaryStep{{SetWeight: 10}}}}
		if err := c.Create(ctx, canary); err != nil {
			t.Fatal(err)
		}
		if canary.Spec.Strategy.Canary.OnFailure != splicev1.FailureRollback || canary.Spec.Strategy.RollingPatch != nil {
			t.Errorf("canary strategy = %+v, want onFailure Rollback and no rollingPatch", canary.Spec.Strategy)
		}
	})

	t.Run("invalid CompilerVersions are refused naming the field", func(t *testing.T) {
		tests := []struct {
			name   string
			mutate func(*splicev1.CompilerVersion)
			field  string
			detail string
		}{
			{name: "canary weight goes back", field: "spec.strategy.canary.steps[1].setWeight", detail: "never go backwards",
				mutate: func(o *splicev1.CompilerVersion) {
					o.Spec.Strategy = splicev1.RolloutStrategy{Type: splicev1.StrategyCanary, Canary: &splicev1.CanaryStrategy{Steps: []splicev1.CanaryStep{{SetWeight: 50}, {SetWeight: 20}}}}
				}},
			{name: "canary traffic goes back", field: "spec.strategy.canary.steps[1].trafficPercent", detail: "never goes backwards",
				mutate: func(o *splicev1.CompilerVersion) {
					o.Spec.Strategy = splicev1.RolloutStrategy{Type: splicev1.StrategyCanary, Canary: &splicev1.CanaryStrategy{Steps: []splicev1.CanaryStep{{SetWeight: 10, TrafficPercent: ptr.To[int32](50)}, {SetWeight: 20, TrafficPercent: ptr.To[int32](5)}}}}
				}},
			{name: "traffic at weight 0", field: "spec.strategy.canary.steps[0].trafficPercent", detail: "no pod runs the new version",
				mutate: func(o *splicev1.CompilerVersion) {
					o.Spec.Strategy = splicev1.RolloutStrategy{Type: splicev1.StrategyCanary, Canary: &splicev1.CanaryStrategy{Steps: []splicev1.CanaryStep{{SetWeight: 0, TrafficPercent: ptr.To[int32](5)}}}}
				}},
			{name: "selector with an invalid label value", field: "spec.selector", detail: "is not a valid label selector",
				mutate: func(o *splicev1.CompilerVersion) {
					o.Spec.Selector = metav1.LabelSelector{MatchLabels: map[string]string{"app": "not a value"}}
				}},
			{name: "selector with an unknown operator", field: "spec.selector", detail: "is not a valid label selector",
				mutate: func(o *splicev1.CompilerVersion) {
					o.Spec.Selector = metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: "Near", Values: []string{"x"}}}}
				}},
		}
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				o := cv(fmt.Sprintf("invalid-%d", i), map[string]string{"app": fmt.Sprintf("invalid-%d", i)})
				tt.mutate(o)
				expectInvalid(t, c.Create(ctx, o), tt.field, tt.detail)
			})
		}
	})

	t.Run("overlapping selectors are refused naming the other CompilerVersion", func(t *testing.T) {
		if err := c.Create(ctx, cv("greeter", map[string]string{"app": "greeter"})); err != nil {
			t.Fatal(err)
		}
		err := c.Create(ctx, cv("backend", map[string]string{"tier": "backend"}))
		expectInvalid(t, err, "spec.selector", `selects the same pods as CompilerVersion "greeter"`)
		if !strings.Contains(err.Error(), "app=greeter,tier=backend") {
			t.Errorf("refusal %q does not show a pod both would select", err)
		}

		billing := cv("billing", map[string]string{"app": "billing"})
		if err := c.Create(ctx, billing); err != nil {
			t.Fatalf("a disjoint selector was refused: %v", err)
		}
		billing.Spec.Selector.MatchLabels = map[string]string{"app": "greeter"}
		expectInvalid(t, c.Update(ctx, billing), "spec.selector", `CompilerVersion "greeter"`)
	})

	t.Run("goVersion and source are pinned while a rollout is in progress, unless aborted", func(t *testing.T) {
		o := cv("rolling", map[string]string{"app": "rolling"})
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
		o.Status.Phase = splicev1.PhaseProgressing
		if err := c.Status().Update(ctx, o); err != nil {
			t.Fatal(err)
		}

		changed := o.DeepCopy()
		changed.Spec.GoVersion = "1.26.9"
		changed.Spec.Plugin.Source.Git.Revision = "v2"
		err := c.Update(ctx, changed)
		expectInvalid(t, err, "spec.goVersion", "cannot change while a rollout is Progressing")
		expectInvalid(t, err, "spec.plugin.source.git.revision", `splice.dev/abort: "true"`)

		unrelated := o.DeepCopy()
		unrelated.Spec.MaxLoadedVersions = ptr.To[int32](4)
		if err := c.Update(ctx, unrelated); err != nil {
			t.Fatalf("a change that does not touch what is being rolled out was refused: %v", err)
		}

		changed.ResourceVersion = unrelated.ResourceVersion
		changed.Annotations = map[string]string{splicev1.AnnotationAbort: "true"}
		if err := c.Update(ctx, changed); err != nil {
			t.Fatalf("the change was refused although the rollout is aborted in the same update: %v", err)
		}
	})
}

// expectInvalid checks that err is the API server's Invalid status carrying the webhook's error
// for field, with detail in its message.
func expectInvalid(t *testing.T, err error, field, detail string) {
	t.Helper()
	if !apierrors.IsInvalid(err) {
		t.Fatalf("error = %v, want Invalid", err)
	}
	var status apierrors.APIStatus
	if !errors.As(err, &status) || status.Status().Details == nil {
		t.Fatalf("error %v carries no details", err)
	}
	for _, cause := range status.Status().Details.Causes {
		if cause.Field == field && strings.Contains(cause.Message, detail) {
			return
		}
	}
	t.Fatalf("error %v has no cause for field %s containing %q; causes: %+v", err, field, detail, status.Status().Details.Causes)
}

// testPod is basePod in namespace ns, opted in or out with label value inject ("" for no label),
// naming its app container explicitly.
func testPod(ns, name, inject string) *corev1.Pod {
	p := basePod()
	p.Name, p.Namespace = name, ns
	p.Labels = map[string]string{"app": "web"}
	if inject != "" {
		p.Labels[splicev1.LabelInject] = inject
	}
	p.Annotations = map[string]string{splicev1.AnnotationAppContainers: "app"}
	return p
}

func create(t *testing.T, c client.Client, p *corev1.Pod) *corev1.Pod {
	t.Helper()
	if err := c.Create(context.Background(), p); err != nil {
		t.Fatalf("create pod %s/%s: %v", p.Namespace, p.Name, err)
	}
	got := &corev1.Pod{}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(p), got); err != nil {
		t.Fatal(err)
	}
	return got
}

func hasAgent(p *corev1.Pod) bool {
	for _, c := range p.Spec.InitContainers {
		if c.Name == AgentContainerName {
			return true
		}
	}
	return false
}

func namespace(t *testing.T, c client.Client, prefix string, labels map[string]string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-", Labels: labels}}
	if err := c.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}
