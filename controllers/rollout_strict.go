package controllers

import (
	"fmt"
	"slices"
	"strings"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

// planStrict: every pod is told to run the artifact at once; the agent's preflight enforces the
// exact toolchain and package match and reports pods that cannot load it as Incompatible, and
// so does a host refusing a major plugin API change (reason MajorAPIChange), which no host swaps
// in place. Those are evicted when recreateIncompatible is set, so that their controller
// recreates them from their template, whose image must carry a matching host — at most once
// per pod template and artifact (decideEvictions), so that an image that does not match is
// reported, not evicted in a loop — and are otherwise only reported. A pod refused a minor API
// change for want of consent is never evicted: recreating it cannot give consent, the spec
// does. Any failed swap (Failed, RolledBack, Crashed) rolls every pod back to the stable
// artifact; in the first rollout, with none, the rollout stops instead (planFirst).
func planStrict(in *rolloutInput, pl *rolloutPlan) *rolloutPlan {
	failed, incompatible := failedPods(in, anyPod)
	if len(failed) > 0 {
		return rollBack(in, pl, splicev1.ReasonSwapFailed, fmt.Sprintf("Strict: the swap of %s failed on %s", in.artifact.Digest, failedSummary(in, failed)))
	}
	pl.targets = everyPod(in, splicev1.DesiredState{Artifact: in.artifact.Ref})
	done := countDone(in, anyPod, nil)
	if len(in.pods) > 0 && done == len(in.pods) {
		return complete(in, pl)
	}
	what := "Strict"
	if in.stable == nil {
		what = "Strict, first rollout (no stable artifact yet, every pod moves at once)"
	}
	pl.phase = splicev1.PhaseProgressing
	pl.message = fmt.Sprintf("%s: %d of %d pods run %s", what, done, len(in.pods), in.artifact.Digest)
	pl.progressing = cond(splicev1.ConditionProgressing, true, splicev1.ReasonSwapping, pl.message)
	if len(incompatible) > 0 {
		strictIncompatible(in, pl, incompatible)
	}
	return pl
}

// strictIncompatible decides about the pods whose host cannot load the artifact and says so in
// the message and the Degraded condition: Degraded phase whenever the rollout cannot go on by
// itself (pods only reported, a template whose recreated pods still cannot load it, a full
// eviction record), Progressing while evictions may still bring it about.
func strictIncompatible(in *rolloutInput, pl *rolloutPlan, incompatible []string) {
	noConsent := slices.DeleteFunc(slices.Clone(incompatible), func(name string) bool {
		return reportReason(in, name) != splicev1.ReasonMinorAPIChangeNotAllowed
	})
	recreatable := slices.DeleteFunc(slices.Clone(incompatible), func(name string) bool { return slices.Contains(noConsent, name) })
	var parts []string
	stuck, reason := len(noConsent) > 0, splicev1.ReasonIncompatiblePods
	if len(recreatable) > 0 {
		part := fmt.Sprintf("the host of %s cannot load %s%s", failureSummary(recreatable), in.artifact.Digest, majorNote(in, recreatable))
		if recreateIncompatible(in) {
			d := decideEvictions(in, pl.evictions, recreatable)
			pl.evict, pl.evictions = d.evict, d.record
			part += d.describe(in)
			stuck = stuck || d.stuck()
			if len(d.recreated) > 0 {
				reason = splicev1.ReasonIncompatibleAfterRecreate
			}
		} else {
			part += "; they stay as they are: set spec.strategy.strict.recreateIncompatible to recreate them from their template, and " +
				imageNeeds(in, recreatable)
			stuck = true
		}
		parts = append(parts, part)
	}
	if len(noConsent) > 0 {
		parts = append(parts, fmt.Sprintf("the host of %s refuses %s, a minor plugin API change it is not allowed (%s): set spec.plugin.allowMinorAPIChange to consent to it",
			failureSummary(noConsent), in.artifact.Digest, splicev1.ReasonMinorAPIChangeNotAllowed))
	}
	msg := "Strict: " + strings.Join(parts, "; and ")
	if stuck {
		pl.phase = splicev1.PhaseDegraded
	}
	pl.degr = cond(splicev1.ConditionDegraded, true, reason, msg)
	pl.message = msg
}

// reportReason is the reason of the named pod's report.
func reportReason(in *rolloutInput, name string) string {
	for _, p := range in.pods {
		if p.name == name && p.report != nil {
			return p.report.Reason
		}
	}
	return ""
}

// majorChange reports whether any of the named pods refuses the artifact for a major plugin API
// change.
func majorChange(in *rolloutInput, names []string) bool {
	return slices.ContainsFunc(names, func(name string) bool { return reportReason(in, name) == splicev1.ReasonMajorAPIChange })
}

// majorNote explains a major plugin API change, when that is why pods refuse the artifact.
func majorNote(in *rolloutInput, names []string) string {
	if !majorChange(in, names) {
		return ""
	}
	return fmt.Sprintf(": its plugin API %s is a major change (%s), which no host swaps in place", in.artifact.APIVersion, splicev1.ReasonMajorAPIChange)
}

// imageNeeds says what must be true of the image of a pod whose host cannot load the artifact.
func imageNeeds(in *rolloutInput, names []string) string {
	if majorChange(in, names) {
		if m := major(in.artifact.APIVersion); m >= 0 {
			return fmt.Sprintf("its image must carry a host built against plugin API %d.x", m)
		}
		return "its image must carry a host built against the artifact's plugin API major version"
	}
	return fmt.Sprintf("its image must carry a host built with %s and the package versions the plugin was built with", goRelease(in))
}

// goRelease is the Go release hosts must be built with: "go1.26.8".
func goRelease(in *rolloutInput) string {
	if in.goVersion != "" {
		return "go" + in.goVersion
	}
	if in.artifact.GoVersion != "" {
		return in.artifact.GoVersion
	}
	return "the artifact's Go release"
}

// recreateIncompatible reports whether the policy asks for incompatible pods to be evicted.
func recreateIncompatible(in *rolloutInput) bool {
	return in.strategy.Strict != nil && in.strategy.Strict.RecreateIncompatible
}
