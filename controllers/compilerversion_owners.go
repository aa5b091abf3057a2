package controllers

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

// Ownership: a pod belongs to exactly one CompilerVersion. The admission webhook refuses a
// selector that could overlap another's, but two creates racing each other can both pass it,
// and a pod's labels can change later; so the controller decides, for every pod, which of the
// CompilerVersions that select it owns it: the oldest by creation time, then the first by
// name. The rule depends on nothing but the CompilerVersions (their creation times never
// change), so the reconciles of all of them, in any order and after any restart, agree on it
// without talking to each other. A CompilerVersion being deleted, or whose selector is unusable
// or empty, claims nothing. Only the owner counts a pod, writes its desired state (and its
// splice.dev/compiler-version annotation, which names the owner) and evicts it; every other one
// leaves it alone and is Degraded (ReasonOverlappingSelector), naming the owner and the pods.

// claimant is a CompilerVersion that may claim pods.
type claimant struct {
	name    string
	created metav1.Time
	sel     labels.Selector
}

// claimants returns the CompilerVersions that may claim pods, in the order they claim: oldest
// first, then by name.
func claimants(cvs []splicev1.CompilerVersion) []claimant {
	var out []claimant
	for i := range cvs {
		cv := &cvs[i]
		if cv.DeletionTimestamp != nil {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(&cv.Spec.Selector)
		if err != nil || sel.Empty() {
			continue
		}
		out = append(out, claimant{name: cv.Name, created: cv.CreationTimestamp, sel: sel})
	}
	slices.SortFunc(out, func(a, b claimant) int {
		if c := a.created.Compare(b.created.Time); c != 0 {
			return c
		}
		return strings.Compare(a.name, b.name)
	})
	return out
}

// ownerOf returns the name of the CompilerVersion that owns a pod with these labels: the first
// claimant whose selector matches them, or "" when none does.
func ownerOf(cs []claimant, set labels.Set) string {
	for _, c := range cs {
		if c.sel.Matches(set) {
			return c.name
		}
	}
	return ""
}

// foreignPod is a pod the selector matches and another CompilerVersion owns.
type foreignPod struct{ pod, owner string }

// overlapMessage says which pods the selector matches that others own, or "" when none.
func overlapMessage(foreign []foreignPod) string {
	byOwner := map[string][]string{}
	for _, f := range foreign {
		byOwner[f.owner] = append(byOwner[f.owner], f.pod)
	}
	var parts []string
	for _, owner := range slices.Sorted(maps.Keys(byOwner)) {
		parts = append(parts, fmt.Sprintf("CompilerVersion %q owns %s", owner, failureSummary(byOwner[owner])))
	}
	if len(parts) == 0 {
		return ""
	}
	return fmt.Sprintf("spec.selector also matches pods that another CompilerVersion selects and owns (the oldest owns a pod both select): %s; "+
		"this one leaves them alone: make the selectors disjoint", strings.Join(parts, ", "))
}

// withOverlap records in the plan that the selector matches pods another CompilerVersion owns:
// Degraded, reason OverlappingSelector, the rollout's own failure (if any) after it. The phase
// becomes Degraded too where it only says how the rollout goes (Progressing, Completed); a
// phase the next plan reads back as a decision (RolledBack, Paused, Building, ...) is kept.
func withOverlap(pl *rolloutPlan, foreign []foreignPod) {
	msg := overlapMessage(foreign)
	if msg == "" {
		return
	}
	if pl.degr.Status == metav1.ConditionTrue {
		msg += "; and " + pl.degr.Message
	}
	pl.degr = cond(splicev1.ConditionDegraded, true, splicev1.ReasonOverlappingSelector, msg)
	if pl.phase == splicev1.PhaseProgressing || pl.phase == splicev1.PhaseCompleted {
		pl.phase = splicev1.PhaseDegraded
		pl.message = msg
	}
}
