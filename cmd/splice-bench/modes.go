package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/splice-dev/splice/examples/greeter/greeterbuild"
	"github.com/splice-dev/splice/host/control"
)

// bench is what a mode acts on: the host running now and its shared directory.
type bench struct {
	cfg    *config
	dir    string // this mode's work directory
	shared string
	host   *hostProc
	client *control.Client
}

// mode moves the host to a new version. transition returns once the move is requested (and,
// when the mechanism answers, answered); the caller measures when the new version serves.
type mode interface {
	name() string
	transition(ctx context.Context, b *bench, art *greeterbuild.Artifact) (note string, err error)
}

// Swapper performs a hot swap. The benchmark uses the host's control socket; the agent
// sidecar will provide another implementation (annotate the pod, let the agent pull, check
// and swap), and the hot-swap mode measures either the same way.
type Swapper interface {
	Swap(ctx context.Context, b *bench, art *greeterbuild.Artifact) (hostSeconds float64, err error)
}

// controlSwapper loads and swaps in one control request.
type controlSwapper struct{}

func (controlSwapper) Swap(ctx context.Context, b *bench, art *greeterbuild.Artifact) (float64, error) {
	res, err := b.client.Load(ctx, control.LoadRequest{Path: sharedPath(b, art), Digest: art.Digest, Swap: true, AllowMinor: true})
	if err != nil {
		return 0, err
	}
	return res.Swap.Seconds, nil
}

type hotSwap struct{ swapper Swapper }

func (hotSwap) name() string { return "hot-swap" }

func (m hotSwap) transition(ctx context.Context, b *bench, art *greeterbuild.Artifact) (string, error) {
	s, err := m.swapper.Swap(ctx, b, art)
	return fmt.Sprintf("host load+swap %.1f ms", 1000*s), err
}

type reexec struct{}

func (reexec) name() string { return "re-exec" }

func (reexec) transition(ctx context.Context, b *bench, art *greeterbuild.Artifact) (string, error) {
	resp, err := b.client.Reexec(ctx, control.ReexecRequest{Path: sharedPath(b, art), Digest: art.Digest})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("generation %d", resp.Generation), nil
}

type cold struct{}

func (cold) name() string { return "cold" }

func (cold) transition(ctx context.Context, b *bench, art *greeterbuild.Artifact) (string, error) {
	addr := b.host.addr
	b.host.stop()
	h, err := startHost(ctx, b.cfg.hostBin, b.shared, addr, sharedPath(b, art), art.Digest, filepath.Join(b.dir, "host.log"))
	if err != nil {
		return "", err
	}
	b.host = h
	return fmt.Sprintf("pid %d", h.pid), nil
}

// sharedPath is where an artifact sits in the mode's shared directory.
func sharedPath(b *bench, art *greeterbuild.Artifact) string {
	return filepath.Join(b.shared, filepath.Base(art.Path))
}

// linkPool puts every build into the shared directory (hard links: one file per version,
// never overwritten).
func linkPool(shared string, pool []*greeterbuild.Artifact) error {
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
