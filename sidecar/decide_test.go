package sidecar

import (
	"testing"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/host/control"
)

func TestDecide(t *testing.T) {
	swapA := Target{Ref: ref(dA), Digest: dA, Percent: 100}
	canaryA := Target{Ref: ref(dA), Digest: dA, Percent: 20, StableRef: ref(dB), StableDigest: dB}
	report := func(tg Target, s splicev1.SwapState) *splicev1.PodReport {
		return &splicev1.PodReport{Artifact: tg.Ref, Digest: tg.Digest, State: s, TrafficPercent: tg.trafficPercent()}
	}
	pct := func(p int32) *int32 { return &p }
	tests := []struct {
		name   string
		target Target
		st     control.Status
		last   *splicev1.PodReport
		want   action
		reason string
		// crashed: the target's version crashed this pod's host before (Swapper.CrashOf).
		crashed bool
	}{
		{name: "fresh host runs B", target: swapA, st: control.Status{Current: dB, Versions: []control.VersionStatus{loaded(dB, control.StateCurrent)}}, want: actApply},
		{name: "already serving (agent restarted after the swap)", target: swapA, st: control.Status{Current: dA}, last: report(swapA, splicev1.SwapSwapping), want: actReady},
		{name: "serving, no report yet", target: swapA, st: control.Status{Current: dA}, want: actReady},
		{name: "failed for this target stays failed", target: swapA, st: control.Status{Current: dB}, last: report(swapA, splicev1.SwapFailed), want: actKeep},
		{name: "incompatible stays incompatible", target: swapA, st: control.Status{Current: dB}, last: report(swapA, splicev1.SwapIncompatible), want: actKeep},
		{name: "rolled back stays rolled back", target: swapA, st: control.Status{Current: dB, Versions: []control.VersionStatus{loaded(dA, control.StateRetired)}}, last: report(swapA, splicev1.SwapRolledBack), want: actKeep},
		{name: "failed for another target does not stick", target: swapA, st: control.Status{Current: dB}, last: report(Target{Ref: ref(dC), Digest: dC, Percent: 100}, splicev1.SwapFailed), want: actApply},
		{name: "a new traffic share is a new target", target: canaryA, st: control.Status{Current: dB, Canary: dA, CanaryPercent: 10, Versions: []control.VersionStatus{loaded(dB, control.StateCurrent), loaded(dA, control.StateCanary)}},
			last: &splicev1.PodReport{Artifact: ref(dA), Digest: dA, State: splicev1.SwapFailed, TrafficPercent: pct(10)}, want: actApply},
		{name: "host rolled back on its own", target: swapA, st: control.Status{Current: dB, Versions: []control.VersionStatus{loaded(dB, control.StateCurrent), loaded(dA, control.StateRetired)},
			LastSwap: &control.SwapResult{Op: control.OpAutoRollback, From: dA, To: dB, Reason: dA + " panicked 3 times"}}, last: report(swapA, splicev1.SwapReady), want: actRolledBack, reason: ReasonHostRolledBack},
		{name: "host rolled back before the agent reported Ready (agent restart)", target: swapA, st: control.Status{Current: dB, Versions: []control.VersionStatus{loaded(dA, control.StateRetired)},
			LastSwap: &control.SwapResult{Op: control.OpAutoRollback, From: dA, To: dB, Reason: dA + " panicked 3 times"}}, last: report(swapA, splicev1.SwapSwapping), want: actRolledBack, reason: ReasonHostRolledBack},
		{name: "canary dropped by the host", target: canaryA, st: control.Status{Current: dB, Versions: []control.VersionStatus{loaded(dB, control.StateCurrent), loaded(dA, control.StateRetired)},
			LastSwap: &control.SwapResult{Op: control.OpAutoRollback, From: dB, To: dB, Reason: "canary " + dA + " dropped"}}, last: report(canaryA, splicev1.SwapReady), want: actRolledBack, reason: ReasonHostRolledBack},
		{name: "someone else swapped away", target: swapA, st: control.Status{Current: dB, Versions: []control.VersionStatus{loaded(dB, control.StateCurrent), loaded(dA, control.StateRetired)},
			LastSwap: &control.SwapResult{Op: control.OpSwap, From: dA, To: dB}}, last: report(swapA, splicev1.SwapReady), want: actRolledBack, reason: ReasonRoutedAway},
		{name: "back to an earlier version the controller asks for again", target: swapA, st: control.Status{Current: dB, Versions: []control.VersionStatus{loaded(dA, control.StateRetired), loaded(dB, control.StateCurrent)},
			LastSwap: &control.SwapResult{Op: control.OpSwap, From: dA, To: dB}}, last: report(Target{Ref: ref(dB), Digest: dB, Percent: 100}, splicev1.SwapReady), want: actApply},
		{name: "host restarted and lost the version", target: swapA, st: control.Status{Current: dB, Versions: []control.VersionStatus{loaded(dB, control.StateCurrent)}}, last: report(swapA, splicev1.SwapReady), want: actApply},
		{name: "canary in place", target: canaryA, st: control.Status{Current: dB, Canary: dA, CanaryPercent: 20}, want: actReady},
		{name: "canary share differs", target: canaryA, st: control.Status{Current: dB, Canary: dA, CanaryPercent: 50, Versions: []control.VersionStatus{loaded(dA, control.StateCanary)}}, want: actApply},
		{name: "full swap wanted while a canary runs", target: swapA, st: control.Status{Current: dB, Canary: dA, CanaryPercent: 20, Versions: []control.VersionStatus{loaded(dA, control.StateCanary)}}, want: actApply},
		{name: "current with a stray canary is not the target", target: swapA, st: control.Status{Current: dA, Canary: dC, CanaryPercent: 20}, want: actApply},
		// A version that crashed the host is never asked for again; the restarted host serves
		// its own version.
		{name: "crashed the host after it was reported Ready", target: swapA, st: control.Status{Current: dB, Versions: []control.VersionStatus{loaded(dB, control.StateCurrent)}},
			last: report(swapA, splicev1.SwapReady), crashed: true, want: actCrashed, reason: ReasonHostCrashed},
		{name: "crashed the host during the load", target: swapA, st: control.Status{Current: dB}, last: report(swapA, splicev1.SwapSwapping), crashed: true, want: actCrashed, reason: ReasonHostCrashed},
		{name: "crashed, reported by an agent that restarted since", target: swapA, st: control.Status{Current: dB}, crashed: true, want: actCrashed, reason: ReasonHostCrashed},
		{name: "crashed, already reported: rewritten from the record", target: swapA, st: control.Status{Current: dB}, last: report(swapA, splicev1.SwapCrashed), crashed: true, want: actCrashed, reason: ReasonHostCrashed},
		{name: "crashed outcome stands without the record", target: swapA, st: control.Status{Current: dB}, last: report(swapA, splicev1.SwapCrashed), want: actKeep},
		{name: "a canary that crashed the host", target: canaryA, st: control.Status{Current: dB}, last: report(canaryA, splicev1.SwapReady), crashed: true, want: actCrashed, reason: ReasonHostCrashed},
		{name: "a failure reported before the crash stands", target: swapA, st: control.Status{Current: dB}, last: report(swapA, splicev1.SwapFailed), crashed: true, want: actKeep},
		{name: "crashed, but the host serves it on its own", target: swapA, st: control.Status{Current: dA}, last: report(swapA, splicev1.SwapReady), crashed: true, want: actReady},
		// Consent is per target: a refusal for the lack of it is undone by the consent.
		{name: "minor change refused, consent given since", target: withConsent(swapA), st: control.Status{Current: dB},
			last: refused(swapA, splicev1.ReasonMinorAPIChangeNotAllowed), want: actApply},
		{name: "minor change refused, still no consent", target: swapA, st: control.Status{Current: dB}, last: refused(swapA, splicev1.ReasonMinorAPIChangeNotAllowed), want: actKeep},
		{name: "major change refused, consent changes nothing", target: withConsent(swapA), st: control.Status{Current: dB}, last: refused(swapA, splicev1.ReasonMajorAPIChange), want: actKeep},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, reason, msg := decide(tt.target, &tt.st, tt.last, tt.crashed)
			if got != tt.want || reason != tt.reason {
				t.Fatalf("decide = %v %q (%s); want %v %q", got, reason, msg, tt.want, tt.reason)
			}
			if (got == actRolledBack || got == actCrashed) && msg == "" {
				t.Fatal("a rollback needs a message saying what happened")
			}
		})
	}
}

// withConsent is t with the pod's consent to a minor plugin API change.
func withConsent(t Target) Target {
	t.AllowMinor = true
	return t
}

// refused is an Incompatible report about t with the given reason.
func refused(t Target, reason string) *splicev1.PodReport {
	return &splicev1.PodReport{Artifact: t.Ref, Digest: t.Digest, State: splicev1.SwapIncompatible, Reason: reason, TrafficPercent: t.trafficPercent()}
}
