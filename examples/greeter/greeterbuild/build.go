package greeterbuild

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/splice-dev/splice/host/control"
)

// ModulePath is the module the greeter example belongs to.
const ModulePath = "github.com/splice-dev/splice"

// Good and Drills name the plugin sources under examples/greeter/plugins.
var (
	Good   = []string{"v1", "v2", "v3"}
	Drills = []string{"initpanic", "callpanic", "gopanic", "major", "badsymbol", "flaky"}
)

// Builder builds into Out from the module checked out at Root.
type Builder struct {
	// Root is the module root (FindModuleRoot finds it).
	Root string
	// Out receives binaries, plugins and the copied plugin sources.
	Out string
	// Flags are passed to every build, host and plugins alike; nil means -trimpath, which
	// keeps package hashes independent of where the module is checked out.
	Flags []string
}

// Artifact is one plugin build.
type Artifact struct {
	// Name is the plugin source ("v1", "callpanic", ...).
	Name string
	// Path is the .so file.
	Path string
	// Digest is the file's sha256, used as the version's digest.
	Digest string
}

// NewTemp is a Builder for the module this process runs in (FindModuleRoot) that builds into a
// fresh temporary directory named after prefix; remove deletes the directory. Test mains use it.
func NewTemp(prefix string) (b *Builder, remove func(), err error) {
	root, err := FindModuleRoot()
	if err != nil {
		return nil, nil, err
	}
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return nil, nil, err
	}
	return &Builder{Root: root, Out: dir}, func() { os.RemoveAll(dir) }, nil
}

// FindModuleRoot walks up from the working directory to the splice module's go.mod.
func FindModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil {
			if modulePath(b) == ModulePath {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of module %s above the working directory; run from inside the splice checkout", ModulePath)
		}
		dir = parent
	}
}

func modulePath(gomod []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == "module" {
			return f[1]
		}
	}
	return ""
}

func (b *Builder) flags() []string {
	if b.Flags == nil {
		return []string{"-trimpath"}
	}
	return b.Flags
}

// Host builds examples/greeter/cmd/greeter and returns the binary's path.
func (b *Builder) Host(ctx context.Context) (string, error) {
	out := filepath.Join(b.Out, "greeter")
	args := append([]string{"build", "-buildvcs=false"}, b.flags()...)
	args = append(args, "-o", out, "./examples/greeter/cmd/greeter")
	if err := b.goCmd(ctx, args...); err != nil {
		return "", fmt.Errorf("build greeter host: %w", err)
	}
	return out, nil
}

// Plugin builds plugins/<name> with the given nonce into Out/<name>-<nonce>.so. Distinct
// nonces give distinct plugin paths; the same nonce twice gives the same plugin path.
func (b *Builder) Plugin(ctx context.Context, name, nonce string) (*Artifact, error) {
	srcDir := filepath.Join(b.Root, "examples", "greeter", "plugins", name)
	entries, err := os.ReadDir(srcDir)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: %w", name, err)
	}
	work := filepath.Join(b.Out, "src", name+"-"+nonce)
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, err
	}
	var files []string
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(srcDir, n))
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(work, n), data, 0o644); err != nil {
			return nil, err
		}
		files = append(files, filepath.Join(work, n))
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("plugin %s: no Go files in %s", name, srcDir)
	}
	nonceFile := filepath.Join(work, "zz_splice_nonce.go")
	nonceSrc := fmt.Sprintf("package main\n\n// spliceBuildNonce makes this build's plugin path unique.\nconst spliceBuildNonce = %q\n", nonce)
	if err := os.WriteFile(nonceFile, []byte(nonceSrc), 0o644); err != nil {
		return nil, err
	}
	files = append(files, nonceFile)

	out := filepath.Join(b.Out, name+"-"+nonce+".so")
	args := append([]string{"build", "-buildvcs=false", "-buildmode=plugin"}, b.flags()...)
	args = append(append(args, "-o", out), files...)
	if err := b.goCmd(ctx, args...); err != nil {
		return nil, fmt.Errorf("build plugin %s: %w", name, err)
	}
	d, err := control.FileDigest(out)
	if err != nil {
		return nil, err
	}
	return &Artifact{Name: name, Path: out, Digest: d}, nil
}

// Plugins builds several plugins with one nonce, two at a time (the go command parallelizes
// inside each build too).
func (b *Builder) Plugins(ctx context.Context, names []string, nonce string) (map[string]*Artifact, error) {
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs []error
		out  = map[string]*Artifact{}
		sem  = make(chan struct{}, 2)
	)
	for _, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			a, err := b.Plugin(ctx, n, nonce)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			out[n] = a
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

func (b *Builder) goCmd(ctx context.Context, args ...string) error {
	if err := os.MkdirAll(b.Out, 0o755); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = b.Root
	// Plugins need cgo on both sides; a CGO_ENABLED=0 environment would build a host that
	// answers every plugin.Open with "plugin: not implemented".
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return nil
}
