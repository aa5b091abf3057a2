package host

import (
	"context"
	"testing"

	"github.com/splice-dev/splice/host/preflight"
)

func refDigest(r *stateRef) string {
	if r == nil {
		return ""
	}
	return r.Digest
}

func frozenState(s *Slot[greeterT], target *ReexecTarget) slotState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.handoffState(target)
}

func mustSwap(t *testing.T, s *Slot[greeterT], d string) {
	t.Helper()
	if _, err := s.Swap(context.Background(), d, SwapOptions{AllowMinor: true}); err != nil {
		t.Fatalf("swap to %s: %v", d, err)
	}
}

// TestHandoffStateCarriesRollbackTarget: the state a re-exec hands over names the version
// Rollback would return to — the top of the history for a plain re-exec, the serving version
// for a re-exec into a named target (with the old rollback target behind it, for when the target
// fails to load) — and never one that serves already as the current version.
func TestHandoffStateCarriesRollbackTarget(t *testing.T) {
	s := newTestSlot(t, Options{})
	a, b, c, x := digest('a'), digest('b'), digest('c'), digest('x')
	for _, d := range []string{a, b, c} {
		s.install(d, "1.0.0", &named{name: d})
	}
	type want struct{ previous, current, fallbackPrevious, canary string }
	check := func(what string, target *ReexecTarget, w want) {
		t.Helper()
		st := frozenState(s, target)
		got := want{refDigest(st.Previous), refDigest(st.Current), refDigest(st.FallbackPrevious), refDigest(st.Canary)}
		if got != w {
			t.Fatalf("%s: handed over %+v; want %+v", what, got, w)
		}
	}

	check("before any swap", nil, want{})
	mustSwap(t, s, a)
	check("a only", nil, want{current: a})
	mustSwap(t, s, b)
	mustSwap(t, s, c)
	check("a, b, c swapped in turn", nil, want{previous: b, current: c})
	check("into x from c", &ReexecTarget{Path: "/p/x", Digest: x}, want{previous: c, current: x, fallbackPrevious: b})
	check("into the current version", &ReexecTarget{Path: "/p/c2", Digest: c}, want{previous: b, current: c})

	if _, err := s.Route(context.Background(), a, 30, SwapOptions{}); err != nil {
		t.Fatal(err)
	}
	check("canary a over c", nil, want{previous: b, current: c, canary: a})
	if _, err := s.Route(context.Background(), b, 30, SwapOptions{}); err != nil {
		t.Fatal(err)
	}
	if st := frozenState(s, nil); refDigest(st.Canary) != b || refDigest(st.Previous) != b || st.Percent != 30 {
		t.Fatalf("canary b, which is also the rollback target: %+v", st)
	}
	if _, err := s.Route(context.Background(), "", 0, SwapOptions{}); err != nil {
		t.Fatal(err)
	}

	if _, err := s.Rollback(context.Background()); err != nil {
		t.Fatal(err)
	}
	check("rolled back to b", nil, want{previous: a, current: b})
	// Swapping back to a version in the history leaves it there below the new entry; the
	// rollback target is never the current version itself.
	mustSwap(t, s, a)
	check("a again", nil, want{previous: b, current: a})
}

// TestMemoryBoundCountsRollbackTarget: the bound re-execs only an image that holds more than
// the versions routed and the one to roll back to, so a bound of 2 re-execs at the third file
// and an image holding only current and previous (what a re-exec restores) never re-execs.
// Without a Handoff the slot only warns, once, which is what the test observes.
func TestMemoryBoundCountsRollbackTarget(t *testing.T) {
	a, b, c, d := digest('a'), digest('b'), digest('c'), digest('d')
	fresh := func(bound int) *Slot[greeterT] {
		s := newTestSlot(t, Options{MaxVersions: bound})
		for _, x := range []string{a, b, c, d} {
			s.install(x, "1.0.0", &named{name: x})
		}
		return s
	}
	open := func(s *Slot[greeterT], n int) {
		s.mu.Lock()
		defer s.mu.Unlock()
		for i := 0; i < n; i++ {
			s.opened = append(s.opened, &preflight.Facts{})
		}
	}

	s := fresh(2)
	open(s, 1)
	mustSwap(t, s, a)
	open(s, 1)
	mustSwap(t, s, b)
	if s.limitWarned.Load() {
		t.Fatal("2 files opened passed a bound of 2")
	}
	open(s, 1)
	mustSwap(t, s, c)
	if !s.limitWarned.Load() {
		t.Fatal("3 files opened, 2 to keep (c and b to roll back to): the bound of 2 did not fire")
	}

	// What a re-exec restores: b loaded at the top of the history, then c current.
	s = fresh(2)
	open(s, 2)
	s.mu.Lock()
	s.pushHistory(s.entries[b])
	s.mu.Unlock()
	mustSwap(t, s, c)
	mustSwap(t, s, c) // a routing change that changes nothing
	if _, err := s.Route(context.Background(), b, 10, SwapOptions{}); err != nil {
		t.Fatal(err)
	}
	if s.limitWarned.Load() {
		t.Fatal("an image holding only current and the version to roll back to would re-exec")
	}
	// A canary on a third version: all three must be kept, so still no re-exec.
	open(s, 1)
	if _, err := s.Route(context.Background(), a, 10, SwapOptions{}); err != nil {
		t.Fatal(err)
	}
	if s.limitWarned.Load() {
		t.Fatal("current, canary and the version to roll back to are all kept; a re-exec would shed nothing")
	}
	// Promoting the canary leaves b behind: c is now the one to roll back to.
	mustSwap(t, s, a)
	if !s.limitWarned.Load() {
		t.Fatal("after promoting the canary, b is shed by a re-exec: the bound of 2 did not fire")
	}

	// A bound of 1 keeps the version to roll back to all the same.
	s = fresh(1)
	open(s, 1)
	mustSwap(t, s, a)
	open(s, 1)
	mustSwap(t, s, b)
	if s.limitWarned.Load() {
		t.Fatal("a bound of 1 re-execs an image holding only current and previous")
	}
	if got := s.mustKeep(s.tbl.Load()); got != 2 {
		t.Fatalf("mustKeep = %d; want 2", got)
	}
}
