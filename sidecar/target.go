package sidecar

import (
	"fmt"
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
	// AllowMinor is the pod's consent (its CompilerVersion's, through
	// splicev1.AnnotationAllowMinorAPIChange) to a minor plugin API change from what the host
	// serves. It covers every routing change the target needs; a major change is never
	// consented to. It is not part of what the target is (a report stands across it), except
	// that a refusal for the lack of it is undone by it.
	AllowMinor bool
	// MaxLoadedVersions is the memory bound the host must re-exec at
	// (splicev1.AnnotationMaxLoadedVersions); 0 leaves the host's own.
	MaxLoadedVersions int
	// CompilerVersion names the CompilerVersion that manages the pod
	// (splicev1.AnnotationCompilerVersion), for the messages that say what to set on it.
	CompilerVersion string
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

// TargetFromAnnotations reads the pod protocol's desired-state annotations
// (splicev1.ParseDesiredState, the one reading of them the controller shares), and the name of
// the managing CompilerVersion. It returns ok
// false when the pod names no desired artifact, and an error that says what to fix when the
// annotations are malformed; t then holds what could be read, for the report that says so.
// Beyond the protocol's syntax, each artifact must parse as the registry reads references
// (artifact.ParseRef), whose refusal is the more precise one. The error never depends on the
// registry: this is only syntax.
func TargetFromAnnotations(ann map[string]string) (t Target, ok bool, err error) {
	d, derr := splicev1.ParseDesiredState(ann)
	switch {
	case d.Artifact == "" && derr == nil:
		return Target{}, false, nil
	case d.Artifact == "":
		// Desired but blank, or the other annotations without it.
		return Target{Percent: 100}, true, derr
	}
	t = Target{Ref: d.Artifact, Percent: 100, AllowMinor: d.AllowMinorAPIChange, MaxLoadedVersions: int(d.MaxLoadedVersions),
		CompilerVersion: strings.TrimSpace(ann[splicev1.AnnotationCompilerVersion])}
	if p := d.TrafficPercent; p != nil {
		t.Percent = int(*p)
	}
	desired, err := artifact.ParseRef(d.Artifact)
	if err != nil {
		return t, true, fmt.Errorf("annotation %s: %w", splicev1.AnnotationDesiredArtifact, err)
	}
	t.Digest = desired.DigestStr()
	if derr != nil {
		return t, true, derr
	}
	if !t.Canary() {
		return t, true, nil
	}
	stable, err := artifact.ParseRef(d.Stable)
	if err != nil {
		return t, true, fmt.Errorf("annotation %s: %w", splicev1.AnnotationStableArtifact, err)
	}
	t.StableRef, t.StableDigest = d.Stable, stable.DigestStr()
	return t, true, nil
}
