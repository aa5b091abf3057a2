package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"
)

// Both directions of the control socket are input from another party: the host reads the
// agent's requests (Decode), and the agent reads the host's answers (Client). FuzzDecodeRequest
// (decode_test.go) holds the requests' round trip; the targets here hold what else the two
// decoders promise.

// requestKinds are the request types Decode reads, each with a real request the client sends.
var requestKinds = []struct {
	mk   func() Request
	real Request
}{
	{func() Request { return &LoadRequest{} }, &LoadRequest{Path: "v2.so", Digest: d64, Swap: true, AllowMinor: true}},
	{func() Request { return &SwapRequest{} }, &SwapRequest{Digest: d64}},
	{func() Request { return &RollbackRequest{} }, &RollbackRequest{}},
	{func() Request { return &RouteRequest{} }, &RouteRequest{Canary: d64, Percent: 30, AllowMinor: true}},
	{func() Request { return &ReexecRequest{} }, &ReexecRequest{Path: "/shared/v3.so", Digest: d64}},
	{func() Request { return &LimitsRequest{} }, &LimitsRequest{Limits: Limits{MaxVersions: 8, MaxExtraRSSBytes: 64 << 20}}},
}

// FuzzDecodeReaders: Decode decides on the bytes alone, however they arrive (all at once, a
// byte at a time, with the last bytes and EOF together, behind http.MaxBytesReader as the server
// reads them); it accepts only a bounded single JSON object with nothing after it; and every
// refusal is an *Error with the status of its code.
func FuzzDecodeReaders(f *testing.F) {
	for _, k := range requestKinds {
		b, err := json.Marshal(k.real)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(append(append([]byte(" \r\n\t"), b...), '\n'))
		f.Add(append(b, '}'))
		f.Add(append(b, ']'))
	}
	for _, s := range []string{
		`{}`, `{} `, `{}}`, `{}]`, `{} {}`, `{}x`, `null`, `[]`, `"{"`, `{"digest":"` + d64 + `","Digest":"` + d64 + `"}`,
		`{"path":"a\u0000b","digest":"` + d64 + `"}`, `{"percent":1e2,"canary":"` + d64 + `"}`, `{"percent":-0}`,
		"\xef\xbb\xbf{}", `{"path":"` + strings.Repeat("a", MaxRequestBytes-12) + `"}`, strings.Repeat(" ", MaxRequestBytes) + `{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		readers := map[string]func() io.Reader{
			"bytes":         func() io.Reader { return bytes.NewReader(data) },
			"one byte":      func() io.Reader { return iotest.OneByteReader(bytes.NewReader(data)) },
			"data with EOF": func() io.Reader { return iotest.DataErrReader(bytes.NewReader(data)) },
			"MaxBytesReader": func() io.Reader {
				return http.MaxBytesReader(nil, io.NopCloser(bytes.NewReader(data)), MaxRequestBytes)
			},
		}
		for _, k := range requestKinds {
			want := k.mk()
			wantErr := Decode(bytes.NewReader(data), want)
			for name, r := range readers {
				got := k.mk()
				err := Decode(r(), got)
				if codeOf(err) != codeOf(wantErr) || (err == nil && !reflect.DeepEqual(got, want)) {
					t.Fatalf("%T from %s: %v, %+v; read at once: %v, %+v", want, name, err, got, wantErr, want)
				}
			}
			if wantErr != nil {
				var ce *Error
				if !errors.As(wantErr, &ce) || (ce.Code != CodeBadRequest && ce.Code != CodeTooLarge) || ce.Status != CodeStatus(ce.Code) {
					t.Fatalf("Decode into %T refused with %#v; want a BadRequest or TooLarge *Error with its status", want, wantErr)
				}
				continue
			}
			if trimmed := bytes.TrimSpace(data); len(data) > MaxRequestBytes || !json.Valid(trimmed) || trimmed[0] != '{' {
				t.Fatalf("Decode accepted %d bytes into %T that are not one bounded JSON object: %s", len(data), want, clip(data))
			}
		}
	})
}

func codeOf(err error) Code {
	if err == nil {
		return ""
	}
	var ce *Error
	if !errors.As(err, &ce) {
		return "not an *Error"
	}
	return ce.Code
}

// responseKinds are the client's calls, each with the real answer a host gives.
var responseKinds = []struct {
	name string
	call func(ctx context.Context, c *Client) (any, error)
	real any
}{
	{"status", func(ctx context.Context, c *Client) (any, error) { return c.Status(ctx) }, &Status{
		PID: 7, HostGoVersion: "go1.26.8", APIVersion: "1.2.0", Current: d64, LoadedVersions: 1,
		Versions: []VersionStatus{{Digest: d64, Path: "/shared/v1.so", FileDigest: d64, PluginPath: "example.com/p", APIVersion: "1.2.0",
			State: StateCurrent, InFlight: 2, Calls: 10, LoadedAt: time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC), LoadSeconds: 0.2}},
		LastSwap: &SwapResult{Op: OpSwap, To: d64, StartedAt: time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC), Before: &Snapshot{GCCycles: 1}, After: &Snapshot{GCCycles: 2}},
		RSSBytes: 1 << 25, BaselineRSSBytes: 1 << 24, Limits: Limits{MaxVersions: 8}, Handoff: &HandoffStatus{Generation: 1},
	}},
	{"load", func(ctx context.Context, c *Client) (any, error) {
		return c.Load(ctx, LoadRequest{Path: "v2.so", Digest: d64, Swap: true})
	}, &LoadResponse{Version: VersionStatus{Digest: d64, State: StateFailed, Error: "init panic", ErrorCode: CodeLoadFailed, ErrorReason: "InitPanic"}, Swap: &SwapResult{Op: OpSwap, Error: "x"}}},
	{"swap", func(ctx context.Context, c *Client) (any, error) { return c.Swap(ctx, SwapRequest{Digest: d64}) }, &SwapResult{Op: OpSwap, From: d64, To: d64, Seconds: 0.01}},
	{"rollback", func(ctx context.Context, c *Client) (any, error) { return c.Rollback(ctx) }, &SwapResult{Op: OpRollback, Reason: "asked"}},
	{"route", func(ctx context.Context, c *Client) (any, error) {
		return c.Route(ctx, RouteRequest{Canary: d64, Percent: 10})
	}, &SwapResult{Op: OpRoute, Canary: d64, CanaryPercent: 10}},
	{"reexec", func(ctx context.Context, c *Client) (any, error) { return c.Reexec(ctx, ReexecRequest{}) }, &ReexecResponse{Accepted: true, Generation: 2}},
	{"limits", func(ctx context.Context, c *Client) (any, error) {
		return c.SetLimits(ctx, LimitsRequest{Limits: Limits{MaxVersions: 8}})
	}, &Limits{MaxVersions: 8}},
}

// FuzzClientResponses: whatever a host answers, the client returns a value only for a success
// status with exactly one JSON object, and otherwise an error; a refusal (status 400 or more) is
// always an *Error carrying that status and a code, and quotes a bounded part of a body that
// is not an ErrorResponse.
func FuzzClientResponses(f *testing.F) {
	for i, k := range responseKinds {
		b, err := json.Marshal(k.real)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(i), uint16(http.StatusOK), b)
		f.Add(uint8(i), uint16(http.StatusOK), append(b, '}'))
	}
	for _, code := range []Code{CodeBadRequest, CodeUnknownDigest, CodePreflight, CodeHandoff, CodeTooLarge} {
		b, _ := json.Marshal(ErrorResponse{Error: ErrorBody{Code: code, Reason: "PackageHashMismatch", Message: "m"}})
		f.Add(uint8(0), uint16(CodeStatus(code)), b)
	}
	f.Add(uint8(1), uint16(500), []byte("panic: runtime error\n"+strings.Repeat("goroutine 1\n", 100)))
	f.Add(uint8(2), uint16(404), []byte(`{"error":{"code":""}}`))
	f.Add(uint8(3), uint16(200), []byte(`null`))
	f.Add(uint8(4), uint16(200), []byte(`[]`))
	f.Add(uint8(5), uint16(201), []byte(` {} `))
	f.Add(uint8(0), uint16(299), []byte(`{"pid":1}{"pid":2}`))
	f.Add(uint8(0), uint16(302), []byte(`{}`))

	var (
		mu     sync.Mutex
		status int
		body   []byte
	)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		s, b := status, body
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(s)
		w.Write(b)
	}))
	socket := filepath.Join(f.TempDir(), SocketName)
	l, err := net.Listen("unix", socket)
	if err != nil {
		f.Fatal(err)
	}
	srv.Listener = l
	srv.Start()
	f.Cleanup(srv.Close)
	client := NewClient(socket)

	f.Fuzz(func(t *testing.T, which uint8, code uint16, data []byte) {
		k := responseKinds[int(which)%len(responseKinds)]
		// Statuses a server can send with a body: 200-599 but 204 and 304.
		st := int(code)
		if st < 200 || st > 599 {
			st = 200 + st%400
		}
		if st == http.StatusNoContent || st == http.StatusNotModified {
			st = http.StatusOK
		}
		mu.Lock()
		status, body = st, data
		mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		v, err := k.call(ctx, client)
		if ctx.Err() != nil {
			t.Fatalf("%s: the client did not return within 10s", k.name)
		}
		if st >= 400 {
			var ce *Error
			if !errors.As(err, &ce) || ce.Status != st || ce.Code == "" {
				t.Fatalf("%s answered %d %s: %#v; want an *Error with the status and a code", k.name, st, clip(data), err)
			}
			var er ErrorResponse
			if json.Unmarshal(data, &er) != nil || er.Error.Code == "" {
				if ce.Code != CodeInternal || len(ce.Message) > 4*200+200 {
					t.Fatalf("%s answered %d %s: code %s, message of %d bytes; want Internal and a bounded quote", k.name, st, clip(data), ce.Code, len(ce.Message))
				}
			}
			return
		}
		if real, _ := json.Marshal(k.real); st == http.StatusOK && bytes.Equal(data, real) && (err != nil || !reflect.DeepEqual(v, k.real)) {
			t.Fatalf("%s: the host's real answer came back as %+v, %v", k.name, v, err)
		}
		if err != nil {
			return
		}
		if trimmed := bytes.TrimSpace(data); !json.Valid(trimmed) || trimmed[0] != '{' {
			t.Fatalf("%s accepted %d %s, which is not one JSON object, as %+v", k.name, st, clip(data), v)
		}
	})
}

// clip quotes at most the first and last 100 bytes of a fuzzer's input.
func clip(b []byte) string {
	if len(b) <= 240 {
		return fmt.Sprintf("%q", b)
	}
	return fmt.Sprintf("%q ... (%d bytes) ... %q", b[:100], len(b), b[len(b)-100:])
}
