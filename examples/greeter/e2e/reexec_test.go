package e2e

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/splice-dev/splice/host/control"
)

// TestReexecHandoffUnderLoad re-executes the host three ways — the memory bound, SIGHUP, and
// a control request naming a new version — while clients send POSTs, each on a connection of
// its own: not one may fail, every answer must come from the same PID, and after each hand-off
// the new image must hold only the serving versions and the one to roll back to.
func TestReexecHandoffUnderLoad(t *testing.T) {
	h := startHost(t, "-max-versions", "2")
	ctx := h.ctx(t)
	l := startLoad(h.Addr(), 16, true)
	defer func() {
		if l != nil {
			l.finish()
		}
	}()
	generation := func() int {
		st := h.status(t)
		if st.Handoff == nil {
			t.Fatal("status has no hand-off section")
		}
		return st.Handoff.Generation
	}
	afterHandoff := func(gen int, current, canary, previous string) *control.Status {
		t.Helper()
		waitFor(t, "hand-off generation "+strconv.Itoa(gen), func() bool { h.requireAlive(); return generation() >= gen })
		st := h.status(t)
		wantOpened, wantCanary := 1, ""
		if canary != "" {
			wantOpened, wantCanary = 2, h.digest(canary)
		}
		if previous != canary {
			wantOpened++
			if vs := st.Version(h.digest(previous)); vs == nil || vs.State != control.StateLoaded {
				t.Fatalf("after hand-off %d: %s, the version to roll back to, is %+v; want it Loaded", gen, previous, vs)
			}
		}
		if st.PID != h.PID() || st.Handoff.Generation != gen || st.Current != h.digest(current) || st.Canary != wantCanary ||
			st.LoadedVersions != wantOpened || len(st.Versions) != wantOpened {
			t.Fatalf("after hand-off %d: pid %d (want %d), current %s (want %s), canary %q (want %q), %d versions opened (want %d) — %+v",
				gen, st.PID, h.PID(), st.Current, current, st.Canary, wantCanary, st.LoadedVersions, wantOpened, st.Handoff)
		}
		t.Logf("hand-off %d (%s): drain %.1f ms, exec to serving %.1f ms", gen, st.Handoff.Reason, 1000*st.Handoff.DrainSeconds, 1000*st.Handoff.ExecToServeSeconds)
		l.progress(t, 100)
		return st
	}

	l.progress(t, 100)
	// 1. Memory bound: the third file opened passes -max-versions 2.
	if _, err := h.client.Load(ctx, control.LoadRequest{Path: h.pluginPath("v2"), Digest: h.digest("v2"), Swap: true}); err != nil {
		t.Fatal(err)
	}
	l.progress(t, 100)
	if generation() != 0 {
		t.Fatal("re-executed at 2 versions opened; the bound is more than 2")
	}
	if _, err := h.client.Load(ctx, control.LoadRequest{Path: h.pluginPath("v3"), Digest: h.digest("v3"), Swap: true, AllowMinor: true}); err != nil {
		t.Fatal(err)
	}
	afterHandoff(1, "v3", "", "v2")

	// 2. SIGHUP, with a request-level canary running: the new image restores the split. The
	// canary is v2, which the new image holds already as the version to roll back to.
	if _, err := h.client.Route(ctx, control.RouteRequest{Canary: h.digest("v2"), Percent: 40, AllowMinor: true}); err != nil {
		t.Fatal(err)
	}
	l.progress(t, 100)
	if err := h.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if st := afterHandoff(2, "v3", "v2", "v2"); st.CanaryPercent != 40 {
		t.Fatalf("canary restored at %d%%; want 40", st.CanaryPercent)
	}

	// 3. Over the control socket, into v2: the new image opens v3, which served before and is
	// now the version to roll back to, then v2, and nothing else.
	resp, err := h.client.Reexec(ctx, control.ReexecRequest{Path: h.pluginPath("v2"), Digest: h.digest("v2")})
	if err != nil || !resp.Accepted || resp.Generation != 3 {
		t.Fatalf("reexec request: %+v, %v", resp, err)
	}
	afterHandoff(3, "v2", "", "v3")

	l.finish()
	ld := l
	l = nil
	ld.check(t)
	if len(ld.pids) != 1 || ld.pids[strconv.Itoa(h.PID())] == 0 {
		t.Fatalf("answers came from pids %v; want only %d", ld.pids, h.PID())
	}
	for g := 0; g <= 3; g++ {
		if ld.generations[strconv.Itoa(g)] == 0 {
			t.Errorf("no request was answered by image generation %d", g)
		}
	}
}

// TestRSSBoundReexecsOnce: with an RSS bound smaller than one plugin, the first swap does not
// re-exec the host (it holds only v2 and v1 to roll back to: a new image would be the same);
// the second does, and the new image — whose restored versions alone pass the bound — must not
// re-exec again on its own.
func TestRSSBoundReexecsOnce(t *testing.T) {
	h := startHost(t, "-max-extra-rss", "1")
	ctx := h.ctx(t)
	l := startLoad(h.Addr(), 4, true)
	for _, v := range []string{"v2", "v3"} {
		if _, err := h.client.Load(ctx, control.LoadRequest{Path: h.pluginPath(v), Digest: h.digest(v), Swap: true, AllowMinor: true}); err != nil {
			l.finish()
			t.Fatal(err)
		}
		if st := h.status(t); v == "v2" && (st.Handoff == nil || st.Handoff.Generation != 0 || st.Handoff.InProgress) {
			l.finish()
			t.Fatalf("the swap to v2 started a re-exec (%+v); the host held only v2 and v1 to roll back to", st.Handoff)
		}
	}
	waitFor(t, "the RSS-bound re-exec", func() bool {
		h.requireAlive()
		st := h.status(t)
		return st.Handoff != nil && st.Handoff.Generation >= 1
	})
	l.progress(t, 200)
	l.finish()
	l.check(t)
	st := h.status(t)
	if st.Handoff.Generation != 1 || !strings.Contains(st.Handoff.Reason, "RSS") || st.Current != h.digest("v3") {
		t.Fatalf("after 200 more requests: generation %d (%s), current %s; want exactly one RSS re-exec, serving v3",
			st.Handoff.Generation, st.Handoff.Reason, st.Current)
	}
}

// TestAbandonedHandoffKeepsServing: a client sends a request's headers and holds back its
// body, so the request stays in flight and the drain cannot finish. (A connection that sent
// nothing, or stopped at the end of a header line, would be handed over.) The hand-off must be
// abandoned — not forced by dropping the connection — and the host must serve on: new
// requests, and the held request itself once its body arrives.
func TestAbandonedHandoffKeepsServing(t *testing.T) {
	h := startHost(t, "-drain-timeout", "300ms")
	ctx := h.ctx(t)
	held, err := net.Dial("tcp", h.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if _, err := io.WriteString(held, "POST /greet HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatalf("write the held request's headers: %v", err)
	}
	l := startLoad(h.Addr(), 8, true)
	l.progress(t, 100)
	if _, err := h.client.Reexec(ctx, control.ReexecRequest{}); err != nil {
		l.finish()
		t.Fatal(err)
	}
	waitFor(t, "the hand-off to be abandoned", func() bool {
		st := h.status(t)
		return st.Handoff != nil && strings.Contains(st.Handoff.LastError, "connections still open") && !st.Handoff.InProgress
	})
	l.progress(t, 100)
	l.finish()
	l.check(t)
	st := h.status(t)
	if st.PID != h.PID() || st.Handoff.Generation != 0 {
		t.Fatalf("after an abandoned hand-off: pid %d generation %d; want %d and 0", st.PID, st.Handoff.Generation, h.PID())
	}
	// The held request was neither dropped nor forgotten.
	if _, err := io.WriteString(held, "held"); err != nil {
		t.Fatalf("write the held request's body: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(held), nil)
	if err != nil {
		t.Fatalf("the held connection got no answer: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "held") {
		t.Fatalf("held connection: %d %q", resp.StatusCode, body)
	}
}
