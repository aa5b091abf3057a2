package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/splice-dev/splice/examples/greeter/greeterbuild"
	"github.com/splice-dev/splice/host/control"
	"github.com/splice-dev/splice/sidecar"
)

// build is one plugin build of the pool and, once pushed, its artifact in the registry.
type build struct {
	*greeterbuild.Artifact
	// Ref is the artifact's reference pinned by digest in the loopback registry, and
	// Manifest its manifest digest (the digest the agent loads it under); "" before the push.
	Ref      string
	Manifest string
}

// bench is what a mode acts on: the host running now and its shared directory.
type bench struct {
	cfg    *config
	dir    string // this mode's work directory
	shared string
	host   *hostProc
	client *control.Client
	agent  *sidecar.Swapper // the agent's pipeline, for the agent hot-swap mode
}

// step is what one transition did.
type step struct {
	// digest names the new version in the host's answers (X-Plugin-Digest).
	digest string
	note   string
	// agent holds the agent's own timings, for a swap through the agent.
	agent *agentTimes
}

// mode moves the host to a new version. setup prepares the shared directory and returns the
// plugin file and digest the host starts on; transition returns once the move is requested
// (and, when the mechanism answers, answered); the caller measures when the new version
// serves.
type mode interface {
	name() string
	setup(ctx context.Context, b *bench, pool []*build) (path, digest string, err error)
	transition(ctx context.Context, b *bench, to *build) (step, error)
}

// Swapper performs a hot swap. controlSwapper talks to the host's control socket directly;
// agentSwapper runs the agent sidecar's pipeline (pull from a registry, preflight, load and
// swap). The hot-swap modes measure either the same way.
type Swapper interface {
	name() string
	// setup prepares the shared directory and returns the file and digest the host starts on.
	setup(ctx context.Context, b *bench, first *build) (path, digest string, err error)
	swap(ctx context.Context, b *bench, to *build) (swapStep, error)
}

type swapStep struct {
	digest   string
	hostSwap float64 // seconds, as the host measured it (the bare control path)
	agent    *agentTimes
}

// controlSwapper loads and swaps in one control request, the builds already in the shared
// directory.
type controlSwapper struct{}

func (controlSwapper) name() string { return "bare control socket" }

func (controlSwapper) setup(_ context.Context, b *bench, first *build) (string, string, error) {
	return sharedPath(b, first), first.Digest, nil
}

func (controlSwapper) swap(ctx context.Context, b *bench, to *build) (swapStep, error) {
	res, err := b.client.Load(ctx, control.LoadRequest{Path: sharedPath(b, to), Digest: to.Digest, Swap: true, AllowMinor: true})
	if err != nil {
		return swapStep{}, err
	}
	return swapStep{digest: to.Digest, hostSwap: res.Swap.Seconds}, nil
}

type hotSwap struct {
	label   string
	swapper Swapper
}

func (m hotSwap) name() string { return m.label }

func (m hotSwap) setup(ctx context.Context, b *bench, pool []*build) (string, string, error) {
	if _, ok := m.swapper.(controlSwapper); ok {
		if err := linkPool(b.shared, pool); err != nil {
			return "", "", err
		}
	}
	return m.swapper.setup(ctx, b, pool[0])
}

func (m hotSwap) transition(ctx context.Context, b *bench, to *build) (step, error) {
	s, err := m.swapper.swap(ctx, b, to)
	if err != nil {
		return step{}, err
	}
	if s.agent != nil {
		return step{digest: s.digest, agent: s.agent}, nil
	}
	return step{digest: s.digest, note: fmt.Sprintf("host load+swap %.1f ms", 1000*s.hostSwap)}, nil
}

type reexec struct{}

func (reexec) name() string { return "re-exec" }

func (reexec) setup(_ context.Context, b *bench, pool []*build) (string, string, error) {
	return linkedStart(b, pool)
}

func (reexec) transition(ctx context.Context, b *bench, to *build) (step, error) {
	resp, err := b.client.Reexec(ctx, control.ReexecRequest{Path: sharedPath(b, to), Digest: to.Digest})
	if err != nil {
		return step{}, err
	}
	return step{digest: to.Digest, note: fmt.Sprintf("generation %d", resp.Generation)}, nil
}

type cold struct{}

func (cold) name() string { return "cold" }

func (cold) setup(_ context.Context, b *bench, pool []*build) (string, string, error) {
	return linkedStart(b, pool)
}

func (cold) transition(ctx context.Context, b *bench, to *build) (step, error) {
	addr := b.host.Addr()
	b.host.stop()
	h, err := startHost(ctx, b.cfg.hostBin, b.shared, addr, sharedPath(b, to), to.Digest, filepath.Join(b.dir, "host.log"))
	if err != nil {
		return step{}, err
	}
	b.host = h
	return step{digest: to.Digest, note: fmt.Sprintf("pid %d", h.PID())}, nil
}

// linkedStart links every build into the shared directory and starts on the first.
func linkedStart(b *bench, pool []*build) (string, string, error) {
	if err := linkPool(b.shared, pool); err != nil {
		return "", "", err
	}
	return sharedPath(b, pool[0]), pool[0].Digest, nil
}

// sharedPath is where a build sits in the mode's shared directory (modes that link the pool).
func sharedPath(b *bench, art *build) string {
	return filepath.Join(b.shared, filepath.Base(art.Path))
}

// linkPool puts every build into the shared directory (hard links: one file per version,
// never overwritten).
func linkPool(shared string, pool []*build) error {
	if err := os.MkdirAll(shared, 0o755); err != nil {
		return err
	}
	for _, a := range pool {
		if err := os.Link(a.Path, filepath.Join(shared, filepath.Base(a.Path))); err != nil {
			return fmt.Errorf("link %s into %s: %w", a.Path, shared, err)
		}
	}
	return nil
}
