package host

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/splice-dev/splice/host/control"
	"github.com/splice-dev/splice/host/preflight"
)

// slotState is what a slot hands to its next image: the versions that serve and the one to
// roll back to. Versions merely loaded, retired further back, or failed are left behind — that
// is the point of re-executing.
//
// The rule for the rollback target: after a re-exec, Rollback and the automatic rollback
// return where they would have without it. A plain re-exec changes no routing, so Previous is
// the top of the history. A re-exec into a named target is a swap done across the exec, so
// Previous is the version serving now; should the target fail to load in the new image,
// Previous serves on and the rollback target is FallbackPrevious, as after a swap that failed
// in place. One level crosses the exec: the history further back is left behind.
type slotState struct {
	// Previous is loaded first, routed to nothing and put at the top of the history. When
	// Current fails to load, Previous serves instead.
	Previous *stateRef `json:"previous,omitempty"`
	Current  *stateRef `json:"current,omitempty"`
	// FallbackPrevious is the rollback target when Previous serves instead of a target that
	// failed to load (a re-exec into a named target only); loaded only then.
	FallbackPrevious *stateRef `json:"fallbackPrevious,omitempty"`
	Canary           *stateRef `json:"canary,omitempty"`
	Percent          int       `json:"percent,omitempty"`
	// Limits are the bounds SetLimits set, so that the agent's bound outlives the image.
	Limits *control.Limits `json:"limits,omitempty"`
}

type stateRef struct {
	Path   string `json:"path"`
	Digest string `json:"digest"`
	// FileDigest is the sha256 the file held when it was loaded: the new image loads it only
	// if it still does.
	FileDigest string `json:"fileDigest,omitempty"`
	AllowMinor bool   `json:"allowMinor,omitempty"`
}

// CheckReexec verifies a re-exec target without re-executing: the file must exist and pass
// the preflight against the host alone (the new image will have opened nothing else). The zero
// target (stay on the current version) always passes when a Handoff is configured.
func (s *Slot[T]) CheckReexec(target ReexecTarget) (ReexecTarget, error) {
	if s.handoff == nil {
		return target, fmt.Errorf("%w: the slot was created without Options.Handoff", ErrNoHandoff)
	}
	if target.Path == "" && target.Digest == "" {
		return target, nil
	}
	if !control.ValidDigest(target.Digest) {
		return target, fmt.Errorf("re-exec target: digest %q must match %s", target.Digest, control.DigestPattern)
	}
	real, err := regularFile(target.Path)
	if err != nil {
		return target, fmt.Errorf("re-exec target: %w", err)
	}
	target.Path = real
	facts, err := preflight.ReadFacts(real)
	if err != nil {
		return target, fmt.Errorf("re-exec target: %w: read build facts of %s: %v", ErrPreflight, real, err)
	}
	if v := preflight.Check(s.hostFacts, facts, nil); !v.OK {
		return target, fmt.Errorf("re-exec target: %w: %s", ErrPreflight, v.Error())
	}
	return target, nil
}

// Reexec re-executes the host in place (same PID) through the slot's Handoff: listeners are
// drained and handed over, and the new image loads only what this one must keep: the version
// Rollback would return to, then the current version (and canary) — or, when target names a
// version, the current version (now the one to roll back to), then target. A version that fails
// to load there leaves the other serving (see slotState for the rule). It returns only when the
// hand-off did not happen; the host then keeps serving.
func (s *Slot[T]) Reexec(ctx context.Context, target ReexecTarget, reason string) error {
	t, err := s.CheckReexec(target)
	if err != nil {
		return err
	}
	if reason == "" {
		reason = "requested"
	}
	return s.handoff.reexec(ctx, reason, map[string]*ReexecTarget{s.opts.Name: &t})
}

// freeze implements stateProvider: it locks the slot so that nothing changes between the
// state being captured and the exec, and returns the state.
func (s *Slot[T]) freeze(target *ReexecTarget) ([]byte, error) {
	s.mu.Lock()
	b, err := json.Marshal(s.handoffState(target))
	if err != nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("encode slot %s state: %w", s.opts.Name, err)
	}
	return b, nil
}

// handoffState is what the next image must load. s.mu held.
func (s *Slot[T]) handoffState(target *ReexecTarget) slotState {
	t := s.tbl.Load()
	var st slotState
	if lim := s.limits; lim != (control.Limits{MaxVersions: s.opts.MaxVersions, MaxExtraRSSBytes: s.opts.MaxExtraRSSBytes}) {
		st.Limits = &lim
	}
	// Every version handed over consented its way in; it may come back.
	ref := func(e *entry[T]) *stateRef {
		if e == nil {
			return nil
		}
		return &stateRef{Path: e.v.path, Digest: e.v.digest, FileDigest: e.v.fileDigest, AllowMinor: true}
	}
	if target != nil && target.Path != "" && target.Digest != digestOf(t.current) {
		st.Current = &stateRef{Path: target.Path, Digest: target.Digest, AllowMinor: target.AllowMinor}
		st.Previous = ref(t.current)
		st.FallbackPrevious = ref(s.previous(t.current))
		return st
	}
	// A plain re-exec (a target naming the current version is one too).
	st.Current, st.Canary, st.Percent = ref(t.current), ref(t.canary), t.percent
	st.Previous = ref(s.previous(t.current))
	return st
}

// thaw undoes freeze when the exec did not happen.
func (s *Slot[T]) thaw() { s.mu.Unlock() }

// restore loads, in a freshly re-executed image, what the previous image must keep: the
// version to roll back to first, then the serving ones. What failed is logged, and said in the
// reason of the restore's SwapResult (Status().LastSwap) and, for a load that got as far as the
// file, in the version's status.
func (s *Slot[T]) restore(raw []byte) {
	var st slotState
	if err := json.Unmarshal(raw, &st); err != nil {
		s.log.Error(err, "hand-off state unreadable; starting with no version")
		return
	}
	if st.Limits != nil {
		if _, err := s.SetLimits(*st.Limits); err != nil {
			s.log.Error(err, "hand-off state's memory bounds refused; keeping the application's")
		}
	}
	ctx := context.Background()
	s.restoring.Store(true)
	defer s.restoring.Store(false)
	if st.Current == nil {
		return // nothing served: nothing to keep
	}
	note := s.restorePrevious(ctx, st.Previous)
	if !s.restoreCurrent(ctx, st, note) {
		return
	}
	if st.Canary != nil && st.Percent > 0 {
		s.restoreCanary(ctx, st.Canary, st.Percent)
	}
}

// restorePrevious loads the version to roll back to and puts it at the top of the history,
// routing nothing to it. It returns "" or what the restore's result must say about a failure.
func (s *Slot[T]) restorePrevious(ctx context.Context, prev *stateRef) string {
	if prev == nil {
		return ""
	}
	if _, err := s.LoadSource(ctx, Source{Path: prev.Path, FileDigest: prev.FileDigest}, prev.Digest); err != nil {
		s.log.Error(err, "the version to roll back to failed to load after re-exec; the current version serves, and Rollback has nothing to return to until another version has served",
			"digest", prev.Digest, "path", prev.Path)
		return fmt.Sprintf("the version to roll back to, %s, was not restored (%v): Rollback has nothing to return to until another version has served", prev.Digest, err)
	}
	s.mu.Lock()
	s.pushHistory(s.entries[prev.Digest])
	s.mu.Unlock()
	return ""
}

// restoreCurrent loads the current version and makes it current; when it fails, the version
// to roll back to serves instead, with the rollback target it had (FallbackPrevious) when the
// current one was a re-exec target. It reports whether the current version serves.
func (s *Slot[T]) restoreCurrent(ctx context.Context, st slotState, note string) bool {
	start, before := time.Now(), TakeSnapshot()
	cur := st.Current
	_, err := s.LoadSource(ctx, Source{Path: cur.Path, FileDigest: cur.FileDigest}, cur.Digest)
	if err == nil {
		_, err = s.swap(control.OpRestore, note, cur.Digest, SwapOptions{AllowMinor: cur.AllowMinor}, start, before)
		if err == nil {
			return true
		}
	}
	if st.Previous == nil || note != "" {
		s.log.Error(err, "restoring the serving version after re-exec failed; calls fail with ErrNoVersion until a version is loaded", "digest", cur.Digest)
		return false
	}
	s.log.Error(err, "the serving version could not be restored after re-exec; the version to roll back to serves instead", "digest", cur.Digest, "instead", st.Previous.Digest)
	reason := fmt.Sprintf("%s could not be restored after re-exec (%v); %s, the version that served before it, serves instead", cur.Digest, err, st.Previous.Digest)
	s.mu.Lock()
	s.history = nil // Previous becomes current: it is no rollback target of itself
	s.mu.Unlock()
	if n := s.restorePrevious(ctx, st.FallbackPrevious); n != "" {
		reason += "; " + n
	}
	if _, err := s.swap(control.OpRestore, reason, st.Previous.Digest, SwapOptions{AllowMinor: true}, start, before); err != nil {
		s.log.Error(err, "restoring the version that served before after re-exec failed; calls fail with ErrNoVersion until a version is loaded", "digest", st.Previous.Digest)
	}
	return false
}

// restoreCanary routes percent of calls to the canary again, loading it unless it is loaded
// already (it may be the version to roll back to).
func (s *Slot[T]) restoreCanary(ctx context.Context, canary *stateRef, percent int) {
	s.mu.Lock()
	loaded := s.entries[canary.Digest] != nil
	s.mu.Unlock()
	if !loaded {
		if _, err := s.LoadSource(ctx, Source{Path: canary.Path, FileDigest: canary.FileDigest}, canary.Digest); err != nil {
			s.log.Error(err, "restoring the canary after re-exec failed; all calls go to the current version", "digest", canary.Digest)
			return
		}
	}
	if _, err := s.Route(ctx, canary.Digest, percent, SwapOptions{AllowMinor: true}); err != nil {
		s.log.Error(err, "restoring the canary route after re-exec failed", "digest", canary.Digest)
	}
}
