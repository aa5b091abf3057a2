package sidecar

import (
	"fmt"
	"strconv"
	"strings"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/artifact"
)

// Target is what a pod must run: one artifact taking all calls, or — while a request-level
// canary runs — a new artifact taking Percent of calls and a stable one taking the rest.
type Target struct {
	// Ref and Digest name the desired artifact (Ref is pinned by Digest).
	Ref    string
	Digest string
	// StableRef and StableDigest name the artifact that keeps 100-Percent of calls; empty
	// unless Percent < 100.
	StableRef    string
	StableDigest string
	// Percent is the desired artifact's share of calls, 0-100. 100 is a plain swap.
	Percent int
}

// Canary reports whether the target splits calls between two artifacts.
func (t Target) Canary() bool { return t.Percent < 100 }

// String is for logs.
func (t Target) String() string {
	if !t.Canary() {
		return t.Ref
	}
	return fmt.Sprintf("%s at %d%% over %s", t.Ref, t.Percent, t.StableRef)
}

// trafficPercent is the report's view of Percent (nil for a plain swap).
func (t Target) trafficPercent() *int32 {
	if !t.Canary() {
		return nil
	}
	p := int32(t.Percent)
	return &p
}

// SwapTarget is a plain swap to ref (pinned by digest).
func SwapTarget(ref string) (Target, error) {
	d, err := artifact.ParseRef(ref)
	if err != nil {
		return Target{}, err
	}
	return Target{Ref: ref, Digest: d.DigestStr(), Percent: 100}, nil
}

// TargetFromAnnotations reads the pod protocol's desired-state annotations. It returns ok
// false when the pod names no desired artifact, and an error that says what to fix when the
// annotations are malformed. The error never depends on the registry: this is only syntax.
func TargetFromAnnotations(ann map[string]string) (t Target, ok bool, err error) {
	ref, present := ann[splicev1.AnnotationDesiredArtifact]
	if !present {
		return Target{}, false, nil
	}
	ref = strings.TrimSpace(ref)
	t = Target{Ref: ref, Percent: 100}
	d, err := artifact.ParseRef(ref)
	if err != nil {
		return t, true, fmt.Errorf("annotation %s: %w", splicev1.AnnotationDesiredArtifact, err)
	}
	t.Digest = d.DigestStr()

	if raw, set := ann[splicev1.AnnotationTrafficPercent]; set {
		p, err := strconv.Atoi(strings.TrimSpace(raw))
		if err != nil || p < 0 || p > 100 {
			return t, true, fmt.Errorf("annotation %s is %q; want an integer from 0 to 100", splicev1.AnnotationTrafficPercent, raw)
		}
		t.Percent = p
	}
	if !t.Canary() {
		return t, true, nil
	}
	stable := strings.TrimSpace(ann[splicev1.AnnotationStableArtifact])
	if stable == "" {
		return t, true, fmt.Errorf("annotation %s is %d but %s is not set: a traffic split needs the stable artifact that keeps the other %d%%",
			splicev1.AnnotationTrafficPercent, t.Percent, splicev1.AnnotationStableArtifact, 100-t.Percent)
	}
	sd, err := artifact.ParseRef(stable)
	if err != nil {
		return t, true, fmt.Errorf("annotation %s: %w", splicev1.AnnotationStableArtifact, err)
	}
	if sd.DigestStr() == t.Digest {
		return t, true, fmt.Errorf("annotations %s and %s name the same digest %s; a traffic split needs two artifacts",
			splicev1.AnnotationDesiredArtifact, splicev1.AnnotationStableArtifact, t.Digest)
	}
	t.StableRef, t.StableDigest = stable, sd.DigestStr()
	return t, true, nil
}
