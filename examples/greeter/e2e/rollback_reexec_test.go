package e2e

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/splice-dev/splice/host/control"
)

// rbPanicThreshold is the panic threshold of the bad-version test: high enough that the image
// the swap happened in cannot reach it in the moment between the swap and its exec (only the
// connections open then are served there), so that the rollback has to happen in the new image.
// 40 was reached there once in a full run of this package on a loaded machine (the drain
// finishes in-flight requests before the exec); 200 leaves room.
const rbPanicThreshold = 200

// rbWaitGeneration waits until the host has re-executed gen times and the hand-off is over.
func rbWaitGeneration(t *testing.T, h *hostProc, gen int) *control.Status {
	t.Helper()
	waitFor(t, "hand-off generation "+strconv.Itoa(gen), func() bool {
		h.requireAlive()
		st := h.status(t)
		return st.Handoff != nil && st.Handoff.Generation >= gen && !st.Handoff.InProgress
	})
	st := h.status(t)
	if st.Handoff.Generation != gen || st.PID != h.PID() {
		t.Fatalf("hand-off generation %d in pid %d; want exactly %d in pid %d", st.Handoff.Generation, st.PID, gen, h.PID())
	}
	return st
}

// rbState checks a version's state in st; nil want means the image must not hold it.
func rbState(t *testing.T, h *hostProc, st *control.Status, name string, want control.VersionState) {
	t.Helper()
	vs := st.Version(h.digest(name))
	switch {
	case want == "" && vs != nil:
		t.Fatalf("generation %d holds %s (%s); it should have been left behind", st.Handoff.Generation, name, vs.State)
	case want != "" && vs == nil:
		t.Fatalf("generation %d does not hold %s; want it %s — versions %+v", st.Handoff.Generation, name, want, st.Versions)
	case want != "" && vs.State != want:
		t.Fatalf("generation %d: %s is %s (%s); want %s", st.Handoff.Generation, name, vs.State, vs.Error, want)
	}
}

// TestAutoRollbackAfterBoundReexec: the memory bound is crossed by the swap to a version whose
// every call panics, under load on fresh connections. The host re-execs at once; the new image
// must still hold the good version it came from, so that the panics roll the host back to it:
// after that every request succeeds, on the good version, with no further re-exec.
func TestAutoRollbackAfterBoundReexec(t *testing.T) {
	h := startHost(t, "-max-versions", "2", "-panic-threshold", strconv.Itoa(rbPanicThreshold))
	ctx := h.ctx(t)
	l := startLoad(h.Addr(), 16, true)
	defer func() {
		if l != nil {
			l.finish()
		}
	}()
	l.progress(t, 100)
	if _, err := h.client.Load(ctx, control.LoadRequest{Path: h.pluginPath("v2"), Digest: h.digest("v2"), Swap: true}); err != nil {
		t.Fatal(err)
	}
	l.progress(t, 100)
	// The third file opened passes the bound of 2, and the version swapped to panics.
	if _, err := h.client.Load(ctx, control.LoadRequest{Path: h.pluginPath("callpanic"), Digest: h.digest("callpanic"), Swap: true}); err != nil {
		t.Fatal(err)
	}
	rbWaitGeneration(t, h, 1)
	waitFor(t, "the automatic rollback to v2 in the new image", func() bool {
		h.requireAlive()
		return h.status(t).Current == h.digest("v2") || strings.Contains(h.log.String(), "automatic rollback impossible")
	})
	st := h.status(t)
	if st.Current != h.digest("v2") {
		l.progress(t, 300)
		l.finish()
		ld := l
		l = nil
		t.Fatalf("after the re-exec the host could not roll back: current %s, last swap %+v; %d of %d requests failed, and the bad version serves on",
			st.Current, st.LastSwap, ld.failed.Load(), ld.total.Load())
	}
	// LastSwap belongs to the image: an auto-rollback there means the new image rolled back.
	if ls := st.LastSwap; ls == nil || ls.Op != control.OpAutoRollback || ls.Error != "" ||
		ls.From != h.digest("callpanic") || ls.To != h.digest("v2") {
		t.Fatalf("generation %d's last swap %+v; want an auto-rollback from callpanic to v2 with no error (did the old image roll back before its exec? raise rbPanicThreshold)",
			st.Handoff.Generation, st.LastSwap)
	}
	if !strings.Contains(st.Handoff.Reason, "bound 2") {
		t.Fatalf("hand-off reason %q; want the bound of 2", st.Handoff.Reason)
	}
	rbState(t, h, st, "v1", "")
	rbState(t, h, st, "v2", control.StateCurrent)
	rbState(t, h, st, "callpanic", control.StateRetired)
	newPanics := st.Version(h.digest("callpanic")).Panics

	l.finish()
	ld := l
	l = nil
	ld.mu.Lock()
	failed, total, failures := ld.failed.Load(), ld.total.Load(), append([]string(nil), ld.failures...)
	ld.mu.Unlock()
	t.Logf("until the rollback: %d of %d requests failed (%d panics counted in the new image, threshold %d); versions %v, generations %v",
		failed, total, newPanics, rbPanicThreshold, ld.versions, ld.generations)
	if newPanics < rbPanicThreshold {
		t.Fatalf("callpanic panicked %d times in the new image; the rollback needs %d", newPanics, rbPanicThreshold)
	}
	for _, f := range failures {
		if !strings.Contains(f, "panicked") {
			t.Fatalf("a request failed other than by the bad version's panic: %s", f)
		}
	}
	// Panics in each image stay under the threshold there plus the calls already inside it.
	if bound := int64(2*rbPanicThreshold + 2*16); failed > bound {
		t.Fatalf("%d requests failed; at most %d may (the threshold in each image and the calls in flight)", failed, bound)
	}

	after := startLoad(h.Addr(), 16, true)
	after.progress(t, 300)
	after.finish()
	after.check(t)
	if len(after.versions) != 1 || after.versions["v2"] == 0 {
		t.Fatalf("after the rollback, answers came from %v; want only v2", after.versions)
	}
	if st := h.status(t); st.Handoff.Generation != 1 || st.Current != h.digest("v2") {
		t.Fatalf("after the rollback: generation %d, current %s; want 1 and v2", st.Handoff.Generation, st.Current)
	}
}

// TestRollbackAfterReexec: a bound set over the control socket is crossed by good versions
// under load. The new image holds the current version and the one to roll back to (that is
// the bound of 2, so it never re-execs again), and Rollback over the socket returns to it.
// One level of history survives a re-exec: a second rollback has nowhere to go.
func TestRollbackAfterReexec(t *testing.T) {
	h := startHost(t)
	ctx := h.ctx(t)
	if _, err := h.client.SetLimits(ctx, control.LimitsRequest{Limits: control.Limits{MaxVersions: 2}}); err != nil {
		t.Fatal(err)
	}
	l := startLoad(h.Addr(), 16, true)
	defer func() {
		if l != nil {
			l.finish()
		}
	}()
	for _, v := range []string{"v2", "v3"} {
		l.progress(t, 100)
		if _, err := h.client.Load(ctx, control.LoadRequest{Path: h.pluginPath(v), Digest: h.digest(v), Swap: true, AllowMinor: true}); err != nil {
			t.Fatalf("swap to %s: %v", v, err)
		}
	}
	st := rbWaitGeneration(t, h, 1)
	rbState(t, h, st, "v1", "")
	rbState(t, h, st, "v2", control.StateLoaded)
	rbState(t, h, st, "v3", control.StateCurrent)
	if st.LoadedVersions != 2 || st.LastSwap == nil || st.LastSwap.Op != control.OpRestore || st.LastSwap.Error != "" {
		t.Fatalf("generation 1: %d files opened, last swap %+v; want 2 and a clean restore", st.LoadedVersions, st.LastSwap)
	}
	l.progress(t, 200)
	// A routing change in an image that holds only what it must keep does not re-exec it.
	if _, err := h.client.Swap(ctx, control.SwapRequest{Digest: h.digest("v3")}); err != nil {
		t.Fatal(err)
	}
	l.progress(t, 100)

	res, err := h.client.Rollback(ctx)
	if err != nil {
		t.Fatalf("rollback after the re-exec: %v", err)
	}
	if res.From != h.digest("v3") || res.To != h.digest("v2") {
		t.Fatalf("rollback went from %s to %s; want v3 to v2", res.From, res.To)
	}
	if a := h.greet(t, "probe", ""); known(a, "probe") != nil || a.Version != "v2" {
		t.Fatalf("after the rollback: %+v (%v); want v2", a, known(a, "probe"))
	}
	if _, err := h.client.Rollback(ctx); codeOf(err) != control.CodeNoPrevious {
		t.Fatalf("second rollback: %v; want %s (only the version to roll back to crosses a re-exec)", err, control.CodeNoPrevious)
	}
	l.progress(t, 200)
	l.finish()
	ld := l
	l = nil
	ld.check(t)
	if st := h.status(t); st.Handoff.Generation != 1 || st.Current != h.digest("v2") {
		t.Fatalf("at the end: generation %d, current %s; want 1 (no second re-exec) and v2", st.Handoff.Generation, st.Current)
	}
	if ld.versions["v2"] == 0 || ld.versions["v3"] == 0 {
		t.Fatalf("answers by version %v; want both v3 (before the rollback) and v2 (after)", ld.versions)
	}
}

// TestReexecWithoutRollbackTargetFile: the file of the version to roll back to is gone when the
// host re-execs. The new image serves the current version all the same, says in its status
// that nothing can be rolled back to, and refuses Rollback with NoPreviousVersion.
func TestReexecWithoutRollbackTargetFile(t *testing.T) {
	h := startHost(t)
	ctx := h.ctx(t)
	if _, err := h.client.Load(ctx, control.LoadRequest{Path: h.pluginPath("v2"), Digest: h.digest("v2"), Swap: true}); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(h.pluginPath("v1")); err != nil {
		t.Fatal(err)
	}
	l := startLoad(h.Addr(), 8, true)
	defer func() {
		if l != nil {
			l.finish()
		}
	}()
	l.progress(t, 100)
	if err := h.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	st := rbWaitGeneration(t, h, 1)
	l.progress(t, 200)
	l.finish()
	ld := l
	l = nil
	ld.check(t)
	rbState(t, h, st, "v2", control.StateCurrent)
	ls := st.LastSwap
	if st.Current != h.digest("v2") || ls == nil || ls.Op != control.OpRestore || ls.Error != "" ||
		!strings.Contains(ls.Reason, h.digest("v1")) || !strings.Contains(ls.Reason, "roll back") {
		t.Fatalf("generation 1: current %s, last swap %+v; want v2 restored, the reason naming v1 as not restored for rollback", st.Current, ls)
	}
	if !strings.Contains(h.log.String(), "version to roll back to") {
		t.Fatalf("the host did not log the rollback target it could not restore")
	}
	if _, err := h.client.Rollback(ctx); codeOf(err) != control.CodeNoPrevious {
		t.Fatalf("rollback: %v; want %s", err, control.CodeNoPrevious)
	}
}

// TestReexecIntoTargetKeepsRollbackTarget: a re-exec into a named version is a swap done across
// the exec, and leaves the rollback target a swap would. Into v2 from v1: the new image holds
// v1 to roll back to. Into a version whose init panics: it fails to load in the new image, v2
// (which served) serves on, and v1 is still the version to roll back to, as after a swap that
// failed in place.
func TestReexecIntoTargetKeepsRollbackTarget(t *testing.T) {
	h := startHost(t)
	ctx := h.ctx(t)
	l := startLoad(h.Addr(), 8, true)
	defer func() {
		if l != nil {
			l.finish()
		}
	}()
	l.progress(t, 100)
	if _, err := h.client.Reexec(ctx, control.ReexecRequest{Path: h.pluginPath("v2"), Digest: h.digest("v2")}); err != nil {
		t.Fatal(err)
	}
	st := rbWaitGeneration(t, h, 1)
	rbState(t, h, st, "v1", control.StateLoaded)
	rbState(t, h, st, "v2", control.StateCurrent)
	if st.LoadedVersions != 2 {
		t.Fatalf("generation 1 opened %d files; want 2 (v2 and v1 to roll back to)", st.LoadedVersions)
	}
	l.progress(t, 100)

	if _, err := h.client.Reexec(ctx, control.ReexecRequest{Path: h.pluginPath("initpanic"), Digest: h.digest("initpanic")}); err != nil {
		t.Fatal(err)
	}
	st = rbWaitGeneration(t, h, 2)
	rbState(t, h, st, "initpanic", control.StateFailed)
	rbState(t, h, st, "v2", control.StateCurrent)
	rbState(t, h, st, "v1", control.StateLoaded)
	if ls := st.LastSwap; ls == nil || ls.Op != control.OpRestore || ls.Error != "" || !strings.Contains(ls.Reason, h.digest("initpanic")) {
		t.Fatalf("generation 2's last swap %+v; want a restore of v2 whose reason names the target that failed", ls)
	}
	l.progress(t, 100)
	res, err := h.client.Rollback(ctx)
	if err != nil || res.From != h.digest("v2") || res.To != h.digest("v1") {
		t.Fatalf("rollback after the failed target: %+v, %v; want v2 to v1", res, err)
	}
	l.progress(t, 100)
	l.finish()
	ld := l
	l = nil
	ld.check(t)
	for _, v := range []string{"v1", "v2"} {
		if ld.versions[v] == 0 {
			t.Errorf("no request was answered by %s", v)
		}
	}
}
