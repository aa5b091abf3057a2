package host

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/splice-dev/splice/host/control"
	"github.com/splice-dev/splice/preflight"
)

// slotState is what a slot hands to its next image: only the versions that serve. The
// versions merely loaded, retired or failed are left behind — that is the point of
// re-executing.
type slotState struct {
	Current  *stateRef `json:"current,omitempty"`
	Fallback *stateRef `json:"fallback,omitempty"` // loaded when Current fails in the new image
	Canary   *stateRef `json:"canary,omitempty"`
	Percent  int       `json:"percent,omitempty"`
	// Limits are the bounds SetLimits set, so that the agent's bound outlives the image.
	Limits *control.Limits `json:"limits,omitempty"`
}

type stateRef struct {
	Path       string `json:"path"`
	Digest     string `json:"digest"`
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
// drained and handed over, and the new image loads only the current version (and canary), or
// only target when it names one (the current version is the fallback if target fails to load
// there). It returns only when the hand-off did not happen; the host then keeps serving.
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
	t := s.tbl.Load()
	var st slotState
	if lim := s.limits; lim != (control.Limits{MaxVersions: s.opts.MaxVersions, MaxExtraRSSBytes: s.opts.MaxExtraRSSBytes}) {
		st.Limits = &lim
	}
	ref := func(e *entry[T], allowMinor bool) *stateRef {
		if e == nil {
			return nil
		}
		return &stateRef{Path: e.v.path, Digest: e.v.digest, AllowMinor: allowMinor}
	}
	if target != nil && target.Path != "" {
		st.Current = &stateRef{Path: target.Path, Digest: target.Digest, AllowMinor: target.AllowMinor}
		// The version that served before consented its way in; it may come back.
		st.Fallback = ref(t.current, true)
	} else {
		st.Current = ref(t.current, true)
		st.Canary = ref(t.canary, true)
		st.Percent = t.percent
	}
	b, err := json.Marshal(st)
	if err != nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("encode slot %s state: %w", s.opts.Name, err)
	}
	return b, nil
}

// thaw undoes freeze when the exec did not happen.
func (s *Slot[T]) thaw() { s.mu.Unlock() }

// restore loads, in a freshly re-executed image, what the previous image was serving.
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
	if st.Current != nil {
		_, _, err := s.loadAndSwap(ctx, control.OpRestore, st.Current.Path, st.Current.Digest, SwapOptions{AllowMinor: st.Current.AllowMinor})
		if err != nil && st.Fallback != nil {
			s.log.Error(err, "re-exec target failed to load; restoring the version that served before", "digest", st.Fallback.Digest)
			_, _, err = s.loadAndSwap(ctx, control.OpRestore, st.Fallback.Path, st.Fallback.Digest, SwapOptions{AllowMinor: true})
		}
		if err != nil {
			s.log.Error(err, "restoring the serving version after re-exec failed; calls fail with ErrNoVersion until a version is loaded")
			return
		}
	}
	if st.Canary != nil && st.Percent > 0 {
		if _, err := s.Load(ctx, st.Canary.Path, st.Canary.Digest); err != nil {
			s.log.Error(err, "restoring the canary after re-exec failed; all calls go to the current version")
			return
		}
		if _, err := s.Route(ctx, st.Canary.Digest, st.Percent, SwapOptions{AllowMinor: true}); err != nil {
			s.log.Error(err, "restoring the canary route after re-exec failed")
		}
	}
}
