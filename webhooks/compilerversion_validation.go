package webhooks

import (
	"fmt"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

// DefaultCompilerVersion fills in what the user left out: spec.plugin.symbol, the strategy type,
// rollingPatch.maxUnavailable for RollingPatch, canary.onFailure for Canary, and
// maxLoadedVersions, each with the API's default (splicev1.Default*). The CRD schema defaults
// them too, but only inside objects that are present (strategy.rollingPatch.maxUnavailable
// needs strategy.rollingPatch), and typed clients may skip the schema's defaults on their own
// copies. It never overwrites a value that is set.
func DefaultCompilerVersion(cv *splicev1.CompilerVersion) {
	s := &cv.Spec
	s.Plugin.Symbol = s.Plugin.SymbolOrDefault()
	s.Strategy.Type = s.Strategy.TypeOrDefault()
	switch s.Strategy.Type {
	case splicev1.StrategyRollingPatch:
		if s.Strategy.RollingPatch == nil {
			s.Strategy.RollingPatch = &splicev1.RollingPatchStrategy{}
		}
		rp := s.Strategy.RollingPatch
		rp.MaxUnavailable = ptr.To(rp.MaxUnavailableOrDefault())
		rp.OnFailure = rp.OnFailureOrDefault()
	case splicev1.StrategyCanary:
		if c := s.Strategy.Canary; c != nil {
			c.OnFailure = c.OnFailureOrDefault()
		}
	}
	s.MaxLoadedVersions = ptr.To(s.MaxLoadedVersionsOrDefault())
}

// inFlightUnlocked reports whether a change may touch what a rollout in progress protects: no
// rollout is under way (old.RolloutActive), or it is aborted in this change or an earlier one.
func inFlightUnlocked(old, cv *splicev1.CompilerVersion) bool {
	return !old.RolloutActive() || old.Aborted() || cv.Aborted()
}

// validateSelector checks what the schema cannot: that the selector parses (label key and value
// syntax, operators and their values).
func validateSelector(cv *splicev1.CompilerVersion) field.ErrorList {
	p := field.NewPath("spec", "selector")
	if _, err := metav1.LabelSelectorAsSelector(&cv.Spec.Selector); err != nil {
		return field.ErrorList{field.Invalid(p, metav1.FormatLabelSelector(&cv.Spec.Selector), fmt.Sprintf("is not a valid label selector: %v", err))}
	}
	return nil
}

// validateStrategy checks that the strategy's parameters make sense together. A canary only
// moves forward: each step's setWeight (share of pods) and trafficPercent (share of requests in
// updated pods, unset meaning 100) is at least the previous step's — going back is what abort
// and rollback are for. trafficPercent needs pods to route in, so it is refused at setWeight 0.
func validateStrategy(spec *splicev1.CompilerVersionSpec) field.ErrorList {
	var errs field.ErrorList
	c := spec.Strategy.Canary
	if spec.Strategy.Type != splicev1.StrategyCanary || c == nil {
		return nil
	}
	steps := field.NewPath("spec", "strategy", "canary", "steps")
	traffic := func(s splicev1.CanaryStep) int32 { return ptr.Deref(s.TrafficPercent, 100) }
	for i, s := range c.Steps {
		p := steps.Index(i)
		if s.SetWeight == 0 && s.TrafficPercent != nil {
			errs = append(errs, field.Invalid(p.Child("trafficPercent"), *s.TrafficPercent,
				"has no effect at setWeight 0 (no pod runs the new version): remove it, or give the step a setWeight above 0"))
		}
		if i == 0 {
			continue
		}
		prev := c.Steps[i-1]
		if s.SetWeight < prev.SetWeight {
			errs = append(errs, field.Invalid(p.Child("setWeight"), s.SetWeight,
				fmt.Sprintf("must be at least %d (steps[%d].setWeight): canary weights never go backwards; to undo a step, abort the rollout", prev.SetWeight, i-1)))
		}
		if traffic(s) < traffic(prev) {
			what := "unset, meaning 100"
			if prev.TrafficPercent != nil {
				what = fmt.Sprint(*prev.TrafficPercent)
			}
			errs = append(errs, field.Invalid(p.Child("trafficPercent"), traffic(s),
				fmt.Sprintf("must be at least steps[%d].trafficPercent (%s): the share of requests routed to the new version never goes backwards; to undo a step, abort the rollout", i-1, what)))
		}
	}
	return errs
}

// validateInFlight refuses changes to what the rollout in progress is rolling out: the Go
// release, the plugin source (git URL and revision, or artifact), the package and tags it is
// built from, and the strategy type whose plan is being followed. Changing any of them mid-way
// would leave pods on an artifact that no longer belongs to the spec. The git secretRef stays
// changeable: rotating credentials must not wait for a rollout. Once the rollout is over, or
// aborted with the annotation splice.dev/abort: "true" (splicev1.AnnotationAbort, the rollout
// controller's level-triggered abort) in this change or an earlier one, everything may change:
// an aborted rollout has nothing left to protect, and "abort and start over with this" is then
// one apply.
func validateInFlight(old, cv *splicev1.CompilerVersion) field.ErrorList {
	if inFlightUnlocked(old, cv) {
		return nil
	}
	why := fmt.Sprintf("cannot change while a rollout is %s: wait until it finishes, or abort it by setting the annotation %s: \"true\" (in this change or before)", old.Status.Phase, splicev1.AnnotationAbort)
	var errs field.ErrorList
	spec, plugin := field.NewPath("spec"), field.NewPath("spec", "plugin")
	if old.Spec.GoVersion != cv.Spec.GoVersion {
		errs = append(errs, field.Forbidden(spec.Child("goVersion"), why))
	}
	errs = append(errs, sourceChanges(plugin.Child("source"), old.Spec.Plugin.Source, cv.Spec.Plugin.Source, why)...)
	if old.Spec.Plugin.Package != cv.Spec.Plugin.Package {
		errs = append(errs, field.Forbidden(plugin.Child("package"), why))
	}
	if !slices.Equal(tagSet(old.Spec.Plugin.Tags), tagSet(cv.Spec.Plugin.Tags)) {
		errs = append(errs, field.Forbidden(plugin.Child("tags"), why))
	}
	if old.Spec.Strategy.Type != cv.Spec.Strategy.Type {
		errs = append(errs, field.Forbidden(spec.Child("strategy", "type"), why))
	}
	return errs
}

func sourceChanges(p *field.Path, old, cur splicev1.PluginSource, why string) field.ErrorList {
	switch {
	case (old.Git == nil) != (cur.Git == nil):
		return field.ErrorList{field.Forbidden(p, why)}
	case old.Git != nil:
		var errs field.ErrorList
		if old.Git.URL != cur.Git.URL {
			errs = append(errs, field.Forbidden(p.Child("git", "url"), why))
		}
		if old.Git.Revision != cur.Git.Revision {
			errs = append(errs, field.Forbidden(p.Child("git", "revision"), why))
		}
		return errs
	case old.Artifact != cur.Artifact:
		return field.ErrorList{field.Forbidden(p.Child("artifact"), why)}
	}
	return nil
}

// tagSet makes tags comparable as a set (the list is +listType=set: order carries no meaning).
func tagSet(tags []string) []string {
	s := slices.Clone(tags)
	slices.Sort(s)
	return slices.Compact(s)
}

// validateNoOverlap refuses a selector that could select a pod that another CompilerVersion in
// the namespace also selects (SelectorsOverlap), naming that CompilerVersion and a label set
// that both would match. Others whose selector is malformed are skipped: they select nothing.
func validateNoOverlap(cv *splicev1.CompilerVersion, others []splicev1.CompilerVersion) field.ErrorList {
	p := field.NewPath("spec", "selector")
	var errs field.ErrorList
	for i := range others {
		o := &others[i]
		if o.Name == cv.Name {
			continue
		}
		overlap, witness, err := SelectorsOverlap(&cv.Spec.Selector, &o.Spec.Selector)
		if err != nil || !overlap {
			continue
		}
		example := "a pod with no labels"
		if len(witness) > 0 {
			example = "a pod labelled " + witness.String()
		}
		msg := fmt.Sprintf("selects the same pods as CompilerVersion %q (selector %q; %s would match both): two CompilerVersions in a namespace must not select the same pods — make the selectors disjoint, e.g. require a different value of a label both use",
			o.Name, metav1.FormatLabelSelector(&o.Spec.Selector), example)
		if o.DeletionTimestamp != nil {
			msg += fmt.Sprintf("; %q is being deleted: retry once it is gone", o.Name)
		}
		errs = append(errs, field.Invalid(p, metav1.FormatLabelSelector(&cv.Spec.Selector), msg))
	}
	return errs
}
