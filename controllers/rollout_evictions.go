package controllers

import (
	"fmt"
	"slices"
	"strings"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

// Strict's evictions of incompatible pods are bounded: the pods of a pod template are evicted
// at most once per artifact. Evicting a pod helps only when its replacement comes up with a host
// that can load the artifact; a replacement from the same template that cannot either proves
// the template's image wrong, and evicting it again would only loop. The pods evicted are
// recorded in status.incompatibleEvictions, which is written before any eviction (the record is
// part of the plan), so a manager restarted at any point neither evicts twice nor forgets.
//
// A template is judged once all of its targeted pods have answered about the artifact: then
// every one of them that cannot load it is recorded and evicted, together. A pod of a recorded
// template is evicted again only if it is recorded (its eviction was refused, by a disruption
// budget say, or interrupted); one that is not recorded was created since — a replacement, or a
// scale-up — and if it cannot load the artifact either, the template's pods are evicted no more:
// the rollout is Degraded, saying what the image must be. A new artifact, or splice.dev/retry,
// starts a new record. The record holds at most splicev1.MaxEvictedPods pods.

// evictionDecision is what Strict does about the incompatible pods it may evict.
type evictionDecision struct {
	// evict are the pods to evict, in name order; every one is in record.
	evict []string
	// record is the eviction record to keep in status.
	record *splicev1.IncompatibleEvictions
	// waiting are the templates some of whose pods have not answered yet.
	waiting []string
	// recreated are the incompatible pods of templates already evicted from: they are left.
	recreated []string
	// recreatedFrom are their templates.
	recreatedFrom []string
	// full are the incompatible pods not evicted because the record is full.
	full []string
}

// decideEvictions decides about the incompatible pods (names, in name order) against the record
// the plan keeps so far (nil or of another artifact: none).
func decideEvictions(in *rolloutInput, base *splicev1.IncompatibleEvictions, names []string) evictionDecision {
	d := evictionDecision{record: base}
	rec := &splicev1.IncompatibleEvictions{Digest: in.artifact.Digest}
	if base != nil && base.Digest == in.artifact.Digest {
		rec = base.DeepCopy()
	}
	recorded, total := map[string][]string{}, 0
	for _, t := range rec.Templates {
		recorded[t.Template] = t.PodUIDs
		total += len(t.PodUIDs)
	}
	pods := map[string]podState{}
	byTemplate := map[string][]podState{}
	for _, p := range in.pods {
		if slices.Contains(names, p.name) {
			pods[p.name] = p
			byTemplate[p.templateKey()] = append(byTemplate[p.templateKey()], p)
		}
	}
	stopped := map[string]bool{}
	for t, ps := range byTemplate {
		uids, ok := recorded[t]
		stopped[t] = ok && slices.ContainsFunc(ps, func(p podState) bool { return !slices.Contains(uids, p.uid) })
	}
	changed := false
	for _, name := range names {
		p := pods[name]
		t := p.templateKey()
		_, isRecorded := recorded[t]
		switch {
		case stopped[t]:
			d.recreated = append(d.recreated, name)
			d.recreatedFrom = appendOnce(d.recreatedFrom, t)
		case isRecorded:
			d.evict = append(d.evict, name)
		case !templateSettled(in, t):
			d.waiting = appendOnce(d.waiting, t)
		case total+len(byTemplate[t]) > splicev1.MaxEvictedPods:
			d.full = append(d.full, name)
		default:
			uids := recordTemplate(rec, t, byTemplate[t])
			recorded[t], total, changed = uids, total+len(uids), true
			d.evict = append(d.evict, name)
		}
	}
	if changed {
		d.record = rec
	}
	return d
}

// recordTemplate adds a template's pods to the record, keeping its templates in name order, and
// returns their UIDs.
func recordTemplate(rec *splicev1.IncompatibleEvictions, template string, pods []podState) []string {
	uids := make([]string, 0, len(pods))
	for _, p := range pods {
		uids = append(uids, p.uid)
	}
	rec.Templates = append(rec.Templates, splicev1.EvictedTemplate{Template: template, PodUIDs: uids})
	slices.SortFunc(rec.Templates, func(a, b splicev1.EvictedTemplate) int { return strings.Compare(a.Template, b.Template) })
	return uids
}

// templateSettled reports whether every targeted pod of the template has answered about the
// artifact.
func templateSettled(in *rolloutInput, template string) bool {
	for _, p := range in.pods {
		if p.templateKey() == template && !p.settled(in.artifact) {
			return false
		}
	}
	return true
}

func appendOnce(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// stuck reports whether the decision leaves pods that no eviction will change.
func (d evictionDecision) stuck() bool { return len(d.recreated) > 0 || len(d.full) > 0 }

// describe says what the decision does, after "the host of … cannot load <digest>".
func (d evictionDecision) describe(in *rolloutInput) string {
	var b strings.Builder
	if len(d.evict) > 0 {
		fmt.Fprintf(&b, "; evicting %s so that they are recreated from their template, once per template and artifact: %s",
			failureSummary(d.evict), imageNeeds(in, d.evict))
	}
	if len(d.waiting) > 0 {
		fmt.Fprintf(&b, "; waiting for every pod of %s to report before evicting its incompatible pods", failureSummary(d.waiting))
	}
	if len(d.recreated) > 0 {
		fix := "rebuild the image with " + goRelease(in) + " and the package versions the plugin was built with"
		if majorChange(in, d.recreated) {
			fix = imageNeeds(in, d.recreated) + ": rebuild it"
		}
		fmt.Fprintf(&b, "; %s, created from %s after its pods were evicted for %s, cannot load it either: the template's image does not match, "+
			"so no more of its pods are evicted for this artifact; %s and roll it out, or annotate %s to evict its pods once more",
			failureSummary(d.recreated), failureSummary(d.recreatedFrom), in.artifact.Digest, fix, splicev1.AnnotationRetry)
	}
	if len(d.full) > 0 {
		fmt.Fprintf(&b, "; %s stay as they are: evicting them would take status.incompatibleEvictions past the %d pods it records for %s (annotate %s to start over)",
			failureSummary(d.full), splicev1.MaxEvictedPods, in.artifact.Digest, splicev1.AnnotationRetry)
	}
	return b.String()
}
