package control

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

var d64 = "sha256:" + strings.Repeat("ab", 32)

func TestDecode(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		req      Request
		wantCode Code // "" = success
		wantMsg  string
	}{
		{"load", `{"path":"v1.so","digest":"` + d64 + `"}`, &LoadRequest{}, "", ""},
		{"load and swap with consent", `{"path":"/shared/v1.so","digest":"` + d64 + `","swap":true,"allowMinor":true}`, &LoadRequest{}, "", ""},
		{"whitespace around", " \n{\"digest\":\"" + d64 + "\"}\n ", &SwapRequest{}, "", ""},
		{"rollback {}", `{}`, &RollbackRequest{}, "", ""},
		{"route end", `{"canary":"","percent":0}`, &RouteRequest{}, "", ""},
		{"reexec in place", `{}`, &ReexecRequest{}, "", ""},
		{"limits", `{"limits":{"maxVersions":8,"maxExtraRSSBytes":1048576}}`, &LimitsRequest{}, "", ""},
		{"limits removed", `{"limits":{}}`, &LimitsRequest{}, "", ""},

		{"empty body", ``, &RollbackRequest{}, CodeBadRequest, "one JSON object"},
		{"null", `null`, &RollbackRequest{}, CodeBadRequest, "one JSON object"},
		{"array", `[{}]`, &RollbackRequest{}, CodeBadRequest, "one JSON object"},
		{"string", `"x"`, &SwapRequest{}, CodeBadRequest, "one JSON object"},
		{"bad json", `{"digest":`, &SwapRequest{}, CodeBadRequest, "decode request"},
		{"unknown field", `{"digest":"` + d64 + `","force":true}`, &SwapRequest{}, CodeBadRequest, `unknown field "force"`},
		{"misspelt field", `{"Digets":"` + d64 + `"}`, &SwapRequest{}, CodeBadRequest, "unknown field"},
		{"wrong type", `{"digest":42}`, &SwapRequest{}, CodeBadRequest, "decode request"},
		{"trailing object", `{"digest":"` + d64 + `"}{}`, &SwapRequest{}, CodeBadRequest, "trailing data"},
		{"trailing brace", `{"digest":"` + d64 + `"}}`, &SwapRequest{}, CodeBadRequest, "trailing data"},
		{"trailing garbage", `{} x`, &RollbackRequest{}, CodeBadRequest, "trailing data"},
		{"bad digest", `{"digest":"sha256:xyz"}`, &SwapRequest{}, CodeBadRequest, "must match"},
		{"upper-case digest", `{"digest":"` + strings.ToUpper(d64) + `"}`, &SwapRequest{}, CodeBadRequest, "must match"},
		{"load without path", `{"digest":"` + d64 + `"}`, &LoadRequest{}, CodeBadRequest, "path is required"},
		{"NUL in path", `{"path":"a\u0000b","digest":"` + d64 + `"}`, &LoadRequest{}, CodeBadRequest, "NUL"},
		{"path too long", `{"path":"` + strings.Repeat("a", MaxPathBytes+1) + `","digest":"` + d64 + `"}`, &LoadRequest{}, CodeBadRequest, "at most"},
		{"path names the socket", `{"path":"` + SocketName + `","digest":"` + d64 + `"}`, &LoadRequest{}, CodeBadRequest, "control socket"},
		{"allowMinor without swap", `{"path":"v.so","digest":"` + d64 + `","allowMinor":true}`, &LoadRequest{}, CodeBadRequest, "only meaningful with swap"},
		{"percent over 100", `{"canary":"` + d64 + `","percent":101}`, &RouteRequest{}, CodeBadRequest, "between 0 and 100"},
		{"negative percent", `{"canary":"` + d64 + `","percent":-1}`, &RouteRequest{}, CodeBadRequest, "between 0 and 100"},
		{"percent without canary", `{"percent":10}`, &RouteRequest{}, CodeBadRequest, "needs a canary"},
		{"reexec path without digest", `{"path":"v.so"}`, &ReexecRequest{}, CodeBadRequest, "go together"},
		{"a bound of one version", `{"limits":{"maxVersions":1}}`, &LimitsRequest{}, CodeBadRequest, "roll back to"},
		{"a bound past the maximum", `{"limits":{"maxVersions":1001}}`, &LimitsRequest{}, CodeBadRequest, "from 2 to 1000"},
		{"a negative bound", `{"limits":{"maxVersions":-3}}`, &LimitsRequest{}, CodeBadRequest, "from 2 to 1000"},
		{"limits misspelt", `{"limits":{"maxVersion":8}}`, &LimitsRequest{}, CodeBadRequest, "unknown field"},
		{"fields on rollback", `{"digest":"` + d64 + `"}`, &RollbackRequest{}, CodeBadRequest, "unknown field"},
		{"huge body", `{"path":"` + strings.Repeat("a", MaxRequestBytes) + `"}`, &LoadRequest{}, CodeTooLarge, "over"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Decode(strings.NewReader(tt.body), tt.req)
			if tt.wantCode == "" {
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				return
			}
			var ce *Error
			if !errors.As(err, &ce) || ce.Code != tt.wantCode || !strings.Contains(ce.Message, tt.wantMsg) {
				t.Fatalf("Decode = %v; want code %s with %q in the message", err, tt.wantCode, tt.wantMsg)
			}
			if ce.Status != CodeStatus(tt.wantCode) {
				t.Fatalf("status %d; want %d", ce.Status, CodeStatus(tt.wantCode))
			}
		})
	}
}

// TestDecodeMaxBytesReader: behind http.MaxBytesReader, as the server uses it, an oversized
// body is TooLarge too, not a generic read error.
func TestDecodeMaxBytesReader(t *testing.T) {
	body := strings.NewReader(`{"path":"` + strings.Repeat("a", 2*MaxRequestBytes) + `"}`)
	r := http.MaxBytesReader(httptest.NewRecorder(), ioNopCloser{body}, MaxRequestBytes)
	if err := Decode(r, &LoadRequest{}); !IsCode(err, CodeTooLarge) {
		t.Fatalf("Decode behind MaxBytesReader = %v; want TooLarge", err)
	}
}

type ioNopCloser struct{ *strings.Reader }

func (ioNopCloser) Close() error { return nil }

func TestErrorResponseRoundTrip(t *testing.T) {
	b, _ := json.Marshal(ErrorResponse{Error: ErrorBody{Code: CodeUnknownDigest, Message: "m"}})
	if string(b) != `{"error":{"code":"UnknownDigest","message":"m"}}` {
		t.Fatalf("wire form changed: %s", b)
	}
}

// FuzzDecodeRequest feeds arbitrary bytes to the decoder for every request type. Decode must
// never panic; when it accepts input, the request must validate and survive an encode/decode
// round trip unchanged (the decoder accepts nothing the encoder cannot say).
func FuzzDecodeRequest(f *testing.F) {
	seeds := []string{
		`{"path":"v1.so","digest":"` + d64 + `","swap":true}`,
		`{"path":"../../etc/passwd","digest":"` + d64 + `"}`,
		`{"digest":"` + d64 + `","allowMinor":true}`,
		`{"canary":"` + d64 + `","percent":30}`,
		`{"canary":"","percent":0}`,
		`{"path":"v2.so","digest":"` + d64 + `","allowMinor":true}`,
		`{}`, `null`, `[]`, `{"a":1}`, `{"digest":"sha256:"}`, `{}}`, `{"path":"\u0000"}`,
		`{"percent":1e309}`, `{"percent":-0}`, `{"swap":"true"}`, "\xff\xfe{}",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, mk := range []func() Request{
			func() Request { return &LoadRequest{} },
			func() Request { return &SwapRequest{} },
			func() Request { return &RollbackRequest{} },
			func() Request { return &RouteRequest{} },
			func() Request { return &ReexecRequest{} },
		} {
			req := mk()
			err := Decode(bytes.NewReader(data), req)
			if err != nil {
				var ce *Error
				if !errors.As(err, &ce) || ce.Code == "" || ce.Status < 400 {
					t.Fatalf("Decode(%q) into %T returned %v; want an *Error with a code and status", data, req, err)
				}
				continue
			}
			if err := req.Validate(); err != nil {
				t.Fatalf("Decode accepted %q into %T but it does not validate: %v", data, req, err)
			}
			enc, err := json.Marshal(req)
			if err != nil {
				t.Fatalf("re-encode %T: %v", req, err)
			}
			again := mk()
			if err := Decode(bytes.NewReader(enc), again); err != nil {
				t.Fatalf("Decode accepted %q but not its re-encoding %s: %v", data, enc, err)
			}
			if !reflect.DeepEqual(req, again) {
				t.Fatalf("round trip changed %T: %+v -> %+v", req, req, again)
			}
		}
	})
}
