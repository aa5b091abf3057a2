package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/artifact"
	"github.com/splice-dev/splice/internal/loopreg"
	"github.com/splice-dev/splice/sidecar"
)

// benchRepo is the repository the builds are pushed to in the benchmark's registry.
const benchRepo = "splice-bench/greeter"

// pushPool pushes every build to the registry, filling in Ref and Manifest.
func pushPool(ctx context.Context, root string, reg *loopreg.Registry, pool []*build) error {
	apiVersions := map[string]string{}
	for _, b := range pool {
		v, ok := apiVersions[b.Name]
		if !ok {
			var err error
			if v, err = declaredAPIVersion(root, b.Name); err != nil {
				return err
			}
			apiVersions[b.Name] = v
		}
		ref, digest, err := artifact.Push(ctx, reg.Host+"/"+benchRepo, b.Path, artifact.Config{APIVersion: v}, loopreg.Options()...)
		if err != nil {
			return err
		}
		b.Ref, b.Manifest = ref, digest
	}
	return nil
}

var apiVersionRE = regexp.MustCompile(`(?m)^\s*var\s+APIVersion\s*=\s*"([^"]+)"`)

// declaredAPIVersion reads the plugin API version a greeter plugin source declares (its
// `var APIVersion = "..."`), which the artifact's config must state.
func declaredAPIVersion(root, name string) (string, error) {
	dir := filepath.Join(root, "examples", "greeter", "plugins", name)
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return "", err
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		if m := apiVersionRE.FindSubmatch(src); m != nil {
			return string(m[1]), nil
		}
	}
	return "", fmt.Errorf("plugin %s: no `var APIVersion = \"...\"` in %s", name, dir)
}

// agentTimes are what the agent's pipeline measured for one transition.
type agentTimes struct {
	to        string        // the build swapped to
	pull      time.Duration // registry → shared directory, digest verified
	preflight time.Duration // host facts + facts of every plugin tried + the check
	loadSwap  time.Duration // the agent's load-and-swap control request, round trip
	hostSwap  time.Duration // the host's own record of the swap
}

// agentSwapper hot-swaps through the agent sidecar's pipeline (sidecar.Swapper): pull by
// digest-pinned reference from the loopback registry into the shared directory, preflight
// against the host and every plugin it tried, then load and swap through the control socket.
type agentSwapper struct{}

func (agentSwapper) name() string { return "through the agent" }

// setup pulls the first build into the shared directory, as the agent would have: the host
// starts on it under its manifest digest, and every later version arrives by a pull.
func (agentSwapper) setup(ctx context.Context, b *bench, first *build) (string, string, error) {
	if first.Ref == "" {
		return "", "", errors.New("the builds were not pushed to the registry")
	}
	if err := os.MkdirAll(b.shared, 0o755); err != nil {
		return "", "", err
	}
	p, err := artifact.Pull(ctx, first.Ref, b.shared, loopreg.Options()...)
	if err != nil {
		return "", "", fmt.Errorf("pull the first version: %w", err)
	}
	sw, err := sidecar.NewSwapper(sidecar.SwapperOptions{
		SharedDir:  b.shared,
		Host:       b.client,
		Pull:       loopreg.Options(),
		AllowMinor: true,
	})
	if err != nil {
		return "", "", err
	}
	b.agent = sw
	return p.Path, p.Digest, nil
}

func (agentSwapper) swap(ctx context.Context, b *bench, to *build) (swapStep, error) {
	out := b.agent.Swap(ctx, to.Ref)
	if out.State != splicev1.SwapReady || !out.Changed {
		err := out.Err
		if err == nil {
			err = fmt.Errorf("the host did not change version (state %s)", out.State)
		}
		return swapStep{}, fmt.Errorf("agent: %s (%s): %w", out.State, out.Reason, err)
	}
	t := &agentTimes{to: filepath.Base(to.Path), pull: out.PullDuration, preflight: out.PreflightDuration, loadSwap: out.SwapLatency}
	if out.HostSwap != nil {
		t.hostSwap = time.Duration(out.HostSwap.Seconds * float64(time.Second))
	}
	return swapStep{digest: to.Manifest, agent: t}, nil
}
