package webhooks

import (
	"fmt"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/util/sets"
)

// SelectorsOverlap reports whether some set of labels satisfies both selectors, that is whether
// a pod could exist — now or later — that both select. When they overlap it also returns such a
// label set, to show the user.
//
// The question is decided exactly, not by looking at today's pods: pods come and go, and two
// CompilerVersions must never be able to claim the same pod. Requirements on different keys are
// independent, so the selectors overlap exactly when, for every key, the requirements of both
// selectors on that key can hold together:
//   - Exists (or In) and DoesNotExist contradict each other;
//   - with In, some value must be in every In set and in no NotIn set;
//   - with Exists but no In, a value outside every NotIn set always exists (label values are an
//     unbounded set as far as a finite NotIn list is concerned);
//   - NotIn and DoesNotExist alone are satisfied by leaving the label off.
//
// matchLabels entries count as In with one value, so two matchLabels with different values for
// the same key make the selectors disjoint, and selectors on unrelated keys overlap (a pod could
// carry both labels). An error means a selector is malformed.
//
// This is the admission-time check. It cannot be the only one: two creates racing each other
// can both pass it, so the rollout controller decides, for each pod two CompilerVersions
// select, which one owns it (the oldest, then the first by name) and has the other leave it
// alone (controllers/compilerversion_owners.go).
func SelectorsOverlap(a, b *metav1.LabelSelector) (bool, labels.Set, error) {
	ra, err := requirements(a)
	if err != nil {
		return false, nil, err
	}
	rb, err := requirements(b)
	if err != nil {
		return false, nil, err
	}
	byKey := map[string][]labels.Requirement{}
	var keys []string
	for _, r := range slices.Concat(ra, rb) {
		if _, ok := byKey[r.Key()]; !ok {
			keys = append(keys, r.Key())
		}
		byKey[r.Key()] = append(byKey[r.Key()], r)
	}
	slices.Sort(keys)
	witness := labels.Set{}
	for _, k := range keys {
		value, present, ok := satisfy(byKey[k])
		if !ok {
			return false, nil, nil
		}
		if present {
			witness[k] = value
		}
	}
	return true, witness, nil
}

func requirements(s *metav1.LabelSelector) ([]labels.Requirement, error) {
	if s == nil {
		// CompilerVersions always have one (the schema requires it); refuse to guess.
		return nil, fmt.Errorf("no selector")
	}
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		return nil, err
	}
	reqs, _ := sel.Requirements()
	return reqs, nil
}

// satisfy decides whether the requirements on one key can hold together, and if so returns a
// label value that satisfies them (present=false: leave the label off).
func satisfy(reqs []labels.Requirement) (value string, present, ok bool) {
	mustExist, mustNotExist := false, false
	var in sets.Set[string] // nil: no In constraint yet
	notIn := sets.New[string]()
	for _, r := range reqs {
		switch r.Operator() {
		case selection.In, selection.Equals, selection.DoubleEquals:
			mustExist = true
			vals := sets.New(r.ValuesUnsorted()...)
			if in == nil {
				in = vals.Clone()
			} else {
				in = in.Intersection(vals)
			}
		case selection.NotIn, selection.NotEquals:
			notIn.Insert(r.ValuesUnsorted()...)
		case selection.Exists:
			mustExist = true
		case selection.DoesNotExist:
			mustNotExist = true
		default:
			// Gt and Lt cannot appear in a metav1.LabelSelector; if one ever does, assume the
			// worst and call it satisfiable, so an overlap is reported rather than missed.
			mustExist = true
		}
	}
	switch {
	case mustExist && mustNotExist:
		return "", false, false
	case !mustExist:
		return "", false, true
	case in != nil:
		allowed := sets.List(in.Difference(notIn))
		if len(allowed) == 0 {
			return "", false, false
		}
		return allowed[0], true, true
	default:
		return valueNotIn(notIn), true, true
	}
}

// valueNotIn returns a valid label value outside taken.
func valueNotIn(taken sets.Set[string]) string {
	for i := 0; ; i++ {
		v := "any"
		if i > 0 {
			v = fmt.Sprintf("any-%d", i)
		}
		if !taken.Has(v) {
			return v
		}
	}
}
