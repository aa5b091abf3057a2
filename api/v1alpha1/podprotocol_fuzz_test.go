package v1alpha1_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

// The report annotation is written by the agent, which runs in the user's pod: for the
// controller, kubectl-splice and the agent reading its own last report back, it is input from
// another party. FuzzDecodeReport (podprotocol_test.go) holds the encoder's fixpoint; this one
// holds what DecodeReport promises about its input.

// reportSeeds are real reports, written by the package's own encoder: every state, with and
// without the optional parts.
func reportSeeds(t testing.TB) []string {
	at := metav1.NewTime(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC))
	snap := &splicev1.RuntimeSnapshot{GCCycles: 3, HeapLiveBytes: 1000, HeapGoalBytes: 4000, ScanGlobalsBytes: 142000, Goroutines: 12, GCPauses: 6, GCPauseP99Seconds: 0.0001, RSSBytes: 1 << 24}
	reports := []splicev1.PodReport{
		{Artifact: refA, Digest: digestA, State: splicev1.SwapPending, ObservedAt: at},
		{Artifact: refA, Digest: digestA, State: splicev1.SwapPulling, Running: digestB, ObservedAt: at},
		{Artifact: refA, Digest: digestA, State: splicev1.SwapSwapping, Running: digestB, HostGoVersion: "go1.26.8", ObservedAt: at},
		{Artifact: refA, Digest: digestA, State: splicev1.SwapReady, Running: digestA, HostGoVersion: "go1.26.8", SwapLatencySeconds: 0.0072,
			Before: snap, After: snap, GCDuringSwap: true, LoadedVersions: 2, Calls: 1 << 40, Errors: 3, Panics: 1, ObservedAt: at},
		{Artifact: refA, Digest: digestA, State: splicev1.SwapReady, Running: digestB, TrafficPercent: ptr.To[int32](10), Calls: 7, ObservedAt: at},
		{Artifact: refA, Digest: digestA, State: splicev1.SwapIncompatible, Reason: "PackageHashMismatch", Error: "package example.com/shared differs", ObservedAt: at},
		{Artifact: refA, Digest: digestA, State: splicev1.SwapRolledBack, Reason: "PanicThreshold", Error: "3 panics", Running: digestB, ObservedAt: at},
		{Artifact: "r.example.com/p:latest", State: splicev1.SwapFailed, Reason: splicev1.ReasonInvalidDesiredArtifact, Error: "not pinned\nby digest", ObservedAt: at},
		{Artifact: refA, Digest: digestA, State: splicev1.SwapFailed, Reason: "PullFailed", Error: strings.Repeat("é", 2048), ObservedAt: at},
	}
	var out []string
	for _, r := range reports {
		s, err := r.Encode()
		if err != nil {
			t.Fatalf("seed %+v does not encode: %v", r, err)
		}
		out = append(out, s)
	}
	return out
}

// FuzzReportAnnotation: DecodeReport accepts only a bounded, single JSON object with no data
// after it; what it accepts passes Validate; and the agent can write it back: it encodes
// within the bound, and decodes again to the same report.
func FuzzReportAnnotation(f *testing.F) {
	seeds := reportSeeds(f)
	for _, s := range seeds {
		f.Add(s)
	}
	valid := seeds[3]
	for _, tricky := range []string{
		// Trailing data: json.Decoder.More does not see a stray '}' or ']' at the top level.
		valid + "}", valid + "]", valid + " \n]", valid + "}}", valid + "{}", valid + " x", valid + "\n",
		// Characters after the value that JSON does not count as whitespace.
		valid + "\x00", valid + "\u00a0", valid + "\u2028", valid + "\ufeff", valid + "\r\n",
		" \t" + valid,
		// Spellings the encoder never writes.
		strings.Replace(valid, `"state"`, `"State"`, 1),
		strings.Replace(valid, `"state":"Ready"`, `"state":"Failed","state":"Ready"`, 1),
		strings.Replace(valid, `"loadedVersions":2`, `"loadedVersions":2.0`, 1),
		strings.Replace(valid, `"2026-11-25T10:00:00Z"`, `"2026-11-25T12:00:00.123456789+02:00"`, 1),
		strings.Replace(valid, `"swapLatencySeconds":0.0072`, `"swapLatencySeconds":-0`, 1),
		strings.Replace(valid, `"before":{`, `"before":null,"x":{`, 1),
		`null`, `{}`, `[]`, `""`, `{"state":"Ready"}`, `{"trafficPercent":null,"state":"Failed","digest":""}`,
		// Near the size bound, with characters the encoder writes longer than they came.
		`{"state":"Failed","digest":"","error":"` + strings.Repeat("<", 4096) + `"}`,
		`{"state":"Failed","digest":"","artifact":"` + strings.Repeat("\u2028", 5000) + `"}`,
		`{"state":"Failed","digest":"","before":{},"after":{},"artifact":"` + strings.Repeat("a", splicev1.MaxReportBytes-100) + `"}`,
	} {
		f.Add(tricky)
	}
	f.Fuzz(func(t *testing.T, in string) {
		r, err := splicev1.DecodeReport(in)
		if err != nil {
			if r != nil {
				t.Fatalf("DecodeReport returned a report with its error %v", err)
			}
			return
		}
		if len(in) > splicev1.MaxReportBytes {
			t.Fatalf("DecodeReport accepted %d bytes; at most %d", len(in), splicev1.MaxReportBytes)
		}
		if trimmed := bytes.TrimSpace([]byte(in)); !json.Valid(trimmed) || trimmed[0] != '{' {
			t.Fatalf("DecodeReport accepted %s, which is not exactly one JSON object", clip(in))
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("DecodeReport accepted a report that does not validate: %v\n%s", err, clip(in))
		}
		out, err := r.Encode()
		if err != nil {
			t.Fatalf("DecodeReport accepted a report the agent cannot write back: %v\n%s", err, clip(in))
		}
		again, err := splicev1.DecodeReport(out)
		if err != nil {
			t.Fatalf("the re-encoded report is refused: %v\n%s", err, clip(out))
		}
		// The annotation carries whole seconds in UTC (metav1.Time): that is the only change.
		if !again.ObservedAt.Equal(&metav1.Time{Time: r.ObservedAt.Truncate(time.Second)}) {
			t.Fatalf("observedAt %v came back as %v", r.ObservedAt, again.ObservedAt)
		}
		r.ObservedAt, again.ObservedAt = metav1.Time{}, metav1.Time{}
		if !reflect.DeepEqual(r, again) {
			t.Fatalf("round trip changed the report:\n%+v\n%+v", r, again)
		}
	})
}

// clip quotes at most the first and last 100 bytes of a fuzzer's input, so that a failure
// near the size bound stays readable.
func clip(s string) string {
	if len(s) <= 240 {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%q ... (%d bytes) ... %q", s[:100], len(s), s[len(s)-100:])
}
