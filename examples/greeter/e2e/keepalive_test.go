package e2e

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/splice-dev/splice/examples/greeter/greeterproc"
	"github.com/splice-dev/splice/host/control"
)

// keepAliveReexecs is how many times TestReexecKeepAliveZeroLoss re-executes the host.
const keepAliveReexecs = 50

// TestReexecKeepAliveZeroLoss re-executes the host keepAliveReexecs times while three kinds
// of client send POSTs (which no client library retries) without pause:
//
//   - keep-alive clients: one kept connection each, reused for request after request;
//   - fresh-connection clients: a connection of their own per request;
//   - idle clients: Go's default transport, a few requests, then the kept connections sit idle
//     for up to half a second (across hand-offs) before they are used again.
//
// Every request must be answered 200 by a known version and by the same PID: one transport
// error (an EOF on a kept connection closed under the client's next request) fails the test.
func TestReexecKeepAliveZeroLoss(t *testing.T) {
	h := startHost(t)
	ctx := h.ctx(t)
	kept := startLoad(h.Addr(), 4, false)
	fresh := startLoad(h.Addr(), 3, true)
	idle, reused := startIdleLoad(h.Addr(), 4, 500*time.Millisecond)
	loads := []*load{kept, fresh, idle}
	finished := false
	finish := func() {
		if !finished {
			finished = true
			for _, l := range loads {
				l.finish()
			}
		}
	}
	defer finish()

	start := time.Now()
	kept.progress(t, 50)
	done := 0
	for i := 1; i <= keepAliveReexecs; i++ {
		resp, err := h.client.Reexec(ctx, control.ReexecRequest{})
		if err != nil || !resp.Accepted {
			t.Fatalf("re-exec %d: %+v, %v", i, resp, err)
		}
		waitFor(t, "hand-off generation "+strconv.Itoa(i), func() bool {
			h.requireAlive()
			st := h.status(t)
			return st.Handoff != nil && st.Handoff.Generation >= i && !st.Handoff.InProgress
		})
		done = i
		// Traffic on both sides of every hand-off, and idle connections across it.
		kept.progress(t, 20)
		fresh.progress(t, 10)
		idle.progress(t, 2)
	}
	elapsed := time.Since(start)
	finish()

	var total, lost int64
	for _, l := range loads {
		total += l.total.Load()
		lost += l.failed.Load()
	}
	st := h.status(t)
	handed, replayed := handedOver(h.log.String())
	t.Logf("keep-alive hand-offs: %d re-execs in %s; %d requests (keep-alive %d, fresh %d, idle %d, of which %d on a connection idle before), %d lost; %d connections handed over (%d replay bytes); last drain %.1f ms, exec to serving %.1f ms",
		done, elapsed.Round(time.Millisecond), total, kept.total.Load(), fresh.total.Load(), idle.total.Load(), reused.Load(), lost,
		handed, replayed, 1000*st.Handoff.DrainSeconds, 1000*st.Handoff.ExecToServeSeconds)
	for _, l := range loads {
		l.check(t)
	}
	if st.PID != h.PID() || st.Handoff.Generation != keepAliveReexecs {
		t.Fatalf("after the test: pid %d generation %d; want %d and %d", st.PID, st.Handoff.Generation, h.PID(), keepAliveReexecs)
	}
	for _, l := range loads {
		if len(l.pids) != 1 || l.pids[strconv.Itoa(h.PID())] == 0 {
			t.Fatalf("answers came from pids %v; want only %d", l.pids, h.PID())
		}
	}
	if reused.Load() == 0 {
		t.Fatal("no idle client reused an idle connection; the test proved nothing about idle keep-alive connections")
	}
}

// handedOver sums, from the host's log, the connections its hand-offs parked for the next
// image and the bytes they replayed.
func handedOver(log string) (conns, replay int) {
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, "re-exec: connections parked") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "connections="); ok {
				n, _ := strconv.Atoi(v)
				conns += n
			}
			if v, ok := strings.CutPrefix(f, "replayBytes="); ok {
				n, _ := strconv.Atoi(v)
				replay += n
			}
		}
	}
	return conns, replay
}

// startIdleLoad starts clients on Go's default transport (keep-alive, two idle connections per
// host) that send a few POSTs, then leave their connections idle for a random time up to
// maxIdle, and again. reused counts the requests sent on a connection that had been idle.
func startIdleLoad(addr string, clients int, maxIdle time.Duration) (l *load, reused *atomic.Int64) {
	l = &load{versions: map[string]int{}, pids: map[string]int{}, generations: map[string]int{}, stop: make(chan struct{})}
	reused = &atomic.Int64{}
	trace := &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) {
		if ci.Reused && ci.WasIdle {
			reused.Add(1)
		}
	}}
	for i := 0; i < clients; i++ {
		base := http.DefaultTransport.(*http.Transport).Clone()
		c := &http.Client{Timeout: 30 * time.Second, Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			return base.RoundTrip(r.WithContext(httptrace.WithClientTrace(r.Context(), trace)))
		})}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer base.CloseIdleConnections()
			for n := 0; ; n++ {
				if n%3 == 0 {
					select {
					case <-l.stop:
						return
					case <-time.After(rand.N(maxIdle)):
					}
				}
				name := fmt.Sprintf("idle%d-%d", i, n)
				l.record(greeterproc.Greet(c, addr, name, ""), name)
			}
		}()
	}
	return l, reused
}

// record counts one answer the way startLoad's clients do.
func (l *load) record(a greeterproc.Answer, name string) {
	l.total.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := known(a, name); err != nil {
		l.failed.Add(1)
		if len(l.failures) < 20 {
			l.failures = append(l.failures, err.Error())
		}
		return
	}
	l.versions[a.Version]++
	l.pids[a.PID]++
	l.generations[a.Generation]++
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
