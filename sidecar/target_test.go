package sidecar

import (
	"strings"
	"testing"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

func TestTargetFromAnnotations(t *testing.T) {
	tests := []struct {
		name    string
		ann     map[string]string
		want    Target
		absent  bool
		wantErr string
	}{
		{name: "none", ann: map[string]string{"other": "x"}, absent: true},
		{name: "plain", ann: map[string]string{splicev1.AnnotationDesiredArtifact: ref(dA)}, want: Target{Ref: ref(dA), Digest: dA, Percent: 100}},
		{name: "tag and digest", ann: map[string]string{splicev1.AnnotationDesiredArtifact: "registry.example.com/greeter:v2@" + dA}, want: Target{Ref: "registry.example.com/greeter:v2@" + dA, Digest: dA, Percent: 100}},
		{name: "tag only", ann: map[string]string{splicev1.AnnotationDesiredArtifact: "registry.example.com/greeter:v2"}, wantErr: "names a tag"},
		{name: "garbage", ann: map[string]string{splicev1.AnnotationDesiredArtifact: "not a ref!"}, wantErr: "sha256"},
		{name: "short digest", ann: map[string]string{splicev1.AnnotationDesiredArtifact: "r.example.com/g@sha256:abc"}, wantErr: "pinned"},
		{name: "percent 100 needs no stable", ann: map[string]string{splicev1.AnnotationDesiredArtifact: ref(dA), splicev1.AnnotationTrafficPercent: "100"}, want: Target{Ref: ref(dA), Digest: dA, Percent: 100}},
		{name: "canary", ann: map[string]string{splicev1.AnnotationDesiredArtifact: ref(dA), splicev1.AnnotationTrafficPercent: " 10 ", splicev1.AnnotationStableArtifact: ref(dB)},
			want: Target{Ref: ref(dA), Digest: dA, Percent: 10, StableRef: ref(dB), StableDigest: dB}},
		{name: "canary without stable", ann: map[string]string{splicev1.AnnotationDesiredArtifact: ref(dA), splicev1.AnnotationTrafficPercent: "10"}, wantErr: "needs the stable artifact"},
		{name: "percent not a number", ann: map[string]string{splicev1.AnnotationDesiredArtifact: ref(dA), splicev1.AnnotationTrafficPercent: "ten"}, wantErr: "integer from 0 to 100"},
		{name: "percent over 100", ann: map[string]string{splicev1.AnnotationDesiredArtifact: ref(dA), splicev1.AnnotationTrafficPercent: "101"}, wantErr: "integer from 0 to 100"},
		{name: "stable is the desired", ann: map[string]string{splicev1.AnnotationDesiredArtifact: ref(dA), splicev1.AnnotationTrafficPercent: "5", splicev1.AnnotationStableArtifact: ref(dA)}, wantErr: "same digest"},
		{name: "stable not pinned", ann: map[string]string{splicev1.AnnotationDesiredArtifact: ref(dA), splicev1.AnnotationTrafficPercent: "5", splicev1.AnnotationStableArtifact: "r.example.com/g:stable"}, wantErr: splicev1.AnnotationStableArtifact},
		// The rules the agent shares with the controller (splicev1.ParseDesiredState).
		{name: "spaces around every value", ann: map[string]string{splicev1.AnnotationDesiredArtifact: " " + ref(dA) + "\n", splicev1.AnnotationTrafficPercent: "5", splicev1.AnnotationStableArtifact: "\t" + ref(dB), splicev1.AnnotationCountersInterval: " 10s "},
			want: Target{Ref: ref(dA), Digest: dA, Percent: 5, StableRef: ref(dB), StableDigest: dB}},
		{name: "desired blank", ann: map[string]string{splicev1.AnnotationDesiredArtifact: " "}, wantErr: "set but empty"},
		{name: "stable without a split", ann: map[string]string{splicev1.AnnotationDesiredArtifact: ref(dA), splicev1.AnnotationStableArtifact: ref(dB)}, wantErr: "only serves a traffic split"},
		{name: "counters interval below a second", ann: map[string]string{splicev1.AnnotationDesiredArtifact: ref(dA), splicev1.AnnotationCountersInterval: "100ms"}, wantErr: "1s or more"},
		// Per target: the CompilerVersion's consent to a minor API change, its memory bound, and
		// its name (for the messages that say what to set on it).
		{name: "consent, memory bound and CompilerVersion", ann: map[string]string{splicev1.AnnotationDesiredArtifact: ref(dA), splicev1.AnnotationAllowMinorAPIChange: "true",
			splicev1.AnnotationMaxLoadedVersions: "3", splicev1.AnnotationCompilerVersion: " greeter "},
			want: Target{Ref: ref(dA), Digest: dA, Percent: 100, AllowMinor: true, MaxLoadedVersions: 3, CompilerVersion: "greeter"}},
		{name: "no consent", ann: map[string]string{splicev1.AnnotationDesiredArtifact: ref(dA), splicev1.AnnotationCompilerVersion: "greeter"},
			want: Target{Ref: ref(dA), Digest: dA, Percent: 100, CompilerVersion: "greeter"}},
		{name: "consent misspelt", ann: map[string]string{splicev1.AnnotationDesiredArtifact: ref(dA), splicev1.AnnotationAllowMinorAPIChange: "yes"}, wantErr: "want \"true\""},
		{name: "memory bound out of range", ann: map[string]string{splicev1.AnnotationDesiredArtifact: ref(dA), splicev1.AnnotationMaxLoadedVersions: "1"}, wantErr: "from 2 to 100"},
		{name: "a split without a desired artifact", ann: map[string]string{splicev1.AnnotationTrafficPercent: "5", splicev1.AnnotationStableArtifact: ref(dB)}, wantErr: "which is not set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, desired, err := TargetFromAnnotations(tt.ann)
			if desired == tt.absent {
				t.Fatalf("desired = %v, want %v", desired, !tt.absent)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}
