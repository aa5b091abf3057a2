package v1alpha1_test

import (
	"strings"
	"testing"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

const validReport = `{"artifact":"r.example.com/p@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","digest":"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","state":"Ready","running":"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","swapLatencySeconds":0.0072,"before":{"gcCycles":3,"heapLiveBytes":1000,"heapGoalBytes":4000,"scanGlobalsBytes":142000,"goroutines":12,"gcPauses":6,"gcPauseP99Seconds":0.0001},"observedAt":"2026-11-25T10:00:00Z"}`

func TestDecodeReport(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{name: "valid", in: validReport},
		{name: "empty", in: ``, wantErr: "decode report"},
		{name: "not JSON", in: `Ready`, wantErr: "decode report"},
		{name: "unknown field", in: strings.Replace(validReport, `"state"`, `"stat":"x","state"`, 1), wantErr: "unknown field"},
		{name: "trailing data", in: validReport + `{}`, wantErr: "trailing data"},
		{name: "bad digest", in: strings.Replace(validReport, `"digest":"sha256:0`, `"digest":"md5:0`, 1), wantErr: "report.digest"},
		{name: "unknown state", in: strings.Replace(validReport, `"Ready"`, `"Done"`, 1), wantErr: "report.state"},
		{name: "negative latency", in: strings.Replace(validReport, `0.0072`, `-1`, 1), wantErr: "report.swapLatencySeconds"},
		{name: "reason not CamelCase", in: strings.Replace(validReport, `"state":"Ready"`, `"state":"Failed","reason":"bad reason!"`, 1), wantErr: "report.reason"},
		{name: "huge", in: `{"error":"` + strings.Repeat("x", splicev1.MaxReportBytes) + `"}`, wantErr: "at most"},
		{name: "traffic out of range", in: strings.Replace(validReport, `"state":"Ready"`, `"state":"Ready","trafficPercent":101`, 1), wantErr: "report.trafficPercent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := splicev1.DecodeReport(tt.in)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("DecodeReport: %v", err)
				}
				if r.State != splicev1.SwapReady || r.Before == nil || r.Before.ScanGlobalsBytes != 142000 {
					t.Fatalf("decoded %+v", r)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("DecodeReport error = %v, want it to mention %q", err, tt.wantErr)
			}
		})
	}
}

// TestDecodeReportWithoutDigest: only a Failed report may lack a digest — the agent's answer to
// a desired-artifact annotation that names none.
func TestDecodeReportWithoutDigest(t *testing.T) {
	if _, err := splicev1.DecodeReport(`{"artifact":"r.example.com/p:latest","digest":"","state":"Failed","reason":"InvalidDesiredArtifact","error":"not pinned","observedAt":"2026-11-25T10:00:00Z"}`); err != nil {
		t.Fatalf("Failed report without a digest: %v", err)
	}
	if _, err := splicev1.DecodeReport(`{"digest":"","state":"Ready","observedAt":"2026-11-25T10:00:00Z"}`); err == nil || !strings.Contains(err.Error(), "report.digest") {
		t.Fatalf("Ready report without a digest: %v; want report.digest refused", err)
	}
}

func TestSwapStateTerminal(t *testing.T) {
	for s, want := range map[splicev1.SwapState]bool{
		splicev1.SwapPending: false, splicev1.SwapPulling: false, splicev1.SwapSwapping: false,
		splicev1.SwapReady: true, splicev1.SwapFailed: true, splicev1.SwapIncompatible: true, splicev1.SwapRolledBack: true,
	} {
		if s.Terminal() != want {
			t.Errorf("%s.Terminal() = %v, want %v", s, !want, want)
		}
	}
}

// FuzzDecodeReport: the decoder never panics, and whatever it accepts re-encodes to a report it
// accepts again with the same content.
func FuzzDecodeReport(f *testing.F) {
	f.Add(validReport)
	f.Add(`{}`)
	f.Add(`{"digest":"sha256:` + strings.Repeat("a", 64) + `","state":"Failed","reason":"PreflightRefused","error":"x"}`)
	f.Add(`[1,2,3]`)
	f.Add(`{"before":{"gcCycles":-1}}`)
	f.Fuzz(func(t *testing.T, in string) {
		r, err := splicev1.DecodeReport(in)
		if err != nil {
			return
		}
		out, err := r.Encode()
		if err != nil {
			t.Fatalf("accepted report does not re-encode: %v", err)
		}
		r2, err := splicev1.DecodeReport(out)
		if err != nil {
			t.Fatalf("re-encoded report refused: %v\n%s", err, out)
		}
		if out2, _ := r2.Encode(); out2 != out {
			t.Fatalf("round trip changed the report:\n%s\n%s", out, out2)
		}
	})
}

func TestValidDigestAndPinnedRef(t *testing.T) {
	hex := strings.Repeat("0123456789abcdef", 4)
	tests := []struct {
		in          string
		digest, ref bool
	}{
		{in: "sha256:" + hex, digest: true},
		{in: "registry.example.com/team/p@sha256:" + hex, ref: true},
		{in: "registry.example.com:5000/team/p:v1@sha256:" + hex, ref: true},
		{in: "sha256:" + strings.ToUpper(hex)},
		{in: "sha256:" + hex[:63]},
		{in: "sha256:" + hex + "0"},
		{in: "sha512:" + hex},
		{in: " sha256:" + hex},
		{in: "p@sha256:" + hex + "\n"},
		{in: "@sha256:" + hex},
		{in: "a@b@sha256:" + hex},
		{in: "team/p q@sha256:" + hex},
		{in: "registry.example.com/team/p:v1"},
		{in: ""},
	}
	for _, tt := range tests {
		if got := splicev1.ValidDigest(tt.in); got != tt.digest {
			t.Errorf("ValidDigest(%q) = %v, want %v", tt.in, got, tt.digest)
		}
		if got := splicev1.ValidPinnedRef(tt.in); got != tt.ref {
			t.Errorf("ValidPinnedRef(%q) = %v, want %v", tt.in, got, tt.ref)
		}
	}
	if splicev1.DigestOf("registry.example.com/team/p@sha256:"+hex) != "sha256:"+hex {
		t.Errorf("DigestOf does not take the digest of a pinned reference")
	}
}
