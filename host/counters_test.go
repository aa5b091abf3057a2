package host

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/go-logr/logr/funcr"

	"github.com/splice-dev/splice/host/control"
)

func TestCountersSizedForGOMAXPROCS(t *testing.T) {
	for _, procs := range []int{1, 2, 3, 8} {
		prev := runtime.GOMAXPROCS(procs)
		c := newCounters()
		runtime.GOMAXPROCS(prev)
		n := len(c.stripes)
		if n < 4*procs || n&(n-1) != 0 || n >= 8*procs {
			t.Errorf("GOMAXPROCS %d: %d stripes; want the smallest power of two >= %d", procs, n, 4*procs)
		}
		if 1<<(64-c.shift) != n {
			t.Errorf("GOMAXPROCS %d: shift %d does not select among %d stripes", procs, c.shift, n)
		}
	}
}

// TestPickIsStablePerGoroutine: a goroutine keeps its stripe, so its cache line stays on its
// core; goroutines started together are spread.
func TestPickIsStablePerGoroutine(t *testing.T) {
	c := newCounters()
	goroutines := 2 * len(c.stripes)
	picks := make([]int, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			first := c.pick()
			for range 1000 {
				if p := c.pick(); p != first {
					t.Errorf("goroutine %d picked stripe %d, then %d", g, first, p)
					return
				}
			}
			if first < 0 || first >= len(c.stripes) {
				t.Errorf("goroutine %d picked stripe %d of %d", g, first, len(c.stripes))
			}
			picks[g] = first
		}()
	}
	wg.Wait()
	distinct := map[int]bool{}
	for _, p := range picks {
		distinct[p] = true
	}
	// A hash that ignored the stack, or mapped neighbouring stacks together, leaves most
	// stripes unused. Even stacks placed at random would fail this about once in 10^5 runs.
	if want := len(c.stripes) / 2; len(distinct) < want {
		t.Fatalf("%d goroutines picked stripes %v: %d distinct; want at least %d", goroutines, picks, len(distinct), want)
	}
}

// TestCountersBackOffIsNotACall walks the protocol stripe by stripe: a caller that backs off
// from a retired version leaves its increment in place, and it must count neither as a call
// nor as running, now or after the version is routed again.
func TestCountersBackOffIsNotACall(t *testing.T) {
	c := newCounters()
	if !c.drained() {
		t.Fatal("new counters are not drained; a version is born retired and idle")
	}
	if c.enter(0) {
		t.Fatal("entered a version that was never routed")
	}
	c.unretire()
	last := len(c.stripes) - 1
	for _, i := range []int{0, last, last} {
		if !c.enter(i) {
			t.Fatalf("routable stripe %d refused a caller", i)
		}
	}
	if c.exit(last) {
		t.Fatal("an exit from a routable version reported it drained")
	}
	if c.retire() {
		t.Fatal("retire reported drained with 2 calls running")
	}
	for range 3 {
		if c.enter(0) || c.enter(last) {
			t.Fatal("a retired stripe let a caller in")
		}
	}
	if n, retired := c.inflight(); n != 2 || !retired {
		t.Fatalf("retired with 2 calls running and 6 callers backed off: inflight %d, retired %v; want 2, true", n, retired)
	}
	if calls, _ := c.totals(); calls != 3 {
		t.Fatalf("calls %d after 3 calls and 6 back-offs; want 3", calls)
	}
	if c.exit(0) {
		t.Fatal("drained with a call still running on the last stripe")
	}
	if !c.exit(last) {
		t.Fatal("the last call out of a retired version did not report it drained")
	}
	c.unretire()
	if n, retired := c.inflight(); n != 0 || retired {
		t.Fatalf("routed again: inflight %d, retired %v; want 0, false", n, retired)
	}
	if !c.enter(0) {
		t.Fatal("routed again, stripe 0 refused a caller")
	}
	if calls, _ := c.totals(); calls != 4 {
		t.Fatalf("calls %d after one more call; want 4 (the back-offs forgotten)", calls)
	}
	c.exit(0)
	if !c.retire() {
		t.Fatal("retire of an idle version did not report it drained")
	}
}

// TestCountersExactOnEveryStripe drives every stripe from several goroutines at once (indices
// chosen, not hashed, so no stripe is left out) and checks the sums.
func TestCountersExactOnEveryStripe(t *testing.T) {
	c := newCounters()
	c.unretire()
	n := len(c.stripes)
	const perGoroutine = 5000
	goroutines := 3 * n
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			i := g % n
			for k := range perGoroutine {
				if !c.enter(i) {
					t.Errorf("routable stripe %d refused a caller", i)
					return
				}
				if k%10 == 0 {
					c.failed(i)
				}
				c.exit(i)
			}
		}()
	}
	wg.Wait()
	calls, errs := c.totals()
	if want := uint64(goroutines * perGoroutine); calls != want {
		t.Errorf("calls %d; want %d", calls, want)
	}
	if want := uint64(goroutines * perGoroutine / 10); errs != want {
		t.Errorf("errors %d; want %d", errs, want)
	}
	if inflight, _ := c.inflight(); inflight != 0 {
		t.Errorf("inflight %d after every call returned; want 0", inflight)
	}
	if !c.retire() {
		t.Error("retire after every call returned did not report drained")
	}
}

// countingGreeter counts the calls it answers and fails every failEvery-th.
type countingGreeter struct {
	name      string
	calls     atomic.Uint64
	failEvery uint64
}

var errEveryNth = errors.New("every nth call fails")

func (g *countingGreeter) Greet(string) (string, error) {
	if n := g.calls.Add(1); g.failEvery > 0 && n%g.failEvery == 0 {
		return g.name, errEveryNth
	}
	return g.name, nil
}

// TestSlotCountersExactUnderConcurrency: G goroutines × M calls through Slot.Call, with the
// routing swapped back and forth meanwhile. Every version's Calls and Errors must equal what
// its implementation saw — a caller that backed off from a version retired under it counted as
// a call of that version would show here — and the sums must equal G × M.
func TestSlotCountersExactUnderConcurrency(t *testing.T) {
	s := newTestSlot(t, Options{})
	impls := map[string]*countingGreeter{
		digest('a'): {name: "a", failEvery: 7},
		digest('b'): {name: "b", failEvery: 5},
	}
	for d, g := range impls {
		s.install(d, "1.0.0", g)
	}
	ctx := context.Background()
	if _, err := s.Swap(ctx, digest('a'), SwapOptions{}); err != nil {
		t.Fatal(err)
	}
	const goroutines, perGoroutine, callsPerSwap = 8, 20000, 2000
	var wg sync.WaitGroup
	var made, callerErrors atomic.Uint64
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range perGoroutine {
				_, err := greet(s, "k")
				switch {
				case errors.Is(err, errEveryNth):
					callerErrors.Add(1)
				case err != nil:
					t.Errorf("call failed: %v", err)
					return
				}
				made.Add(1)
				if k%64 == 0 {
					runtime.Gosched() // let the swapper in on a 2-core machine
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	// A swap every callsPerSwap calls, so that the swaps fall among the calls however the
	// scheduler runs the callers.
	swaps, next := 0, byte('b')
swapping:
	for {
		select {
		case <-done:
			break swapping
		default:
		}
		if made.Load() < uint64(swaps+1)*callsPerSwap {
			runtime.Gosched()
			continue
		}
		if _, err := s.Swap(ctx, digest(next), SwapOptions{}); err != nil {
			t.Fatal(err)
		}
		swaps++
		next = 'a' + 'b' - next
	}
	st := s.Status()
	var calls, errs uint64
	for d, g := range impls {
		vs := st.Version(d)
		answered := g.calls.Load()
		if vs.Calls != answered || vs.Errors != answered/g.failEvery || vs.InFlight != 0 {
			t.Errorf("%s: calls %d, errors %d, in flight %d; its implementation answered %d calls (%d errors), none running",
				g.name, vs.Calls, vs.Errors, vs.InFlight, answered, answered/g.failEvery)
		}
		calls += vs.Calls
		errs += vs.Errors
	}
	if calls != goroutines*perGoroutine || errs != callerErrors.Load() {
		t.Errorf("summed over versions: %d calls, %d errors; the callers made %d calls and got %d errors",
			calls, errs, goroutines*perGoroutine, callerErrors.Load())
	}
	if swaps < 2 || impls[digest('a')].calls.Load() == 0 || impls[digest('b')].calls.Load() == 0 {
		t.Fatalf("%d swaps, calls a %d, b %d: the calls did not overlap the swaps; the test proved nothing",
			swaps, impls[digest('a')].calls.Load(), impls[digest('b')].calls.Load())
	}
}

// TestPanicThresholdCountsSinceRouted: the threshold applies to panics since the version last
// began serving, so panics before a swap away do not carry over to its next routing.
func TestPanicThresholdCountsSinceRouted(t *testing.T) {
	s := newTestSlot(t, Options{PanicThreshold: 3})
	s.install(digest('a'), "1.0.0", &named{name: "a"})
	s.install(digest('p'), "1.0.0", &named{name: "p", panics: true})
	ctx := context.Background()
	swap := func(c byte) {
		t.Helper()
		if _, err := s.Swap(ctx, digest(c), SwapOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	swap('a')
	swap('p')
	greet(s, "k")
	greet(s, "k")
	swap('a')
	swap('p')
	for i := 1; i <= 2; i++ {
		greet(s, "k")
		if st := s.Status(); st.Current != digest('p') {
			t.Fatalf("after %d panics since p was routed again (4 in all, threshold 3): current %s; want p", i, st.Current)
		}
	}
	greet(s, "k")
	eventually(t, "automatic rollback to a", func() bool { return s.Current().Digest() == digest('a') })
	st := s.Status()
	if st.LastSwap.Op != control.OpAutoRollback || !strings.Contains(st.LastSwap.Reason, "panicked 3 times") {
		t.Fatalf("last swap %s %q; want an auto-rollback after 3 panics", st.LastSwap.Op, st.LastSwap.Reason)
	}
	if vs := st.Version(digest('p')); vs.Panics != 5 || vs.Calls != 5 {
		t.Fatalf("p: %d panics, %d calls; want 5 and 5", vs.Panics, vs.Calls)
	}
}

// TestPanicThresholdUnderConcurrency: with many callers panicking at once the rollback fires
// once, and every panic a caller got is counted. The count it reports is the panic whose caller
// won the race to fire it: at least the threshold, and past it by less than the number of
// callers (each may have added its panic and not yet reached the check). That was so before
// the counters were striped: panics stay one word, for this exact count.
func TestPanicThresholdUnderConcurrency(t *testing.T) {
	var rollbacks atomic.Int32
	log := funcr.New(func(prefix, args string) {
		if strings.Contains(args, "rolled back automatically") {
			rollbacks.Add(1)
		}
	}, funcr.Options{})
	const threshold = 50
	s := newTestSlot(t, Options{PanicThreshold: threshold, Logger: log})
	s.install(digest('a'), "1.0.0", &named{name: "a"})
	s.install(digest('p'), "1.0.0", &named{name: "p", panics: true})
	ctx := context.Background()
	for _, d := range []string{digest('a'), digest('p')} {
		if _, err := s.Swap(ctx, d, SwapOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	const goroutines, perGoroutine = 8, 40
	var wg sync.WaitGroup
	var panicsSeen atomic.Uint64
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perGoroutine {
				var perr *PanicError
				if _, err := greet(s, "k"); errors.As(err, &perr) {
					panicsSeen.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	eventually(t, "automatic rollback to a, logged", func() bool { return rollbacks.Load() > 0 })
	st := s.Status()
	var fired, th int
	_, err := fmt.Sscanf(strings.TrimPrefix(st.LastSwap.Reason, digest('p')), " panicked %d times since it began serving (threshold %d)", &fired, &th)
	if st.LastSwap.Op != control.OpAutoRollback || err != nil || th != threshold || fired < threshold || fired >= threshold+goroutines {
		t.Fatalf("last swap %s %q; want an auto-rollback after %d to %d panics (threshold %d)",
			st.LastSwap.Op, st.LastSwap.Reason, threshold, threshold+goroutines-1, threshold)
	}
	p := st.Version(digest('p'))
	if p.Panics != panicsSeen.Load() || p.Calls != p.Panics || p.Panics < threshold {
		t.Fatalf("p: %d panics, %d calls; callers got %d panics; want all equal, at least %d", p.Panics, p.Calls, panicsSeen.Load(), threshold)
	}
	if a := st.Version(digest('a')); a.Calls+p.Calls != goroutines*perGoroutine {
		t.Fatalf("calls a %d + p %d; want %d", a.Calls, p.Calls, goroutines*perGoroutine)
	}
	if n := rollbacks.Load(); n != 1 {
		t.Fatalf("%d automatic rollbacks logged; want 1", n)
	}
}

// sharedCounters is the accounting the counters replaced, kept to benchmark against: one
// in-flight word and one calls word, adjacent in the version, written by every call on every
// core.
type sharedCounters struct {
	inflight atomic.Int64
	calls    atomic.Uint64
}

// The counter benchmarks isolate what a call adds to the routing table load and the deferred
// recover: the old three atomic adds on words every core shares, against two on the caller's
// stripe. Their serial difference is one atomic add; their parallel one, the shared cache line.
func BenchmarkCountersShared(b *testing.B) {
	var c sharedCounters
	benchCounters(b, func() {
		if c.inflight.Add(1)&int64(1)<<62 == 0 {
			c.calls.Add(1)
		}
		c.inflight.Add(-1)
	})
}

func BenchmarkCountersStriped(b *testing.B) {
	c := newCounters()
	c.unretire()
	benchCounters(b, func() {
		if i := c.pick(); c.enter(i) {
			c.exit(i)
		}
	})
}

func benchCounters(b *testing.B, call func()) {
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			call()
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				call()
			}
		})
	})
}
