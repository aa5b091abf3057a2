package v1alpha1

import (
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/splice-dev/splice/host/control"
)

// The spec's defaults. The API server applies them from the CRD's schema, but only inside
// objects that are present (rollingPatch.maxUnavailable needs a rollingPatch block), the
// admission webhook fills them in again, and code reading a spec it did not get from the API
// server (a typed client's own copy, a test's literal) sees them unset: every reader takes a
// default through the OrDefault methods below, never by restating it. The +kubebuilder:default
// markers in compilerversion_types.go must repeat the values as literals (controller-gen
// evaluates no Go), and TestCRDDefaults holds the generated CRD to these constants.
const (
	// DefaultSymbol is spec.plugin.symbol's default: the host library's and the builder's.
	DefaultSymbol = control.DefaultSymbol
	// DefaultStrategyType is spec.strategy.type's default.
	DefaultStrategyType = StrategyRollingPatch
	// DefaultMaxUnavailable is spec.strategy.rollingPatch.maxUnavailable's default.
	DefaultMaxUnavailable = "25%"
	// DefaultOnFailure is spec.strategy.canary.onFailure's default.
	DefaultOnFailure = FailureRollback
	// DefaultRollingPatchOnFailure is spec.strategy.rollingPatch.onFailure's default: the same
	// as Canary's.
	DefaultRollingPatchOnFailure = FailureRollback
	// DefaultMaxLoadedVersions is spec.maxLoadedVersions' default.
	DefaultMaxLoadedVersions int32 = 8
	// MinMaxLoadedVersions and MaxMaxLoadedVersions bound spec.maxLoadedVersions (the CRD's
	// markers repeat them as literals; TestCRDDefaults holds them equal). Two is the least that
	// keeps a version to roll back to across a re-exec.
	MinMaxLoadedVersions int32 = 2
	MaxMaxLoadedVersions int32 = 100
	// DefaultAnalysisMinCalls is analysis.minCalls when maxErrorRatePercent is set and minCalls
	// is not. It has no schema default: it applies only beside maxErrorRatePercent.
	DefaultAnalysisMinCalls = 100
)

// SymbolOrDefault is symbol, or DefaultSymbol when it is not set.
func (p *PluginSpec) SymbolOrDefault() string {
	if p.Symbol != "" {
		return p.Symbol
	}
	return DefaultSymbol
}

// TypeOrDefault is type, or DefaultStrategyType when it is not set.
func (s *RolloutStrategy) TypeOrDefault() StrategyType {
	if s.Type != "" {
		return s.Type
	}
	return DefaultStrategyType
}

// MaxUnavailableOrDefault is maxUnavailable, or DefaultMaxUnavailable when it is not set. The
// receiver may be nil (strategy.rollingPatch left out).
func (s *RollingPatchStrategy) MaxUnavailableOrDefault() intstr.IntOrString {
	if s != nil && s.MaxUnavailable != nil {
		return *s.MaxUnavailable
	}
	return intstr.FromString(DefaultMaxUnavailable)
}

// OnFailureOrDefault is onFailure, or DefaultOnFailure when it is not set. The receiver may be
// nil (strategy.canary left out).
func (c *CanaryStrategy) OnFailureOrDefault() FailurePolicy {
	if c != nil && c.OnFailure != "" {
		return c.OnFailure
	}
	return DefaultOnFailure
}

// OnFailureOrDefault is onFailure, or DefaultRollingPatchOnFailure when it is not set. The
// receiver may be nil (strategy.rollingPatch left out).
func (s *RollingPatchStrategy) OnFailureOrDefault() FailurePolicy {
	if s != nil && s.OnFailure != "" {
		return s.OnFailure
	}
	return DefaultRollingPatchOnFailure
}

// MaxLoadedVersionsOrDefault is maxLoadedVersions, or DefaultMaxLoadedVersions when it is not
// set.
func (s *CompilerVersionSpec) MaxLoadedVersionsOrDefault() int32 {
	if s.MaxLoadedVersions != nil {
		return *s.MaxLoadedVersions
	}
	return DefaultMaxLoadedVersions
}

// MinCallsOrDefault is minCalls, or DefaultAnalysisMinCalls when it is not set.
func (a *CanaryAnalysis) MinCallsOrDefault() int32 {
	if a.MinCalls != nil {
		return *a.MinCalls
	}
	return DefaultAnalysisMinCalls
}
