package webhooks

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

func gitCV(name string, selector map[string]string) *splicev1.CompilerVersion {
	return &splicev1.CompilerVersion{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop"},
		Spec: splicev1.CompilerVersionSpec{
			GoVersion: "1.26.8",
			Plugin: splicev1.PluginSpec{
				Source:     splicev1.PluginSource{Git: &splicev1.GitSource{URL: "https://git.example.com/p.git", Revision: "v1"}},
				Package:    "./plugins/greeter",
				Repository: "registry.example.com/team/greeter",
				Tags:       []string{"a", "b"},
			},
			Selector: metav1.LabelSelector{MatchLabels: selector},
			Strategy: splicev1.RolloutStrategy{Type: splicev1.StrategyRollingPatch},
		},
	}
}

func step(weight int32, traffic *int32) splicev1.CanaryStep {
	return splicev1.CanaryStep{SetWeight: weight, TrafficPercent: traffic}
}

// errFields lists "path: type" of each error, the part a user reads first.
func errFields(errs field.ErrorList) []string {
	var out []string
	for _, e := range errs {
		out = append(out, e.Field+": "+string(e.Type))
	}
	return out
}

func TestValidateStrategy(t *testing.T) {
	tests := []struct {
		name  string
		steps []splicev1.CanaryStep
		want  []string
	}{
		{name: "forward steps", steps: []splicev1.CanaryStep{step(10, ptr.To[int32](5)), step(10, ptr.To[int32](50)), step(50, nil), step(100, nil)}},
		{name: "equal weights are fine", steps: []splicev1.CanaryStep{step(20, nil), step(20, nil)}},
		{name: "weight goes back", steps: []splicev1.CanaryStep{step(10, nil), step(50, nil), step(20, nil)},
			want: []string{"spec.strategy.canary.steps[2].setWeight: FieldValueInvalid"}},
		{name: "traffic goes back", steps: []splicev1.CanaryStep{step(10, ptr.To[int32](50)), step(20, ptr.To[int32](10))},
			want: []string{"spec.strategy.canary.steps[1].trafficPercent: FieldValueInvalid"}},
		{name: "traffic goes back from unset (100)", steps: []splicev1.CanaryStep{step(10, nil), step(20, ptr.To[int32](99))},
			want: []string{"spec.strategy.canary.steps[1].trafficPercent: FieldValueInvalid"}},
		{name: "traffic at weight 0", steps: []splicev1.CanaryStep{step(0, ptr.To[int32](10)), step(10, ptr.To[int32](10))},
			want: []string{"spec.strategy.canary.steps[0].trafficPercent: FieldValueInvalid"}},
		{name: "a pause-only first step at weight 0 is fine", steps: []splicev1.CanaryStep{{SetWeight: 0, Pause: &splicev1.CanaryPause{}}, step(10, nil)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := &splicev1.CompilerVersionSpec{Strategy: splicev1.RolloutStrategy{Type: splicev1.StrategyCanary, Canary: &splicev1.CanaryStrategy{Steps: tt.steps}}}
			errs := validateStrategy(spec)
			if diff := cmp.Diff(tt.want, errFields(errs)); diff != "" {
				t.Fatalf("errors differ (-want +got):\n%s\n%v", diff, errs)
			}
			for _, e := range errs {
				if !strings.Contains(e.Detail, "must") && !strings.Contains(e.Detail, "remove it") {
					t.Errorf("error %q does not say what to do", e.Error())
				}
			}
		})
	}
}

func TestValidateInFlight(t *testing.T) {
	tests := []struct {
		name   string
		phase  splicev1.Phase
		abort  string // "old", "new" or ""
		change func(*splicev1.CompilerVersion)
		want   []string
	}{
		{name: "goVersion while Progressing", phase: splicev1.PhaseProgressing,
			change: func(cv *splicev1.CompilerVersion) { cv.Spec.GoVersion = "1.26.9" },
			want:   []string{"spec.goVersion: FieldValueForbidden"}},
		{name: "git revision and url while Paused", phase: splicev1.PhasePaused,
			change: func(cv *splicev1.CompilerVersion) {
				cv.Spec.Plugin.Source.Git.Revision = "v2"
				cv.Spec.Plugin.Source.Git.URL = "https://git.example.com/q.git"
			},
			want: []string{"spec.plugin.source.git.url: FieldValueForbidden", "spec.plugin.source.git.revision: FieldValueForbidden"}},
		{name: "git to artifact", phase: splicev1.PhaseProgressing,
			change: func(cv *splicev1.CompilerVersion) {
				cv.Spec.Plugin.Source = splicev1.PluginSource{Artifact: "r.example.com/p@sha256:" + strings.Repeat("a", 64)}
			},
			want: []string{"spec.plugin.source: FieldValueForbidden"}},
		{name: "package, tags and strategy type", phase: splicev1.PhaseProgressing,
			change: func(cv *splicev1.CompilerVersion) {
				cv.Spec.Plugin.Package = "./plugins/other"
				cv.Spec.Plugin.Tags = []string{"a"}
				cv.Spec.Strategy.Type = splicev1.StrategyStrict
			},
			want: []string{"spec.plugin.package: FieldValueForbidden", "spec.plugin.tags: FieldValueForbidden", "spec.strategy.type: FieldValueForbidden"}},
		{name: "tags reordered is no change", phase: splicev1.PhaseProgressing,
			change: func(cv *splicev1.CompilerVersion) { cv.Spec.Plugin.Tags = []string{"b", "a"} }},
		{name: "rotating the git secret is allowed", phase: splicev1.PhaseProgressing,
			change: func(cv *splicev1.CompilerVersion) {
				cv.Spec.Plugin.Source.Git.SecretRef = &splicev1.LocalObjectReference{Name: "new-creds"}
			}},
		{name: "other fields are allowed", phase: splicev1.PhaseProgressing,
			change: func(cv *splicev1.CompilerVersion) { cv.Spec.MaxLoadedVersions = ptr.To[int32](3) }},
		{name: "aborted in the same change", phase: splicev1.PhaseProgressing, abort: "new",
			change: func(cv *splicev1.CompilerVersion) { cv.Spec.GoVersion = "1.26.9" }},
		{name: "aborted before", phase: splicev1.PhasePaused, abort: "old",
			change: func(cv *splicev1.CompilerVersion) { cv.Spec.GoVersion = "1.26.9" }},
		{name: "no rollout in progress", phase: splicev1.PhaseCompleted,
			change: func(cv *splicev1.CompilerVersion) { cv.Spec.GoVersion = "1.26.9" }},
		{name: "a failed rollout is not in progress", phase: splicev1.PhaseDegraded,
			change: func(cv *splicev1.CompilerVersion) { cv.Spec.GoVersion = "1.26.9" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := gitCV("cv", map[string]string{"app": "greeter"})
			old.Status.Phase = tt.phase
			cur := old.DeepCopy()
			tt.change(cur)
			switch tt.abort {
			case "old":
				old.Annotations = map[string]string{splicev1.AnnotationAbort: "true"}
				cur.Annotations = map[string]string{splicev1.AnnotationAbort: "true"}
			case "new":
				cur.Annotations = map[string]string{splicev1.AnnotationAbort: "true"}
			}
			errs := validateInFlight(old, cur)
			if diff := cmp.Diff(tt.want, errFields(errs)); diff != "" {
				t.Fatalf("errors differ (-want +got):\n%s\n%v", diff, errs)
			}
			for _, e := range errs {
				if !strings.Contains(e.Detail, `splice.dev/abort: "true"`) {
					t.Errorf("error %q does not say how to abort", e.Error())
				}
			}
		})
	}
}

func TestValidateNoOverlap(t *testing.T) {
	cv := gitCV("new", map[string]string{"app": "greeter"})
	deleting := gitCV("leaving", map[string]string{"app": "greeter", "track": "x"})
	deleting.DeletionTimestamp = &metav1.Time{}
	others := []splicev1.CompilerVersion{
		*gitCV("new", map[string]string{"app": "greeter"}), // itself, on update
		*gitCV("billing", map[string]string{"app": "billing"}),
		*gitCV("backend", map[string]string{"tier": "backend"}),
		*deleting,
		{ObjectMeta: metav1.ObjectMeta{Name: "broken"}, Spec: splicev1.CompilerVersionSpec{Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "bad value"}}}},
	}
	errs := validateNoOverlap(cv, others)
	if diff := cmp.Diff([]string{"spec.selector: FieldValueInvalid", "spec.selector: FieldValueInvalid"}, errFields(errs)); diff != "" {
		t.Fatalf("errors differ (-want +got):\n%s\n%v", diff, errs)
	}
	for i, want := range []string{
		`CompilerVersion "backend" (selector "tier=backend"; a pod labelled app=greeter,tier=backend would match both)`,
		`CompilerVersion "leaving"`,
	} {
		if !strings.Contains(errs[i].Error(), want) {
			t.Errorf("error %q does not contain %q", errs[i].Error(), want)
		}
	}
	if !strings.Contains(errs[1].Detail, "is being deleted") {
		t.Errorf("error %q does not say the other one is being deleted", errs[1].Error())
	}
}

func TestDefaultCompilerVersion(t *testing.T) {
	tests := []struct {
		name string
		in   func(*splicev1.CompilerVersion)
		want func(*splicev1.CompilerVersion)
	}{
		{
			name: "empty strategy becomes RollingPatch with 25%",
			in:   func(cv *splicev1.CompilerVersion) { cv.Spec.Strategy = splicev1.RolloutStrategy{} },
			want: func(cv *splicev1.CompilerVersion) {
				cv.Spec.Strategy = splicev1.RolloutStrategy{Type: splicev1.StrategyRollingPatch, RollingPatch: &splicev1.RollingPatchStrategy{
					MaxUnavailable: ptr.To(intstr.FromString("25%")), OnFailure: splicev1.FailureRollback}}
			},
		},
		{
			name: "a set maxUnavailable and onFailure are kept",
			in: func(cv *splicev1.CompilerVersion) {
				cv.Spec.Strategy.RollingPatch = &splicev1.RollingPatchStrategy{MaxUnavailable: ptr.To(intstr.FromInt32(3)), OnFailure: splicev1.FailurePause}
			},
			want: func(cv *splicev1.CompilerVersion) {
				cv.Spec.Strategy.RollingPatch = &splicev1.RollingPatchStrategy{MaxUnavailable: ptr.To(intstr.FromInt32(3)), OnFailure: splicev1.FailurePause}
			},
		},
		{
			name: "canary gets onFailure Rollback and no rollingPatch",
			in: func(cv *splicev1.CompilerVersion) {
				cv.Spec.Strategy = splicev1.RolloutStrategy{Type: splicev1.StrategyCanary, Canary: &splicev1.CanaryStrategy{Steps: []splicev1.CanaryStep{step(10, nil)}}}
			},
			want: func(cv *splicev1.CompilerVersion) {
				cv.Spec.Strategy = splicev1.RolloutStrategy{Type: splicev1.StrategyCanary, Canary: &splicev1.CanaryStrategy{Steps: []splicev1.CanaryStep{step(10, nil)}, OnFailure: splicev1.FailureRollback}}
			},
		},
		{
			name: "canary onFailure Pause is kept; symbol and maxLoadedVersions too",
			in: func(cv *splicev1.CompilerVersion) {
				cv.Spec.Plugin.Symbol = "Greeter"
				cv.Spec.MaxLoadedVersions = ptr.To[int32](3)
				cv.Spec.Strategy = splicev1.RolloutStrategy{Type: splicev1.StrategyCanary, Canary: &splicev1.CanaryStrategy{Steps: []splicev1.CanaryStep{step(10, nil)}, OnFailure: splicev1.FailurePause}}
			},
			want: func(cv *splicev1.CompilerVersion) {
				cv.Spec.Plugin.Symbol = "Greeter"
				cv.Spec.MaxLoadedVersions = ptr.To[int32](3)
				cv.Spec.Strategy = splicev1.RolloutStrategy{Type: splicev1.StrategyCanary, Canary: &splicev1.CanaryStrategy{Steps: []splicev1.CanaryStep{step(10, nil)}, OnFailure: splicev1.FailurePause}}
			},
		},
		{
			name: "strict gets nothing strategy-specific",
			in: func(cv *splicev1.CompilerVersion) {
				cv.Spec.Strategy = splicev1.RolloutStrategy{Type: splicev1.StrategyStrict}
			},
			want: func(cv *splicev1.CompilerVersion) {
				cv.Spec.Strategy = splicev1.RolloutStrategy{Type: splicev1.StrategyStrict}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := gitCV("cv", map[string]string{"app": "greeter"})
			tt.in(got)
			want := gitCV("cv", map[string]string{"app": "greeter"})
			want.Spec.Plugin.Symbol, want.Spec.MaxLoadedVersions = "Plugin", ptr.To[int32](8)
			want.Spec.Strategy.RollingPatch = &splicev1.RollingPatchStrategy{MaxUnavailable: ptr.To(intstr.FromString("25%"))}
			tt.want(want)
			DefaultCompilerVersion(got)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("defaults differ (-want +got):\n%s", diff)
			}
			again := got.DeepCopy()
			DefaultCompilerVersion(again)
			if diff := cmp.Diff(got, again); diff != "" {
				t.Fatalf("defaulting twice changed the object:\n%s", diff)
			}
		})
	}
}
