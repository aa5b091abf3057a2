package v1alpha1_test

import (
	"testing"

	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

func TestOrDefault(t *testing.T) {
	tests := []struct {
		name      string
		got, want any
	}{
		{name: "symbol unset", got: (&splicev1.PluginSpec{}).SymbolOrDefault(), want: "Plugin"},
		{name: "symbol set", got: (&splicev1.PluginSpec{Symbol: "Greeter"}).SymbolOrDefault(), want: "Greeter"},
		{name: "strategy type unset", got: (&splicev1.RolloutStrategy{}).TypeOrDefault(), want: splicev1.StrategyRollingPatch},
		{name: "strategy type set", got: (&splicev1.RolloutStrategy{Type: splicev1.StrategyCanary}).TypeOrDefault(), want: splicev1.StrategyCanary},
		{name: "rollingPatch left out", got: (*splicev1.RollingPatchStrategy)(nil).MaxUnavailableOrDefault(), want: intstr.FromString("25%")},
		{name: "maxUnavailable unset", got: (&splicev1.RollingPatchStrategy{}).MaxUnavailableOrDefault(), want: intstr.FromString("25%")},
		{name: "maxUnavailable a number", got: (&splicev1.RollingPatchStrategy{MaxUnavailable: ptr.To(intstr.FromInt32(2))}).MaxUnavailableOrDefault(), want: intstr.FromInt32(2)},
		{name: "maxUnavailable a percentage", got: (&splicev1.RollingPatchStrategy{MaxUnavailable: ptr.To(intstr.FromString("50%"))}).MaxUnavailableOrDefault(), want: intstr.FromString("50%")},
		{name: "rollingPatch left out: onFailure", got: (*splicev1.RollingPatchStrategy)(nil).OnFailureOrDefault(), want: splicev1.FailureRollback},
		{name: "rollingPatch onFailure unset", got: (&splicev1.RollingPatchStrategy{}).OnFailureOrDefault(), want: splicev1.FailureRollback},
		{name: "rollingPatch onFailure set", got: (&splicev1.RollingPatchStrategy{OnFailure: splicev1.FailurePause}).OnFailureOrDefault(), want: splicev1.FailurePause},
		{name: "canary left out", got: (*splicev1.CanaryStrategy)(nil).OnFailureOrDefault(), want: splicev1.FailureRollback},
		{name: "onFailure unset", got: (&splicev1.CanaryStrategy{}).OnFailureOrDefault(), want: splicev1.FailureRollback},
		{name: "onFailure set", got: (&splicev1.CanaryStrategy{OnFailure: splicev1.FailurePause}).OnFailureOrDefault(), want: splicev1.FailurePause},
		{name: "maxLoadedVersions unset", got: (&splicev1.CompilerVersionSpec{}).MaxLoadedVersionsOrDefault(), want: int32(8)},
		{name: "maxLoadedVersions set", got: (&splicev1.CompilerVersionSpec{MaxLoadedVersions: ptr.To[int32](3)}).MaxLoadedVersionsOrDefault(), want: int32(3)},
		{name: "minCalls unset", got: (&splicev1.CanaryAnalysis{}).MinCallsOrDefault(), want: int32(100)},
		{name: "minCalls 0 judges at once", got: (&splicev1.CanaryAnalysis{MinCalls: ptr.To[int32](0)}).MinCallsOrDefault(), want: int32(0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Fatalf("got %#v, want %#v", tt.got, tt.want)
			}
		})
	}
}
