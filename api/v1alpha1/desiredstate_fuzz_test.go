package v1alpha1_test

import (
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"k8s.io/utils/ptr"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

// maxDesiredStateError bounds ParseDesiredState's errors: each quotes at most 200 bytes of one
// annotation (maxQuoted), which %q writes in at most four bytes each, plus the explanation.
const maxDesiredStateError = 4*200 + 400

// FuzzDesiredStateAnnotations extends FuzzParseDesiredState (desiredstate_test.go) to what it
// cannot express: annotations that are present but empty, and an unrelated annotation next to
// them. Whatever a pod's annotations hold, ParseDesiredState keeps what it documents it keeps
// (the trimmed values, a well-formed traffic percent), ignores every other annotation, bounds
// the input its error quotes, and what it accepts encodes to annotations it reads back as the
// same state.
func FuzzDesiredStateAnnotations(f *testing.F) {
	keys := [6]string{desiredKey, stableKey, trafficKey, intervalKey, minorKey, maxKey}
	// Real states, as the controller's encoder writes them.
	for _, d := range []splicev1.DesiredState{
		{},
		{Artifact: refA},
		{Artifact: refA, TrafficPercent: ptr.To[int32](100)},
		{Artifact: refA, Stable: refB, TrafficPercent: ptr.To[int32](0)},
		{Artifact: refA, Stable: refB, TrafficPercent: ptr.To[int32](25), CountersInterval: 10 * time.Second},
		{Artifact: "registry.example.com:5000/team/greeter:v2@" + digestB, CountersInterval: 90 * time.Second},
		{Artifact: refA, AllowMinorAPIChange: true, MaxLoadedVersions: 8},
		{Artifact: refA, Stable: refB, TrafficPercent: ptr.To[int32](5), MaxLoadedVersions: 100},
	} {
		patch, err := d.Encode()
		if err != nil {
			f.Fatalf("seed %s: %v", show(d), err)
		}
		var v [6]string
		var present uint8
		for i, k := range keys {
			if p := patch[k]; p != nil {
				v[i], present = *p, present|1<<i
			}
		}
		f.Add(v[0], v[1], v[2], v[3], v[4], v[5], present, splicev1.AnnotationReport, "{}")
	}
	// The tricky cases: present but blank, spaces, number and duration spellings, bounds.
	f.Add("", "", "", "", "", "", uint8(0b1111), "", "")
	f.Add(" \t", refB, "10", "", "", "", uint8(0b0111), "app", "x")
	f.Add(refA, "\n"+refB+"\n", "+5", " 1m ", "", "", uint8(0b1111), "", "")
	f.Add(refA, refB, "1e2", "1h0m0s", "", "", uint8(0b1111), "", "")
	f.Add(refA, refB, "0x10", "999ms", "", "", uint8(0b1111), "", "")
	f.Add(refA, refB, "-0", "2562047h47m16.854775807s", "", "", uint8(0b1111), "", "")
	f.Add(refA, "", "9223372036854775808", "2562048h", "", "", uint8(0b1101), "", "")
	f.Add(refA, refA, "50", "", "", "", uint8(0b0111), "", "")
	f.Add("r\xff@"+digestA, refB, "50", "", "", "", uint8(0b0111), "", "")
	f.Add(strings.Repeat("\xff", 1000)+"@"+digestA, "", "", "", "", "", uint8(0b0001), "", "")
	f.Add(refA, strings.Repeat("\u2028", 400), "1", "", "", "", uint8(0b0111), "", "")
	f.Add(refA, "", strings.Repeat("\x00", 1000), strings.Repeat("\xfe", 1000), "", "", uint8(0b1101), "", "")
	f.Add("", refB, "10", "10s", "", "", uint8(0b1110), desiredKey+"x", refA)

	// The consent and the bound: their spellings and bounds.
	f.Add(refA, "", "", "", " true\n", "2", uint8(0b110001), "", "")
	f.Add(refA, "", "", "", "TRUE", "1", uint8(0b110001), "", "")
	f.Add(refA, "", "", "", "", "+8", uint8(0b110001), "", "")
	f.Add("", "", "", "", "true", "08", uint8(0b110000), "", "")
	f.Add(refA, "", "", "", "1", "4294967298", uint8(0b110001), "", "")

	f.Fuzz(func(t *testing.T, desired, stable, traffic, interval, minor, maxLoaded string, present uint8, otherKey, otherValue string) {
		values := [6]string{desired, stable, traffic, interval, minor, maxLoaded}
		ann := map[string]string{}
		for i, k := range keys {
			if present&(1<<i) != 0 {
				ann[k] = values[i]
			}
		}
		d, err := splicev1.ParseDesiredState(ann)

		// Another annotation never changes what the pod was asked.
		if _, owned := ann[otherKey]; !owned && !strings.HasPrefix(otherKey, "splice.dev/") {
			withOther := map[string]string{otherKey: otherValue}
			for k, v := range ann {
				withOther[k] = v
			}
			d2, err2 := splicev1.ParseDesiredState(withOther)
			if !reflect.DeepEqual(d, d2) || errString(err) != errString(err2) {
				t.Fatalf("annotation %q changed the state: %s, %v -> %s, %v", otherKey, show(d), err, show(d2), err2)
			}
		}

		// Even with an error, the state holds the trimmed values and a well-formed percent.
		if want := strings.TrimSpace(ann[desiredKey]); d.Artifact != want {
			t.Fatalf("Artifact = %q, want the trimmed annotation %q", d.Artifact, want)
		}
		if want := strings.TrimSpace(ann[stableKey]); d.Stable != want {
			t.Fatalf("Stable = %q, want the trimmed annotation %q", d.Stable, want)
		}
		raw, ok := ann[trafficKey]
		p, perr := strconv.ParseInt(strings.TrimSpace(raw), 10, 32)
		switch wellFormed := ok && perr == nil && p >= 0 && p <= 100; {
		case wellFormed && (d.TrafficPercent == nil || int64(*d.TrafficPercent) != p):
			t.Fatalf("traffic %q read as %s", raw, show(d))
		case !wellFormed && d.TrafficPercent != nil:
			t.Fatalf("traffic %q (present %v) read as %d", raw, ok, *d.TrafficPercent)
		}

		if err != nil {
			msg := err.Error()
			if len(msg) > maxDesiredStateError || !utf8.ValidString(msg) || strings.ContainsAny(msg, "\n\r") {
				t.Fatalf("error of %d bytes (at most %d, valid UTF-8, one line): %s", len(msg), maxDesiredStateError, clip(msg))
			}
			return
		}
		if err := d.Validate(); err != nil {
			t.Fatalf("accepted state %s does not validate: %v", show(d), err)
		}
		patch, err := d.Encode()
		if err != nil {
			t.Fatalf("accepted state %s does not encode: %v", show(d), err)
		}
		again, err := splicev1.ParseDesiredState(applyMergePatch(map[string]string{otherKey: otherValue}, patch))
		if err != nil || !reflect.DeepEqual(again, d) {
			t.Fatalf("round trip changed %s into %s (%v)", show(d), show(again), err)
		}
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
