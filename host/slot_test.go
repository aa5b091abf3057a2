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
	"time"

	"github.com/splice-dev/splice/host/control"
)

type greeterT interface {
	Greet(name string) (string, error)
}

// named answers with its name and counts the calls running inside it, independently of the
// slot's own accounting.
type named struct {
	name    string
	running atomic.Int64
	block   chan struct{} // when non-nil, Greet waits for it to close
	started chan struct{} // when non-nil, Greet signals on entry
	panics  bool
}

func (n *named) Greet(string) (string, error) {
	n.running.Add(1)
	defer n.running.Add(-1)
	if n.started != nil {
		n.started <- struct{}{}
	}
	if n.block != nil {
		<-n.block
	}
	if n.panics {
		panic("boom from " + n.name)
	}
	return n.name, nil
}

func digest(c byte) string { return "sha256:" + strings.Repeat(string(c), 64) }

func newTestSlot(t testing.TB, opts Options) *Slot[greeterT] {
	t.Helper()
	s, err := New[greeterT](opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func greet(s *Slot[greeterT], key string) (string, error) {
	var out string
	err := s.Call(key, func(g greeterT) error {
		var err error
		out, err = g.Greet(key)
		return err
	})
	return out, err
}

// eventually polls cond until it holds or the deadline passes; tests never sleep blindly.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestNewRefusesNonInterface(t *testing.T) {
	if _, err := New[struct{}](Options{}); err == nil || !strings.Contains(err.Error(), "interface") {
		t.Fatalf("New[struct{}] = %v; want an error saying T must be an interface", err)
	}
}

func TestCallBeforeSwapAndCounters(t *testing.T) {
	s := newTestSlot(t, Options{})
	if _, err := greet(s, "k"); !errors.Is(err, ErrNoVersion) {
		t.Fatalf("call before any swap: %v; want ErrNoVersion", err)
	}
	s.install(digest('a'), "1.0.0", &named{name: "a"})
	if _, err := s.Swap(context.Background(), digest('a'), SwapOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if got, err := greet(s, "k"); err != nil || got != "a" {
			t.Fatalf("greet = %q, %v; want a", got, err)
		}
	}
	wantErr := errors.New("plugin says no")
	if err := s.Call("k", func(greeterT) error { return wantErr }); !errors.Is(err, wantErr) {
		t.Fatalf("Call returned %v; want the callback's error", err)
	}
	vs := s.Status().Versions[0]
	if vs.Calls != 4 || vs.Errors != 1 || vs.Panics != 0 || vs.InFlight != 0 || vs.State != control.StateCurrent {
		t.Fatalf("status %+v; want 4 calls, 1 error, 0 panics, 0 in flight, Current", vs)
	}
}

func TestSwapLetsInFlightCallsFinishAndWaitDrained(t *testing.T) {
	s := newTestSlot(t, Options{})
	a := &named{name: "a", block: make(chan struct{}), started: make(chan struct{})}
	s.install(digest('a'), "1.0.0", a)
	s.install(digest('b'), "1.0.0", &named{name: "b"})
	ctx := context.Background()
	if _, err := s.Swap(ctx, digest('a'), SwapOptions{}); err != nil {
		t.Fatal(err)
	}
	result := make(chan string)
	go func() {
		got, _ := greet(s, "slow")
		result <- got
	}()
	<-a.started
	a.started = nil // later calls must not block on the signal

	if _, err := s.Swap(ctx, digest('b'), SwapOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := greet(s, "fresh"); got != "b" {
		t.Fatalf("call after the swap answered by %q; want b", got)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	err := s.WaitDrained(cancelled, digest('a'))
	if err == nil || !strings.Contains(err.Error(), "1 calls still running") {
		t.Fatalf("WaitDrained(a) with a call in flight = %v; want it to report 1 call running", err)
	}
	if st := s.Status(); st.Version(digest('a')).InFlight != 1 || st.Version(digest('a')).State != control.StateRetired {
		t.Fatalf("a: %+v; want 1 in flight, Retired", st.Version(digest('a')))
	}
	close(a.block)
	if got := <-result; got != "a" {
		t.Fatalf("the call in flight during the swap finished on %q; want a", got)
	}
	if err := s.WaitDrained(ctx, digest('a')); err != nil {
		t.Fatalf("WaitDrained(a) after its call returned: %v", err)
	}
	if err := s.WaitDrained(ctx, digest('b')); err == nil {
		t.Fatal("WaitDrained on the current version returned nil; it can never drain")
	}
	if err := s.WaitDrained(ctx, digest('z')); !errors.Is(err, ErrUnknownDigest) {
		t.Fatalf("WaitDrained(unknown) = %v; want ErrUnknownDigest", err)
	}
}

// TestStaleReaderBacksOff is the race WaitDrained must be exact about, made deterministic: a
// caller read the routing table just before a swap and increments the old version's count
// just after. It must see the version retired, back off, and not count as running on it.
func TestStaleReaderBacksOff(t *testing.T) {
	s := newTestSlot(t, Options{})
	s.install(digest('a'), "1.0.0", &named{name: "a"})
	s.install(digest('b'), "1.0.0", &named{name: "b"})
	ctx := context.Background()
	if _, err := s.Swap(ctx, digest('a'), SwapOptions{}); err != nil {
		t.Fatal(err)
	}
	stale := s.tbl.Load().current // what a caller preempted inside acquire holds
	if _, err := s.Swap(ctx, digest('b'), SwapOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, ok := stale.v.enter(); ok {
		t.Fatal("a caller holding the pre-swap table entered the retired version")
	}
	if n, retired, _ := stale.v.drainState(); n != 0 || !retired {
		t.Fatalf("after backing off: %d in flight, retired %v; want 0, true", n, retired)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.WaitDrained(cancelled, digest('a')); err != nil {
		t.Fatalf("WaitDrained(a) with nothing in flight: %v", err)
	}
	if got, _ := greet(s, "k"); got != "b" {
		t.Fatalf("the retried call went to %q; want b", got)
	}
	// Routed again, it accepts callers again.
	if _, err := s.Swap(ctx, digest('a'), SwapOptions{}); err != nil {
		t.Fatal(err)
	}
	stripe, ok := stale.v.enter()
	if !ok {
		t.Fatal("a version routed again refused a caller")
	}
	stale.v.exit(stripe)
}

// TestDrainIsExact swaps back and forth under concurrent calls and checks, after each
// WaitDrained, that the implementation itself has no call running: a drain signal that came
// before a late caller entered would show up here.
func TestDrainIsExact(t *testing.T) {
	s := newTestSlot(t, Options{})
	impls := map[string]*named{digest('a'): {name: "a"}, digest('b'): {name: "b"}}
	for d, n := range impls {
		s.install(d, "1.0.0", n)
	}
	ctx := context.Background()
	if _, err := s.Swap(ctx, digest('a'), SwapOptions{}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var calls atomic.Int64
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := greet(s, "k"); err != nil {
					t.Errorf("call failed: %v", err)
					return
				}
				calls.Add(1)
				// Without it 8 spinning callers on a 2-core machine starve the swapper for a
				// whole preemption slice per swap.
				runtime.Gosched()
			}
		}()
	}
	cur := digest('a')
	for i := 0; i < 300; i++ {
		next := digest('b')
		if cur == next {
			next = digest('a')
		}
		if _, err := s.Swap(ctx, next, SwapOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := s.WaitDrained(ctx, cur); err != nil {
			t.Fatal(err)
		}
		if n := impls[cur].running.Load(); n != 0 {
			t.Fatalf("swap %d: WaitDrained(%s) returned with %d calls still inside it", i, impls[cur].name, n)
		}
		cur = next
	}
	close(stop)
	wg.Wait()
	if calls.Load() == 0 {
		t.Fatal("no calls ran during the swaps; the test proved nothing")
	}
}

func TestPanicRecoveredCountedAndRolledBack(t *testing.T) {
	s := newTestSlot(t, Options{PanicThreshold: 3})
	s.install(digest('a'), "1.0.0", &named{name: "a"})
	s.install(digest('p'), "1.0.1", &named{name: "p", panics: true})
	ctx := context.Background()
	for _, d := range []string{digest('a'), digest('p')} {
		if _, err := s.Swap(ctx, d, SwapOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= 2; i++ {
		_, err := greet(s, "k")
		var perr *PanicError
		if !errors.As(err, &perr) || perr.Digest != digest('p') || !strings.Contains(fmt.Sprint(perr.Value), "boom") || len(perr.Stack) == 0 {
			t.Fatalf("call %d: %v; want a *PanicError from p with value and stack", i, err)
		}
		if st := s.Status(); st.Current != digest('p') || st.Version(digest('p')).Panics != uint64(i) {
			t.Fatalf("after %d panics (threshold 3): current %s, panics %d; want p still current", i, st.Current, st.Version(digest('p')).Panics)
		}
	}
	if _, err := greet(s, "k"); err == nil {
		t.Fatal("third call to a panicking plugin succeeded")
	}
	eventually(t, "automatic rollback to a", func() bool { return s.Current().Digest() == digest('a') })
	st := s.Status()
	if st.LastSwap == nil || st.LastSwap.Op != control.OpAutoRollback || st.LastSwap.From != digest('p') || st.LastSwap.To != digest('a') {
		t.Fatalf("last swap %+v; want auto-rollback p -> a", st.LastSwap)
	}
	if got, err := greet(s, "k"); err != nil || got != "a" {
		t.Fatalf("after the rollback: %q, %v; want a", got, err)
	}
}

func TestPanickingCanaryIsDropped(t *testing.T) {
	s := newTestSlot(t, Options{PanicThreshold: 2})
	s.install(digest('a'), "1.0.0", &named{name: "a"})
	s.install(digest('p'), "1.0.1", &named{name: "p", panics: true})
	ctx := context.Background()
	if _, err := s.Swap(ctx, digest('a'), SwapOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Route(ctx, digest('p'), 100, SwapOptions{}); err != nil {
		t.Fatal(err)
	}
	greet(s, "k")
	greet(s, "k")
	eventually(t, "the canary to be dropped", func() bool { return s.Status().Canary == "" })
	if st := s.Status(); st.Current != digest('a') || st.LastSwap.Op != control.OpAutoRollback {
		t.Fatalf("after the canary's panics: current %s, last op %s; want a, auto-rollback", st.Current, st.LastSwap.Op)
	}
}

func TestRollback(t *testing.T) {
	s := newTestSlot(t, Options{})
	ctx := context.Background()
	for _, c := range []byte{'a', 'b', 'c'} {
		s.install(digest(c), "1.0.0", &named{name: string(c)})
	}
	if _, err := s.Rollback(ctx); !errors.Is(err, ErrNoPrevious) {
		t.Fatalf("rollback with nothing serving: %v; want ErrNoPrevious", err)
	}
	for _, c := range []byte{'a', 'b'} {
		if _, err := s.Swap(ctx, digest(c), SwapOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Route(ctx, digest('c'), 50, SwapOptions{}); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		wantCurrent, wantCanary string
		wantErr                 error
	}{
		{digest('b'), "", nil},           // drops the canary first
		{digest('a'), "", nil},           // then back to the previous current
		{digest('a'), "", ErrNoPrevious}, // a is the first that served
	}
	for i, st := range steps {
		_, err := s.Rollback(ctx)
		if !errors.Is(err, st.wantErr) {
			t.Fatalf("rollback %d: %v; want %v", i, err, st.wantErr)
		}
		got := s.Status()
		if got.Current != st.wantCurrent || got.Canary != st.wantCanary {
			t.Fatalf("rollback %d: current %s canary %q; want %s %q", i, got.Current, got.Canary, st.wantCurrent, st.wantCanary)
		}
	}
}

func TestSwapAPIRules(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name       string
		from, to   string
		allowMinor bool
		wantErr    error
	}{
		{"same", "1.2.3", "1.2.3", false, nil},
		{"patch up", "1.2.3", "1.2.4", false, nil},
		{"patch down", "1.2.3", "1.2.0", false, nil},
		{"pre-release is a patch", "1.2.3", "1.2.3-rc.1", false, nil},
		{"minor without consent", "1.2.3", "1.3.0", false, ErrAPIMinor},
		{"minor down without consent", "1.2.3", "1.1.9", false, ErrAPIMinor},
		{"minor with consent", "1.2.3", "1.3.0", true, nil},
		{"major", "1.2.3", "2.0.0", true, ErrAPIMajor},
		{"major down", "2.0.0", "1.9.9", true, ErrAPIMajor},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestSlot(t, Options{})
			s.install(digest('f'), tt.from, &named{name: "from"})
			s.install(digest('t'), tt.to, &named{name: "to"})
			if _, err := s.Swap(ctx, digest('f'), SwapOptions{}); err != nil {
				t.Fatal(err)
			}
			_, err := s.Swap(ctx, digest('t'), SwapOptions{AllowMinor: tt.allowMinor})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("swap %s -> %s (allowMinor %v): %v; want %v", tt.from, tt.to, tt.allowMinor, err, tt.wantErr)
			}
			want := digest('t')
			if tt.wantErr != nil {
				want = digest('f')
			}
			if got := s.Status().Current; got != want {
				t.Fatalf("current %s; want %s", got, want)
			}
			// A canary is held to the same rule.
			if tt.wantErr != nil {
				if _, err := s.Route(ctx, digest('t'), 10, SwapOptions{AllowMinor: tt.allowMinor}); !errors.Is(err, tt.wantErr) {
					t.Fatalf("route to %s: %v; want %v", tt.to, err, tt.wantErr)
				}
			}
		})
	}
}

func TestFirstSwapComparedWithHostAPIVersion(t *testing.T) {
	s := newTestSlot(t, Options{APIVersion: "1.0.0"})
	s.install(digest('m'), "1.1.0", &named{name: "m"})
	if _, err := s.Swap(context.Background(), digest('m'), SwapOptions{}); !errors.Is(err, ErrAPIMinor) {
		t.Fatalf("first swap to 1.1.0 on a 1.0.0 host without consent: %v; want ErrAPIMinor", err)
	}
}

func TestSwapErrors(t *testing.T) {
	s := newTestSlot(t, Options{})
	ctx := context.Background()
	s.install(digest('a'), "1.0.0", &named{name: "a"})
	if _, err := s.Swap(ctx, digest('z'), SwapOptions{}); !errors.Is(err, ErrUnknownDigest) {
		t.Fatalf("swap to an unknown digest: %v; want ErrUnknownDigest", err)
	}
	if _, err := s.Route(ctx, digest('a'), 10, SwapOptions{}); !errors.Is(err, ErrNotServable) {
		t.Fatalf("route with no current version: %v; want ErrNotServable", err)
	}
	if _, err := s.Swap(ctx, digest('a'), SwapOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Swap(ctx, digest('a'), SwapOptions{}); err != nil {
		t.Fatalf("swapping to the current version again must be a harmless no-op: %v", err)
	}
	if _, err := s.Route(ctx, digest('a'), 10, SwapOptions{}); !errors.Is(err, ErrNotServable) {
		t.Fatalf("route to the current version as canary: %v; want ErrNotServable", err)
	}
	if st := s.Status(); st.LastSwap.Error != "" || st.LastSwap.To != digest('a') || st.Current != digest('a') {
		t.Fatalf("a change refused for its input must change nothing, not even the last swap: %+v", st.LastSwap)
	}
	// A refusal on policy is an outcome, and is recorded.
	s.install(digest('m'), "2.0.0", &named{name: "m"})
	if _, err := s.Swap(ctx, digest('m'), SwapOptions{}); !errors.Is(err, ErrAPIMajor) {
		t.Fatalf("swap to a major change: %v", err)
	}
	if st := s.Status(); !strings.Contains(st.LastSwap.Error, "major") || st.Current != digest('a') {
		t.Fatalf("a refused major change must be recorded and change no routing: %+v", st.LastSwap)
	}
}

func TestCanaryRoutingFollowsRouteBucket(t *testing.T) {
	s := newTestSlot(t, Options{})
	ctx := context.Background()
	s.install(digest('a'), "1.0.0", &named{name: "a"})
	s.install(digest('b'), "1.0.0", &named{name: "b"})
	if _, err := s.Swap(ctx, digest('a'), SwapOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Route(ctx, digest('b'), 30, SwapOptions{}); err != nil {
		t.Fatal(err)
	}
	canary := 0
	for i := 0; i < 2000; i++ {
		key := fmt.Sprintf("user-%d", i)
		want := "a"
		if RouteBucket(key) < 30 {
			want = "b"
			canary++
		}
		for j := 0; j < 2; j++ { // same key, same version
			if got, err := greet(s, key); err != nil || got != want {
				t.Fatalf("key %q call %d: %q, %v; want %s", key, j, got, err, want)
			}
		}
	}
	if canary < 500 || canary > 700 {
		t.Fatalf("%d of 2000 keys went to a 30%% canary; the hash is badly skewed", canary)
	}
	if _, err := s.Route(ctx, "", 0, SwapOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := greet(s, "user-0"); got != "a" {
		t.Fatalf("after ending the canary: %q; want a", got)
	}
}
