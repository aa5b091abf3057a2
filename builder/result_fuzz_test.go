package builder

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/splice-dev/splice/host/control"
)

// The build's termination message is written by the builder in the build Job's pod, which also
// compiles the user's code, and read by the build controller, which may run another version:
// ParseResult and ParseFailure read input from another party.

var fuzzDigest = "sha256:" + strings.Repeat("ab", 32)

// realResults are results as the builder writes them (encodeCompact), pushed and not.
func realResults(tb testing.TB) []string {
	results := []Result{
		{Ref: "registry.example.com/team/greeter@" + fuzzDigest, Digest: fuzzDigest, GoVersion: "go1.26.8", APIVersion: "1.4.0",
			PluginPath: "example.com/m/plugins/greeter/splice-0123456789abcdef", SourceHash: strings.Repeat("0123456789abcdef", 4),
			Revision: strings.Repeat("a1", 20), BuiltAt: time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC), BuildKey: "4f2a9c",
			Seconds: map[string]float64{"toolchain": 0.01, "source": 1.5, "compile": 12.25, "push": 0.3}},
		{GoVersion: "go1.26.8", APIVersion: "v2.0.0-rc.1", PluginPath: "plugin/unnamed-0123", SourceHash: strings.Repeat("f", 16),
			BuiltAt: time.Date(2026, 11, 1, 12, 0, 0, 500, time.FixedZone("", 3600)), Path: "/out/p.so"},
	}
	var out []string
	for _, r := range results {
		if err := r.Validate(); err != nil {
			tb.Fatalf("seed result %+v: %v", r, err)
		}
		b, err := encodeCompact(&r)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

// FuzzParseResult: ParseResult accepts only a bounded, single JSON object with no data after
// it, that validates, whose apiVersion status.artifact can hold, and that reads back the same
// once the builder writes it again.
func FuzzParseResult(f *testing.F) {
	seeds := realResults(f)
	for _, s := range seeds {
		f.Add(s)
	}
	good := seeds[0]
	for _, s := range []string{
		good + "}", good + "]", good + "\n", good + " ]", good + good, good + "x",
		good + "\x00", good + "\u00a0", good + "\u2028", good + "\r\n",
		strings.Replace(good, `"apiVersion":"1.4.0"`, `"apiVersion":"1.4.0-`+strings.Repeat("a", 64)+`"`, 1),
		strings.Replace(good, `"goVersion":"go1.26.8"`, `"goVersion":"go1.26.8","GoVersion":"go1.27.0"`, 1),
		strings.Replace(good, `"builtAt":"2026-11-01T10:00:00Z"`, `"builtAt":"2026-11-01T10:00:00.123456789-07:00"`, 1),
		strings.Replace(good, `"seconds":{`, `"seconds":{"x":1e-7,`, 1),
		`{}`, `null`, `[]`, "go: downloading example.com/x v1.0.0\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		r, err := ParseResult(msg)
		if err != nil {
			if r != nil {
				t.Fatalf("ParseResult returned a result with its error %v", err)
			}
			return
		}
		if trimmed := bytes.TrimSpace([]byte(msg)); len(msg) > MaxTerminationMessageBytes || !json.Valid(trimmed) || trimmed[0] != '{' {
			t.Fatalf("ParseResult accepted %s, which is not one JSON object of at most %d bytes", clip(msg), MaxTerminationMessageBytes)
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("ParseResult accepted a result that does not validate: %v", err)
		}
		if !ValidAPIVersion(r.APIVersion) || len(r.APIVersion) > control.MaxAPIVersionBytes {
			t.Fatalf("ParseResult accepted apiVersion %q: status.artifact.apiVersion holds a semantic version of at most %d bytes", r.APIVersion, control.MaxAPIVersionBytes)
		}
		b, err := encodeCompact(r)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := ParseResult(string(b))
		if err != nil {
			// The only change encoding may make is in length (numbers and escapes).
			if len(b) > MaxTerminationMessageBytes {
				return
			}
			t.Fatalf("accepted result re-encodes to one it refuses: %v\n%s", err, clip(string(b)))
		}
		if !r2.BuiltAt.Equal(r.BuiltAt) {
			t.Fatalf("builtAt %v came back as %v", r.BuiltAt, r2.BuiltAt)
		}
		r.BuiltAt, r2.BuiltAt = time.Time{}, time.Time{}
		if !reflect.DeepEqual(r, r2) {
			t.Fatalf("round trip changed the result:\n%+v\n%+v", r, r2)
		}
	})
}

// FuzzParseFailure: ParseFailure accepts only a single JSON object with no data after it, with
// a known reason and an error, and reads back what it accepted once written again.
func FuzzParseFailure(f *testing.F) {
	var seeds []string
	for _, reason := range []string{ReasonCompileFailed, ReasonToolchainMismatch, ReasonPushFailed, ReasonInternal} {
		b, err := encodeCompact(NewFailure(failf(reason, "go build: exit status 1\n./main.go:3:2: undefined: x"), "4f2a9c"))
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, string(b))
	}
	for _, s := range seeds {
		f.Add(s)
	}
	good := seeds[0]
	for _, s := range []string{
		good + "}", good + "]", good + " \n}", good + "{}", good + "\n",
		good + "\x00", good + "\u00a0", good + "\u2028",
		`{"reason":"CompileFailed","error":"x","Reason":"Whatever"}`, `{"reason":"CompileFailed","error":""}`,
		`{"reason":"Whatever","error":"x"}`, `null`, `exit status 2`, "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		fl, ok := ParseFailure(msg)
		if !ok {
			if fl != (Failure{}) {
				t.Fatalf("ParseFailure refused %s but returned %+v", clip(msg), fl)
			}
			return
		}
		if trimmed := bytes.TrimSpace([]byte(msg)); !json.Valid(trimmed) || trimmed[0] != '{' {
			t.Fatalf("ParseFailure accepted %s, which is not one JSON object", clip(msg))
		}
		if !KnownReasons[fl.Reason] || fl.Error == "" {
			t.Fatalf("ParseFailure accepted reason %q with error %q", fl.Reason, fl.Error)
		}
		b, err := encodeCompact(fl)
		if err != nil {
			t.Fatal(err)
		}
		if again, ok := ParseFailure(string(b)); !ok || again != fl {
			t.Fatalf("round trip changed the failure %+v into %+v (%v)", fl, again, ok)
		}
	})
}

// FuzzNewFailure: whatever a build's error says, NewFailure writes a failure whose JSON fits a
// termination message and that the controller reads back as written, with the error's reason
// and the start and the end of its message.
func FuzzNewFailure(f *testing.F) {
	f.Add(ReasonCompileFailed, "# example.com/p\n./main.go:3:2: undefined: x\n"+strings.Repeat("é", 4000)+"\nlast line of go build", "4f2a9c")
	f.Add(ReasonPushFailed, "push: PUT https://r.example.com/v2/: 401 <html>&amp;</html>", "")
	f.Add(ReasonInternal, strings.Repeat("\x1b[31merror\x1b[0m\n", 400), "k")
	f.Add(ReasonSourceUnavailable, strings.Repeat("\xff\xfe", 2000), "k")
	f.Add(ReasonCompileFailed, strings.Repeat("\u2028", 1500), "k")
	f.Add("", "x", "")
	f.Fuzz(func(t *testing.T, reason, msg, buildKey string) {
		if !KnownReasons[reason] {
			reason = ReasonInternal
		}
		if msg == "" {
			msg = "x"
		}
		// The controller's build key is a short hex hash.
		buildKey = control.Truncate(strings.ToValidUTF8(buildKey, ""), 64)
		fl := NewFailure(failf(reason, "%s", msg), buildKey)
		b, err := encodeCompact(fl)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > MaxTerminationMessageBytes {
			t.Fatalf("a failure with an error of %d bytes encodes to %d bytes; the termination message holds %d", len(msg), len(b), MaxTerminationMessageBytes)
		}
		got, ok := ParseFailure(string(b))
		if !ok || got != fl || got.Reason != reason || got.BuildKey != buildKey {
			t.Fatalf("ParseFailure(%s) = %+v, %v; written %+v", clip(string(b)), got, ok, fl)
		}
		if !utf8.ValidString(got.Error) || got.Error == "" {
			t.Fatalf("the error came back as %q", clip(got.Error))
		}
		if first, _ := utf8.DecodeRuneInString(strings.ToValidUTF8(msg, "\uFFFD")); !strings.HasPrefix(got.Error, string(first)) {
			t.Fatalf("the error %s lost its start %q", clip(got.Error), first)
		}
	})
}

// clip quotes at most the first and last 100 bytes of a fuzzer's input.
func clip(s string) string {
	if len(s) <= 240 {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%q ... (%d bytes) ... %q", s[:100], len(s), s[len(s)-100:])
}
