package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/internal/loopreg"
	"github.com/splice-dev/splice/internal/simagent"
	"github.com/splice-dev/splice/internal/testenv"
)

// demo is the rollout story make run tells.
type demo struct {
	c    client.Client
	cs   kubernetes.Interface
	reg  *loopreg.Registry
	work string
	pods int
}

const demoNamespace = "default"

// goVersion is the toolchain the demo's plugins are built with: the one running this program.
var goVersion = runtime.Version()

func (d *demo) run(ctx context.Context) error {
	say("building the greeter plugins v1, v2 and v3 and pushing them to a registry on %s", d.reg.Host)
	refs, err := d.reg.PushGreeter(ctx, d.work, "demo/greeter", map[string]string{"v1": "1.0.0", "v2": "1.0.1", "v3": "1.1.0"}, "demo")
	if err != nil {
		return err
	}
	agents := simagent.New(d.cs, demoNamespace)
	if err := agents.Start(ctx); err != nil {
		return err
	}
	cvs := []*splicev1.CompilerVersion{
		d.cv("greeter-strict", splicev1.RolloutStrategy{Type: splicev1.StrategyStrict}, refs["v1"]),
		d.cv("greeter-rolling", splicev1.RolloutStrategy{Type: splicev1.StrategyRollingPatch,
			RollingPatch: &splicev1.RollingPatchStrategy{MaxUnavailable: ptr.To(intstr.FromInt32(1))}}, refs["v1"]),
		d.cv("greeter-canary", splicev1.RolloutStrategy{Type: splicev1.StrategyCanary, Canary: &splicev1.CanaryStrategy{
			OnFailure: splicev1.FailureRollback,
			Steps: []splicev1.CanaryStep{
				{SetWeight: 25, TrafficPercent: ptr.To[int32](10), Pause: &splicev1.CanaryPause{Duration: &metav1.Duration{Duration: 5 * time.Second}},
					Analysis: &splicev1.CanaryAnalysis{MaxFailedSwaps: ptr.To[int32](0), MaxErrorRatePercent: ptr.To[int32](1)}},
				{SetWeight: 50, Pause: &splicev1.CanaryPause{}},
				{SetWeight: 100},
			}}}, refs["v1"]),
	}
	for _, cv := range cvs {
		for i := 0; i < d.pods; i++ {
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", cv.Name, i), Namespace: demoNamespace, Labels: cv.Spec.Selector.MatchLabels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.com/greeter:1"}}},
			}
			if err := d.c.Create(ctx, pod); err != nil {
				return fmt.Errorf("create pod: %w", err)
			}
		}
		if err := d.c.Create(ctx, cv); err != nil {
			return fmt.Errorf("create %s: %w", cv.Name, err)
		}
	}
	say("step 1: three CompilerVersions, %d pods each, first rollout of v1 (every pod at once: nothing is stable yet)", d.pods)
	if err := d.waitAll(ctx, cvs, refs["v1"]); err != nil {
		return err
	}

	say("step 2: every fleet to v2 — Strict all at once, RollingPatch one pod at a time, Canary 25%% with 10%% of requests, a 5s pause, then 50%% until promoted")
	for _, cv := range cvs {
		if err := d.setArtifact(ctx, cv, refs["v2"]); err != nil {
			return err
		}
	}
	if err := d.waitPhase(ctx, "greeter-canary", splicev1.PhasePaused, splicev1.ConditionPaused, "AwaitingPromotion"); err != nil {
		return err
	}
	say("greeter-canary waits at 50%% for a person; promoting it as one would: kubectl splice promote greeter-canary")
	if err := d.annotate(ctx, "greeter-canary", splicev1.AnnotationPromote, time.Now().UTC().Format(time.RFC3339Nano)); err != nil {
		return err
	}
	if err := d.waitAll(ctx, cvs, refs["v2"]); err != nil {
		return err
	}

	say("step 3: greeter-canary to v3, whose plugin calls fail 5%% of the time (simulated); its analysis allows 1%%")
	agents.SetErrorRate(splicev1.DigestOf(refs["v3"]), 50)
	if err := d.setArtifact(ctx, cvs[2], refs["v3"]); err != nil {
		return err
	}
	if err := d.waitPhase(ctx, "greeter-canary", splicev1.PhaseRolledBack, splicev1.ConditionDegraded, "AnalysisFailed"); err != nil {
		return err
	}
	say("greeter-canary rolled back to v2. Try: kubectl splice retry|abort|pause|resume greeter-canary, or edit a CompilerVersion")

	if err := d.injected(ctx); err != nil {
		return err
	}

	bad := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "splice.dev/v1alpha1", "kind": "CompilerVersion",
		"metadata": map[string]any{"name": "malformed", "namespace": demoNamespace},
		"spec": map[string]any{
			"goVersion": "1.26",
			"plugin":    map[string]any{"source": map[string]any{"artifact": "registry.example.com/p:latest"}},
			"selector":  map[string]any{},
		},
	}}
	say("a malformed CompilerVersion is refused by the API server:\n  %v", d.c.Create(ctx, bad))
	overlap := d.cv("greeter-all", splicev1.RolloutStrategy{Type: splicev1.StrategyRollingPatch}, refs["v2"])
	overlap.Spec.Selector.MatchLabels = map[string]string{"app": "greeter"}
	say("a CompilerVersion whose selector overlaps another's is refused by the webhook:\n  %v", d.c.Create(ctx, overlap))
	return nil
}

func (d *demo) cv(name string, st splicev1.RolloutStrategy, ref string) *splicev1.CompilerVersion {
	return &splicev1.CompilerVersion{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: demoNamespace},
		Spec: splicev1.CompilerVersionSpec{
			GoVersion: strings.TrimPrefix(goVersion, "go"),
			Plugin:    splicev1.PluginSpec{Source: splicev1.PluginSource{Artifact: ref}},
			Selector:  metav1.LabelSelector{MatchLabels: map[string]string{"app": "greeter", "fleet": name}},
			Strategy:  st,
		},
	}
}

func (d *demo) setArtifact(ctx context.Context, cv *splicev1.CompilerVersion, ref string) error {
	cur := &splicev1.CompilerVersion{}
	if err := d.c.Get(ctx, client.ObjectKeyFromObject(cv), cur); err != nil {
		return err
	}
	patch := client.MergeFrom(cur.DeepCopy())
	cur.Spec.Plugin.Source.Artifact = ref
	return d.c.Patch(ctx, cur, patch)
}

func (d *demo) annotate(ctx context.Context, name, key, value string) error {
	cur := &splicev1.CompilerVersion{}
	if err := d.c.Get(ctx, client.ObjectKey{Namespace: demoNamespace, Name: name}, cur); err != nil {
		return err
	}
	patch := client.MergeFrom(cur.DeepCopy())
	if cur.Annotations == nil {
		cur.Annotations = map[string]string{}
	}
	cur.Annotations[key] = value
	return d.c.Patch(ctx, cur, patch)
}

// waitAll waits until every CompilerVersion completed a rollout of ref.
func (d *demo) waitAll(ctx context.Context, cvs []*splicev1.CompilerVersion, ref string) error {
	for _, cv := range cvs {
		err := d.poll(ctx, cv.Name, func(got *splicev1.CompilerVersion) bool {
			return got.Status.Phase == splicev1.PhaseCompleted && got.Status.StableArtifact != nil && got.Status.StableArtifact.Ref == ref
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// waitPhase waits for a phase and a condition reason.
func (d *demo) waitPhase(ctx context.Context, name string, phase splicev1.Phase, condType, reason string) error {
	return d.poll(ctx, name, func(got *splicev1.CompilerVersion) bool {
		if got.Status.Phase != phase {
			return false
		}
		for _, c := range got.Status.Conditions {
			if c.Type == condType && c.Reason == reason {
				return true
			}
		}
		return false
	})
}

func (d *demo) poll(ctx context.Context, name string, done func(*splicev1.CompilerVersion) bool) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		got := &splicev1.CompilerVersion{}
		if err := d.c.Get(ctx, client.ObjectKey{Namespace: demoNamespace, Name: name}, got); err == nil && done(got) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not reach the expected state: %w", name, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func say(format string, args ...any) {
	fmt.Printf("\n>>> %s\n", fmt.Sprintf(format, args...))
}

// injected applies the opted-in greeter Deployment and shows what the webhook put into its
// pods.
func (d *demo) injected(ctx context.Context) error {
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "examples", "greeter", "deploy", "greeter.yaml"))
	if err != nil {
		return err
	}
	dep := &appsv1.Deployment{}
	if err := yaml.UnmarshalStrict(raw, dep); err != nil {
		return fmt.Errorf("examples/greeter/deploy/greeter.yaml: %w", err)
	}
	if err := d.c.Create(ctx, dep); err != nil {
		return fmt.Errorf("apply the greeter Deployment: %w", err)
	}
	say("applied examples/greeter/deploy/greeter.yaml (opted in with splice.dev/inject=true)")
	var pods corev1.PodList
	err = d.pollFunc(ctx, func() bool {
		return d.c.List(ctx, &pods, client.InNamespace(demoNamespace), client.MatchingLabels{"app": "greeter-service"}) == nil && len(pods.Items) > 0
	})
	if err != nil {
		return fmt.Errorf("the Deployment made no pods (is kube-controller-manager running?): %w", err)
	}
	p := pods.Items[0]
	var b strings.Builder
	for _, c := range p.Spec.InitContainers {
		restart := ""
		if c.RestartPolicy != nil {
			restart = " restartPolicy=" + string(*c.RestartPolicy)
		}
		fmt.Fprintf(&b, "  init container %s (%s)%s, readiness %s, liveness %s\n", c.Name, c.Image, restart, probePath(c.ReadinessProbe), probePath(c.LivenessProbe))
	}
	for _, c := range p.Spec.Containers {
		var mounts []string
		for _, m := range c.VolumeMounts {
			mounts = append(mounts, m.Name+":"+m.MountPath)
		}
		fmt.Fprintf(&b, "  container %s, mounts %v\n", c.Name, mounts)
	}
	for _, g := range p.Spec.ReadinessGates {
		fmt.Fprintf(&b, "  readiness gate %s\n", g.ConditionType)
	}
	say("pod %s as the webhook left it:\n%s", p.Name, b.String())
	return nil
}

func probePath(p *corev1.Probe) string {
	if p == nil || p.HTTPGet == nil {
		return "none"
	}
	return p.HTTPGet.Path
}

func (d *demo) pollFunc(ctx context.Context, done func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for !done() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil
}
