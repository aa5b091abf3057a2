package preflighttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
)

// Spec describes one artifact built from the matrix module.
type Spec struct {
	// Pkg is the package to build, relative to the matrix module
	// ("./plugins/a"), or a list of .go files for a file-list build.
	Pkg []string
	// Plugin builds with -buildmode=plugin.
	Plugin bool
	// Flags are extra go build flags (-trimpath, -tags x, -ldflags=...).
	Flags []string
	// Env are extra environment variables; they override the pinned ones.
	Env []string
	// Checkout selects the copy of the test modules to build from; copies
	// differ only in their directory. Empty means the first one.
	Checkout string
}

// Builder builds artifacts into Dir, each name once.
type Builder struct {
	// Dir holds the module copies and the artifacts.
	Dir string
	// Testdata is the preflight/testdata directory to copy from.
	Testdata string

	sem chan struct{} // bounds concurrent go builds: the machine is shared

	mu        sync.Mutex
	artifacts map[string]*result
	checkouts map[string]*result
}

type result struct {
	once sync.Once
	path string
	err  error
}

// New returns a Builder working in dir.
func New(dir, testdata string) *Builder {
	return &Builder{
		Dir:       dir,
		Testdata:  testdata,
		sem:       make(chan struct{}, 2),
		artifacts: map[string]*result{},
		checkouts: map[string]*result{},
	}
}

// buildTimeout bounds one go build; a fresh toolchain rebuilding the
// standard library with -race on a loaded 2-core machine takes minutes.
const buildTimeout = 15 * time.Minute

// Build builds the artifact called name (a file name) from spec, once; later
// calls with the same name return the first result. Different specs must
// use different names.
func (b *Builder) Build(name string, spec Spec) (string, error) {
	b.mu.Lock()
	r, ok := b.artifacts[name]
	if !ok {
		r = &result{}
		b.artifacts[name] = r
	}
	b.mu.Unlock()
	r.once.Do(func() {
		r.path, r.err = b.build(name, spec)
	})
	return r.path, r.err
}

func (b *Builder) build(name string, spec Spec) (string, error) {
	src, err := b.checkout(spec.Checkout)
	if err != nil {
		return "", err
	}
	out := filepath.Join(b.Dir, "out", name)
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", fmt.Errorf("build %s: %w", name, err)
	}
	args := []string{"build", "-o", out}
	if spec.Plugin {
		args = append(args, "-buildmode=plugin")
	}
	args = append(args, spec.Flags...)
	args = append(args, spec.Pkg...)

	b.sem <- struct{}{}
	defer func() { <-b.sem }()
	if err := Go(filepath.Join(src, "matrix"), spec.Env, args...); err != nil {
		return "", fmt.Errorf("build %s: %w", name, err)
	}
	return out, nil
}

// checkout copies the test modules into their own directory, once per name.
func (b *Builder) checkout(name string) (string, error) {
	if name == "" {
		name = "src"
	}
	b.mu.Lock()
	r, ok := b.checkouts[name]
	if !ok {
		r = &result{}
		b.checkouts[name] = r
	}
	b.mu.Unlock()
	r.once.Do(func() {
		r.path = filepath.Join(b.Dir, name)
		r.err = CopyTree(b.Testdata, r.path)
	})
	return r.path, r.err
}

// pinnedEnv are the variables set for every go command, so that builds
// differ only where a Spec says so.
var pinnedEnv = []string{
	"GOFLAGS=-buildvcs=false",
	"GOWORK=off",
	"GOTOOLCHAIN=local",
	"CGO_ENABLED=1",
	"GOAMD64=v1",
	"GOEXPERIMENT=",
	"GOOS=" + runtime.GOOS,
	"GOARCH=" + runtime.GOARCH,
}

// Go runs the go command in dir with the pinned environment plus env, and
// returns its combined output in the error when it fails.
func Go(dir string, env []string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...) // go test puts its own go first in PATH
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), pinnedEnv...), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s (in %s, env %s): %w\n%s", strings.Join(args, " "), dir, strings.Join(env, " "), err, out.Bytes())
	}
	return nil
}

// CopyTree copies the regular files and directories under src to dst.
func CopyTree(src, dst string) error {
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(target, data, 0o644)
		default:
			return errors.New("unexpected non-regular file " + p)
		}
	})
	if err != nil {
		return fmt.Errorf("copy test modules %s to %s: %w", src, dst, err)
	}
	return nil
}
