package v1alpha1_test

import (
	"fmt"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"

	"k8s.io/utils/ptr"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

var (
	digestA = "sha256:" + strings.Repeat("a", 64)
	digestB = "sha256:" + strings.Repeat("b", 64)
	refA    = "registry.example.com/team/greeter@" + digestA
	refB    = "registry.example.com/team/greeter@" + digestB
)

const (
	desiredKey  = splicev1.AnnotationDesiredArtifact
	stableKey   = splicev1.AnnotationStableArtifact
	trafficKey  = splicev1.AnnotationTrafficPercent
	intervalKey = splicev1.AnnotationCountersInterval
	minorKey    = splicev1.AnnotationAllowMinorAPIChange
	maxKey      = splicev1.AnnotationMaxLoadedVersions
)

func TestParseDesiredState(t *testing.T) {
	tests := []struct {
		name string
		ann  map[string]string
		want splicev1.DesiredState
		// wantErr is part of the error; the state is compared with or without one.
		wantErr string
	}{
		{name: "unmanaged", ann: map[string]string{"other": "x"}},
		{name: "nil annotations", ann: nil},
		{name: "plain", ann: map[string]string{desiredKey: refA}, want: splicev1.DesiredState{Artifact: refA}},
		{name: "tag before the digest", ann: map[string]string{desiredKey: "registry.example.com/team/greeter:v2@" + digestA},
			want: splicev1.DesiredState{Artifact: "registry.example.com/team/greeter:v2@" + digestA}},
		{name: "spaces trimmed from every value",
			ann:  map[string]string{desiredKey: " " + refA + "\n", stableKey: "\t" + refB, trafficKey: " 10 ", intervalKey: " 10s "},
			want: splicev1.DesiredState{Artifact: refA, Stable: refB, TrafficPercent: ptr.To[int32](10), CountersInterval: 10 * time.Second}},
		{name: "split", ann: map[string]string{desiredKey: refA, stableKey: refB, trafficKey: "25"},
			want: splicev1.DesiredState{Artifact: refA, Stable: refB, TrafficPercent: ptr.To[int32](25)}},
		{name: "split at 0", ann: map[string]string{desiredKey: refA, stableKey: refB, trafficKey: "0"},
			want: splicev1.DesiredState{Artifact: refA, Stable: refB, TrafficPercent: ptr.To[int32](0)}},
		{name: "100 is no split and needs no stable", ann: map[string]string{desiredKey: refA, trafficKey: "100"},
			want: splicev1.DesiredState{Artifact: refA, TrafficPercent: ptr.To[int32](100)}},
		{name: "counters interval", ann: map[string]string{desiredKey: refA, intervalKey: "1m30s"},
			want: splicev1.DesiredState{Artifact: refA, CountersInterval: 90 * time.Second}},
		{name: "counters interval of exactly 1s", ann: map[string]string{desiredKey: refA, intervalKey: "1s"},
			want: splicev1.DesiredState{Artifact: refA, CountersInterval: time.Second}},
		{name: "consent and bound", ann: map[string]string{desiredKey: refA, minorKey: " true ", maxKey: "2"},
			want: splicev1.DesiredState{Artifact: refA, AllowMinorAPIChange: true, MaxLoadedVersions: 2}},
		{name: "bound at its maximum", ann: map[string]string{desiredKey: refA, maxKey: "100"},
			want: splicev1.DesiredState{Artifact: refA, MaxLoadedVersions: 100}},
		{name: "consent spelled false", ann: map[string]string{desiredKey: refA, minorKey: "false"},
			want: splicev1.DesiredState{Artifact: refA}, wantErr: minorKey + ` is "false"; want "true", or remove it`},
		{name: "consent spelled yes", ann: map[string]string{desiredKey: refA, minorKey: "yes"},
			want: splicev1.DesiredState{Artifact: refA}, wantErr: `want "true"`},
		{name: "bound of 1 keeps nothing to roll back to", ann: map[string]string{desiredKey: refA, maxKey: "1"},
			want: splicev1.DesiredState{Artifact: refA}, wantErr: maxKey + ` is "1"; want an integer from 2 to 100`},
		{name: "bound over 100", ann: map[string]string{desiredKey: refA, maxKey: "101"},
			want: splicev1.DesiredState{Artifact: refA}, wantErr: "from 2 to 100"},
		{name: "bound not a number", ann: map[string]string{desiredKey: refA, maxKey: "eight"},
			want: splicev1.DesiredState{Artifact: refA}, wantErr: "from 2 to 100"},
		{name: "bound without a desired artifact", ann: map[string]string{maxKey: "8"},
			want: splicev1.DesiredState{MaxLoadedVersions: 8}, wantErr: "which is not set"},
		{name: "consent without a desired artifact", ann: map[string]string{minorKey: "true"},
			want: splicev1.DesiredState{AllowMinorAPIChange: true}, wantErr: "which is not set"},

		// Every refusal, and what is kept of the state alongside it.
		{name: "desired empty", ann: map[string]string{desiredKey: "  "}, wantErr: desiredKey + " is set but empty"},
		{name: "desired by tag", ann: map[string]string{desiredKey: "registry.example.com/team/greeter:v2"},
			want: splicev1.DesiredState{Artifact: "registry.example.com/team/greeter:v2"}, wantErr: desiredKey + ` is "registry.example.com/team/greeter:v2"; want a reference pinned by digest`},
		{name: "desired with a short digest", ann: map[string]string{desiredKey: "r.example.com/g@sha256:abc"},
			want: splicev1.DesiredState{Artifact: "r.example.com/g@sha256:abc"}, wantErr: "pinned by digest"},
		{name: "desired with an upper-case digest", ann: map[string]string{desiredKey: "r.example.com/g@sha256:" + strings.Repeat("A", 64)},
			want: splicev1.DesiredState{Artifact: "r.example.com/g@sha256:" + strings.Repeat("A", 64)}, wantErr: "pinned by digest"},
		{name: "desired with a space inside", ann: map[string]string{desiredKey: "r.example.com/g h@" + digestA},
			want: splicev1.DesiredState{Artifact: "r.example.com/g h@" + digestA}, wantErr: "pinned by digest"},
		{name: "traffic not a number", ann: map[string]string{desiredKey: refA, stableKey: refB, trafficKey: "ten"},
			want: splicev1.DesiredState{Artifact: refA, Stable: refB}, wantErr: trafficKey + ` is "ten"; want an integer from 0 to 100`},
		{name: "traffic over 100", ann: map[string]string{desiredKey: refA, trafficKey: "101"},
			want: splicev1.DesiredState{Artifact: refA}, wantErr: "integer from 0 to 100"},
		{name: "traffic negative", ann: map[string]string{desiredKey: refA, stableKey: refB, trafficKey: "-1"},
			want: splicev1.DesiredState{Artifact: refA, Stable: refB}, wantErr: "integer from 0 to 100"},
		{name: "traffic empty", ann: map[string]string{desiredKey: refA, trafficKey: ""},
			want: splicev1.DesiredState{Artifact: refA}, wantErr: "integer from 0 to 100"},
		{name: "split without stable", ann: map[string]string{desiredKey: refA, trafficKey: "10"},
			want: splicev1.DesiredState{Artifact: refA, TrafficPercent: ptr.To[int32](10)}, wantErr: "needs the stable artifact that keeps the other 90%"},
		{name: "stable without traffic", ann: map[string]string{desiredKey: refA, stableKey: refB},
			want: splicev1.DesiredState{Artifact: refA, Stable: refB}, wantErr: stableKey + " is set but " + trafficKey + " does not split"},
		{name: "stable at traffic 100", ann: map[string]string{desiredKey: refA, stableKey: refB, trafficKey: "100"},
			want: splicev1.DesiredState{Artifact: refA, Stable: refB, TrafficPercent: ptr.To[int32](100)}, wantErr: "only serves a traffic split"},
		{name: "stable empty", ann: map[string]string{desiredKey: refA, stableKey: "", trafficKey: "10"},
			want: splicev1.DesiredState{Artifact: refA, TrafficPercent: ptr.To[int32](10)}, wantErr: stableKey + " is set but empty"},
		{name: "stable not pinned", ann: map[string]string{desiredKey: refA, stableKey: "r.example.com/g:stable", trafficKey: "5"},
			want: splicev1.DesiredState{Artifact: refA, Stable: "r.example.com/g:stable", TrafficPercent: ptr.To[int32](5)}, wantErr: stableKey + ` is "r.example.com/g:stable"`},
		{name: "stable is the desired digest", ann: map[string]string{desiredKey: refA, stableKey: "other.example.com/x@" + digestA, trafficKey: "5"},
			want: splicev1.DesiredState{Artifact: refA, Stable: "other.example.com/x@" + digestA, TrafficPercent: ptr.To[int32](5)}, wantErr: "same digest " + digestA},
		{name: "counters interval not a duration", ann: map[string]string{desiredKey: refA, intervalKey: "often"},
			want: splicev1.DesiredState{Artifact: refA}, wantErr: intervalKey + ` is "often"; want a Go duration of 1s or more`},
		{name: "counters interval below a second", ann: map[string]string{desiredKey: refA, intervalKey: "500ms"},
			want: splicev1.DesiredState{Artifact: refA}, wantErr: "1s or more"},
		{name: "counters interval negative", ann: map[string]string{desiredKey: refA, intervalKey: "-10s"},
			want: splicev1.DesiredState{Artifact: refA}, wantErr: "1s or more"},
		{name: "split without a desired artifact", ann: map[string]string{stableKey: refB, trafficKey: "10"},
			want: splicev1.DesiredState{Stable: refB, TrafficPercent: ptr.To[int32](10)}, wantErr: "go with " + desiredKey + ", which is not set"},
		{name: "counters interval without a desired artifact", ann: map[string]string{intervalKey: "10s"},
			want: splicev1.DesiredState{CountersInterval: 10 * time.Second}, wantErr: "which is not set"},
		{name: "a quoted value is bounded", ann: map[string]string{desiredKey: refA, trafficKey: strings.Repeat("9", 1000)},
			want: splicev1.DesiredState{Artifact: refA}, wantErr: strings.Repeat("9", 197) + `..."`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := splicev1.ParseDesiredState(tt.ann)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("ParseDesiredState: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("ParseDesiredState error = %v, want it to contain %q", err, tt.wantErr)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseDesiredState = %s, want %s", show(got), show(tt.want))
			}
		})
	}
}

func TestDesiredStateEncode(t *testing.T) {
	tests := []struct {
		name    string
		in      splicev1.DesiredState
		want    map[string]string // the values set; every other desired-state annotation is removed
		wantErr string
	}{
		{name: "unmanaged removes everything", in: splicev1.DesiredState{}, want: map[string]string{}},
		{name: "plain", in: splicev1.DesiredState{Artifact: refA}, want: map[string]string{desiredKey: refA}},
		{name: "split", in: splicev1.DesiredState{Artifact: refA, Stable: refB, TrafficPercent: ptr.To[int32](10)},
			want: map[string]string{desiredKey: refA, stableKey: refB, trafficKey: "10"}},
		{name: "split at 0", in: splicev1.DesiredState{Artifact: refA, Stable: refB, TrafficPercent: ptr.To[int32](0)},
			want: map[string]string{desiredKey: refA, stableKey: refB, trafficKey: "0"}},
		{name: "all traffic, said", in: splicev1.DesiredState{Artifact: refA, TrafficPercent: ptr.To[int32](100)},
			want: map[string]string{desiredKey: refA, trafficKey: "100"}},
		{name: "counters interval", in: splicev1.DesiredState{Artifact: refA, CountersInterval: 10 * time.Second},
			want: map[string]string{desiredKey: refA, intervalKey: "10s"}},
		{name: "counters interval in minutes", in: splicev1.DesiredState{Artifact: refA, CountersInterval: 90 * time.Second},
			want: map[string]string{desiredKey: refA, intervalKey: "1m30s"}},
		{name: "consent and bound", in: splicev1.DesiredState{Artifact: refA, AllowMinorAPIChange: true, MaxLoadedVersions: 8},
			want: map[string]string{desiredKey: refA, minorKey: "true", maxKey: "8"}},

		// Encode refuses what ParseDesiredState would refuse to read.
		{name: "unpinned artifact", in: splicev1.DesiredState{Artifact: "registry.example.com/team/greeter:v2"}, wantErr: "pinned by digest"},
		{name: "untrimmed artifact", in: splicev1.DesiredState{Artifact: " " + refA}, wantErr: "pinned by digest"},
		{name: "traffic over 100", in: splicev1.DesiredState{Artifact: refA, TrafficPercent: ptr.To[int32](101)}, wantErr: trafficKey + " is 101"},
		{name: "traffic negative", in: splicev1.DesiredState{Artifact: refA, Stable: refB, TrafficPercent: ptr.To[int32](-5)}, wantErr: "integer from 0 to 100"},
		{name: "split without stable", in: splicev1.DesiredState{Artifact: refA, TrafficPercent: ptr.To[int32](10)}, wantErr: "needs the stable artifact"},
		{name: "stable without split", in: splicev1.DesiredState{Artifact: refA, Stable: refB}, wantErr: "only serves a traffic split"},
		{name: "stable not pinned", in: splicev1.DesiredState{Artifact: refA, Stable: "r.example.com/g", TrafficPercent: ptr.To[int32](1)}, wantErr: stableKey},
		{name: "stable is the desired digest", in: splicev1.DesiredState{Artifact: refA, Stable: refA, TrafficPercent: ptr.To[int32](1)}, wantErr: "same digest"},
		{name: "counters interval below a second", in: splicev1.DesiredState{Artifact: refA, CountersInterval: time.Millisecond}, wantErr: intervalKey + " is 1ms"},
		{name: "counters interval negative", in: splicev1.DesiredState{Artifact: refA, CountersInterval: -time.Second}, wantErr: "1s or more"},
		{name: "nothing desired, something else set", in: splicev1.DesiredState{CountersInterval: time.Minute}, wantErr: "which is not set"},
		{name: "bound of 1", in: splicev1.DesiredState{Artifact: refA, MaxLoadedVersions: 1}, wantErr: maxKey + " is 1"},
		{name: "nothing desired, a bound set", in: splicev1.DesiredState{MaxLoadedVersions: 8}, wantErr: "which is not set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.in.Encode()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Encode error = %v, want it to contain %q", err, tt.wantErr)
				}
				if verr := tt.in.Validate(); verr == nil || verr.Error() != err.Error() {
					t.Fatalf("Validate = %v, Encode refused with %v: they must agree", verr, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if len(got) != 6 {
				t.Fatalf("Encode = %v: want a value or a removal for each of the 6 desired-state annotations", got)
			}
			set := map[string]string{}
			for k, v := range got {
				if v != nil {
					set[k] = *v
				}
			}
			if !maps.Equal(set, tt.want) {
				t.Fatalf("Encode sets %v, want %v", set, tt.want)
			}
		})
	}
}

// TestDesiredStateRoundTrip: what Encode writes onto a pod's annotations, whatever they held
// before, ParseDesiredState reads back as the same state; and a pod's annotations that parse
// encode to a patch that leaves them as they are (up to spaces and spelling).
func TestDesiredStateRoundTrip(t *testing.T) {
	states := []splicev1.DesiredState{
		{},
		{Artifact: refA},
		{Artifact: refA, TrafficPercent: ptr.To[int32](100)},
		{Artifact: refA, Stable: refB, TrafficPercent: ptr.To[int32](0)},
		{Artifact: refA, Stable: refB, TrafficPercent: ptr.To[int32](99), CountersInterval: 10 * time.Second},
		{Artifact: refB, CountersInterval: 2 * time.Hour},
		{Artifact: refA, AllowMinorAPIChange: true, MaxLoadedVersions: 3},
	}
	// Annotations a pod may carry before the patch: none, another state's, unrelated ones.
	before := []map[string]string{
		nil,
		{"app.example.com/owner": "team"},
		{desiredKey: refB, stableKey: refA, trafficKey: "50", intervalKey: "1m", minorKey: "true", maxKey: "9", splicev1.AnnotationReport: "{}"},
	}
	for _, want := range states {
		for _, old := range before {
			patch, err := want.Encode()
			if err != nil {
				t.Fatalf("Encode(%s): %v", show(want), err)
			}
			ann := applyMergePatch(maps.Clone(old), patch)
			got, err := splicev1.ParseDesiredState(ann)
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("Encode(%s) onto %v, then ParseDesiredState = %s, %v", show(want), old, show(got), err)
			}
			for k, v := range old {
				if _, owned := patch[k]; !owned && ann[k] != v {
					t.Fatalf("the patch changed annotation %s, which is not a desired-state one: %v -> %v", k, old, ann)
				}
			}
			again, err := got.Encode()
			if err != nil {
				t.Fatalf("re-encode %s: %v", show(got), err)
			}
			if out := applyMergePatch(maps.Clone(ann), again); !maps.Equal(out, ann) {
				t.Fatalf("a parsed state re-encodes to a patch that changes the pod:\n%v\n%v", ann, out)
			}
		}
	}
}

// FuzzParseDesiredState: the parser never panics, and what it accepts encodes to annotations
// it reads back as the same state.
func FuzzParseDesiredState(f *testing.F) {
	f.Add(refA, refB, "10", "10s")
	f.Add(" "+refA, "", "100", "")
	f.Add("r@sha256:"+strings.Repeat("0", 64), "r@"+digestA, "0", "1s")
	f.Add("", "", "", "")
	f.Fuzz(func(t *testing.T, desired, stable, traffic, interval string) {
		ann := map[string]string{}
		for k, v := range map[string]string{desiredKey: desired, stableKey: stable, trafficKey: traffic, intervalKey: interval} {
			if v != "" {
				ann[k] = v
			}
		}
		d, err := splicev1.ParseDesiredState(ann)
		if err != nil {
			return
		}
		patch, err := d.Encode()
		if err != nil {
			t.Fatalf("accepted state %s does not encode: %v", show(d), err)
		}
		again, err := splicev1.ParseDesiredState(applyMergePatch(nil, patch))
		if err != nil || !reflect.DeepEqual(again, d) {
			t.Fatalf("round trip changed %s into %s (%v)", show(d), show(again), err)
		}
	})
}

// applyMergePatch applies annotation changes as a JSON merge patch does: a value sets, nil
// removes.
func applyMergePatch(ann map[string]string, patch map[string]*string) map[string]string {
	if ann == nil {
		ann = map[string]string{}
	}
	for k, v := range patch {
		if v == nil {
			delete(ann, k)
		} else {
			ann[k] = *v
		}
	}
	return ann
}

// show prints a state with its traffic percent, not the pointer.
func show(d splicev1.DesiredState) string {
	traffic := "nil"
	if d.TrafficPercent != nil {
		traffic = fmt.Sprint(*d.TrafficPercent)
	}
	return fmt.Sprintf("{Artifact:%q Stable:%q TrafficPercent:%s CountersInterval:%s}", d.Artifact, d.Stable, traffic, d.CountersInterval)
}
