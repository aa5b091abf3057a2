package sidecar

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/host/control"
)

// fakeHost answers the control protocol on a unix socket in a fresh shared directory: its
// status is st, and every other request is recorded and answered by answer (nil: 500).
type fakeHost struct {
	mu       sync.Mutex
	st       control.Status
	answer   func(path string, body []byte) (int, any)
	requests []string
	bodies   map[string][]byte
}

func startFakeHost(t *testing.T, st control.Status, answer func(path string, body []byte) (int, any)) (*fakeHost, *Swapper) {
	t.Helper()
	// Not t.TempDir(): a unix socket path must stay under 108 bytes.
	dir, err := os.MkdirTemp("", "splice-fake-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, control.SocketName)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeHost{st: st, answer: answer, bodies: map[string][]byte{}}
	srv := &http.Server{Handler: f, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	s, err := NewSwapper(SwapperOptions{SharedDir: dir, Host: control.NewClient(sock), HostTimeout: 5 * time.Second, PullTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return f, s
}

func (f *fakeHost) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if r.URL.Path == "/v1/status" {
		json.NewEncoder(w).Encode(f.st)
		return
	}
	body, _ := io.ReadAll(r.Body)
	f.requests = append(f.requests, r.URL.Path)
	f.bodies[r.URL.Path] = body
	code, v := http.StatusInternalServerError, any(control.ErrorResponse{Error: control.ErrorBody{Code: control.CodeInternal, Message: "not in this test"}})
	if f.answer != nil {
		code, v = f.answer(r.URL.Path, body)
	}
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func (f *fakeHost) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.requests...)
}

// An artifact no registry serves (a refused connection): a pull of it fails at once.
func unreachable(d string) string { return "127.0.0.1:1/greeter@" + d }

// TestMemoryBoundReachesTheHost: the target's bound goes to the host before anything is
// loaded, with the host's RSS bound kept; a refusal is retried with the host's message, and
// nothing is loaded meanwhile.
func TestMemoryBoundReachesTheHost(t *testing.T) {
	st := control.Status{Instance: inst1, Current: dB, Versions: []control.VersionStatus{loaded(dB, control.StateCurrent)}, Limits: control.Limits{MaxVersions: 8, MaxExtraRSSBytes: 5 << 20}}
	target := Target{Ref: unreachable(dA), Digest: dA, Percent: 100, MaxLoadedVersions: 3}

	f, s := startFakeHost(t, st, func(path string, body []byte) (int, any) {
		return http.StatusBadRequest, control.ErrorResponse{Error: control.ErrorBody{Code: control.CodeBadRequest, Message: "limits.maxVersions 3 is not for this host"}}
	})
	out := s.Apply(context.Background(), target, nil)
	if !out.Retry || out.State != splicev1.SwapPending || out.Reason != ReasonHostLimitsRefused || out.Err == nil ||
		!strings.Contains(out.Err.Error(), "limits.maxVersions 3 is not for this host") || !strings.Contains(out.Err.Error(), splicev1.AnnotationMaxLoadedVersions) {
		t.Fatalf("refused bound: %+v %v; want a retried %s with the host's message", out, out.Err, ReasonHostLimitsRefused)
	}
	if got := f.calls(); len(got) != 1 || got[0] != "/v1/limits" {
		t.Fatalf("requests %v; want the limits request only", got)
	}
	var sent control.LimitsRequest
	if err := json.Unmarshal(f.bodies["/v1/limits"], &sent); err != nil || sent.Limits != (control.Limits{MaxVersions: 3, MaxExtraRSSBytes: 5 << 20}) {
		t.Fatalf("sent %s (%v); want maxVersions 3 with the host's RSS bound", f.bodies["/v1/limits"], err)
	}

	// A host library that predates the request: the error says what to do.
	_, old := startFakeHost(t, st, func(string, []byte) (int, any) {
		return http.StatusNotFound, control.ErrorResponse{Error: control.ErrorBody{Code: control.CodeNotFound, Message: "no such endpoint"}}
	})
	if out := old.Apply(context.Background(), target, nil); !out.Retry || !strings.Contains(out.Err.Error(), "rebuild the app") {
		t.Fatalf("old host: %+v %v", out, out.Err)
	}

	// The host has the bound already, or the pod names none: no request.
	for _, tt := range []struct {
		bound int
		host  int
	}{{3, 3}, {0, 8}} {
		st.Limits.MaxVersions = tt.host
		f, s := startFakeHost(t, st, nil)
		target.MaxLoadedVersions = tt.bound
		if out := s.Apply(context.Background(), target, nil); out.Reason != ReasonRetrying || out.State != splicev1.SwapPulling {
			t.Fatalf("bound %d, host %d: %+v %v; want the pull to be tried (and fail)", tt.bound, tt.host, out, out.Err)
		}
		if got := f.calls(); len(got) != 0 {
			t.Fatalf("bound %d, host %d: requests %v; want none", tt.bound, tt.host, got)
		}
	}
}

// TestCrashedVersionIsNeverRequested: a version that crashed the pod's host is refused before
// it is pulled, loaded or swapped to, as the stable or the desired version.
func TestCrashedVersionIsNeverRequested(t *testing.T) {
	st := control.Status{Instance: inst2, Current: dB, Versions: []control.VersionStatus{loaded(dB, control.StateCurrent)}}
	f, s := startFakeHost(t, st, nil)
	if err := s.markAttempt(&control.Status{Instance: inst1}, dA, attemptLoad); err != nil {
		t.Fatal(err)
	}
	for _, target := range []Target{
		{Ref: unreachable(dA), Digest: dA, Percent: 100},
		{Ref: unreachable(dC), Digest: dC, Percent: 10, StableRef: unreachable(dA), StableDigest: dA},
	} {
		// Apply itself sees the new instance: no agent needs to have looked first.
		out := s.Apply(context.Background(), target, nil)
		if out.State != splicev1.SwapCrashed || out.Reason != ReasonHostCrashed || out.Retry || !strings.Contains(out.Err.Error(), "never loaded again") {
			t.Fatalf("%s: %+v %v; want Crashed, final", target, out, out.Err)
		}
	}
	if got := f.calls(); len(got) != 0 {
		t.Fatalf("requests %v; want none", got)
	}
}

// TestAPIStepOfALoadedVersion: the plugin API step is checked for a version the host holds
// already (its own record of the version's API), before the swap; consent lets it through.
func TestAPIStepOfALoadedVersion(t *testing.T) {
	minor := loaded(dA, control.StateLoaded)
	minor.APIVersion = "1.1.0"
	cur := loaded(dB, control.StateCurrent)
	cur.APIVersion = "1.0.0"
	st := control.Status{Instance: inst1, APIVersion: "1.0.0", Current: dB, Versions: []control.VersionStatus{cur, minor}}
	f, s := startFakeHost(t, st, func(path string, body []byte) (int, any) {
		return http.StatusOK, control.SwapResult{Op: control.OpSwap, From: dB, To: dA}
	})
	target := Target{Ref: ref(dA), Digest: dA, Percent: 100, CompilerVersion: "greeter"}
	out := s.Apply(context.Background(), target, nil)
	if out.State != splicev1.SwapIncompatible || out.Reason != splicev1.ReasonMinorAPIChangeNotAllowed || !strings.Contains(out.Err.Error(), "on CompilerVersion greeter") {
		t.Fatalf("no consent: %+v %v", out, out.Err)
	}
	if got := f.calls(); len(got) != 0 {
		t.Fatalf("requests %v; want none", got)
	}
	target.AllowMinor = true
	if out := s.Apply(context.Background(), target, nil); out.State != splicev1.SwapReady {
		t.Fatalf("with consent: %+v %v", out, out.Err)
	}
	var req control.SwapRequest
	if err := json.Unmarshal(f.bodies["/v1/swap"], &req); err != nil || !req.AllowMinor || req.Digest != dA {
		t.Fatalf("swap request %s (%v); want the consent passed on", f.bodies["/v1/swap"], err)
	}
	// The swap brings in a version new in this host process: the marker names it.
	var a attempt
	if found, err := s.readState(attemptFile, &a, a.validate); !found || err != nil || a.Digest != dA || a.Op != attemptSwap || a.Instance != inst1 {
		t.Fatalf("marker %+v %v %v", a, found, err)
	}
}
