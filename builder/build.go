package builder

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/splice-dev/splice/artifact"
	"github.com/splice-dev/splice/preflight"
)

// UniqueDirPrefix starts the name of the directory a plugin package is copied into; the rest
// is the first 16 hex digits of the build inputs' hash. The copy's import path, and so the
// plugin path, ends in that directory's name.
const UniqueDirPrefix = "splice-"

// Build builds the plugin o describes, pushes it when o.Repository is set, and returns what
// it produced. Progress goes to w. A failure is an *Error whose Reason says what to fix.
func Build(ctx context.Context, o Options, w io.Writer) (*Result, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	steps := 7
	if o.Repository != "" {
		steps++
	}
	p := newProgress(w, steps)

	work := o.WorkDir
	if work == "" {
		dir, err := os.MkdirTemp("", "splice-build-")
		if err != nil {
			return nil, failf(ReasonInternal, "create a working directory: %v", err)
		}
		defer os.RemoveAll(dir)
		work = dir
	}
	work, err := filepath.Abs(work)
	if err != nil {
		return nil, failf(ReasonInternal, "working directory: %v", err)
	}
	tmp := filepath.Join(work, "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, failf(ReasonInternal, "create %s: %v", tmp, err)
	}
	r := &runner{env: goEnv, progress: w}

	p.begin("toolchain", "checking the Go toolchain: want go%s", o.GoVersion)
	goVersion, err := checkToolchain(ctx, r, tmp, o.GoVersion)
	if err != nil {
		return nil, err
	}
	p.note("%s, cgo enabled", goVersion)

	var co *checkout
	if o.GitURL != "" {
		p.begin("source", "cloning %s at %s", redactURL(o.GitURL), o.Revision)
		co, err = clone(ctx, &o, filepath.Join(work, "src"), tmp, p)
		if err != nil {
			return nil, err
		}
		p.note("commit %s (%s)", co.commit, co.commitTime.Format(time.RFC3339))
	} else {
		p.begin("source", "using the checkout in %s", o.Source)
		if co, err = localCheckout(o.Source); err != nil {
			return nil, err
		}
	}

	p.begin("inputs", "resolving package %s and its dependencies", o.Package)
	pkgDir, err := packageDir(co.root, o.Package)
	if err != nil {
		return nil, err
	}
	in, err := resolveInputs(ctx, r, pkgDir, o.Tags)
	if err != nil {
		return nil, err
	}
	if in.goVersion != goVersion {
		return nil, failf(ReasonToolchainMismatch, "go env GOVERSION in %s is %s, but the toolchain checked is %s; remove any toolchain switch (GOTOOLCHAIN) from the build environment", pkgDir, in.goVersion, goVersion)
	}
	short := in.hash[:16]
	p.note("%s: inputs hash %s", in.pkg.ImportPath, in.hash)

	// The copy is named after the inputs' hash: its import path, and so the plugin path, is
	// the same for the same inputs and different for any other. It lives inside the package
	// directory so that every internal package the original may import stays importable.
	unique := filepath.Join(pkgDir, UniqueDirPrefix+short)
	pluginPath := in.pkg.ImportPath + "/" + UniqueDirPrefix + short
	p.begin("copy", "copying the package to %s", pluginPath)
	if err := copyPackage(in.pkg, unique); err != nil {
		return nil, err
	}
	// Always removed: with --source the copy sits in the user's checkout.
	defer os.RemoveAll(unique)

	apiVersion, err := resolveAPIVersion(o.APIVersion, unique, append(append([]string{}, in.pkg.GoFiles...), in.pkg.CgoFiles...))
	if err != nil {
		return nil, err
	}
	p.note("plugin API version %s", apiVersion)

	p.begin("compile", "go build %s", strings.Join(buildFlags, " "))
	outDir := filepath.Join(work, "out")
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, failf(ReasonInternal, "create %s: %v", outDir, err)
	}
	soPath := filepath.Join(outDir, path.Base(in.pkg.ImportPath)+"-"+short+".so")
	args := append([]string{"build", "-v"}, buildFlags...)
	if len(o.Tags) > 0 {
		args = append(args, "-tags", strings.Join(o.Tags, ","))
	}
	args = append(args, "-o", soPath, ".")
	if err := r.stream(ctx, unique, "      go: ", "go", args...); err != nil {
		return nil, failf(ReasonCompileFailed, "build plugin %s: %v", o.Package, err)
	}

	p.begin("facts", "recording the build facts")
	facts, err := pluginFacts(soPath, pluginPath, goVersion, o.Symbol)
	if err != nil {
		return nil, err
	}
	p.note("plugin path %s, %d packages, %s/%s %s", facts.PluginPath, len(facts.Packages), facts.GOOS, facts.GOARCH, facts.GOAMD64)

	res := &Result{
		GoVersion:  goVersion,
		APIVersion: apiVersion,
		PluginPath: facts.PluginPath,
		SourceHash: in.hash,
		Revision:   co.commit,
		BuiltAt:    o.sourceDate(co.commitTime, time.Now()).Truncate(time.Second),
		BuildKey:   o.BuildKey,
	}
	if o.Repository != "" {
		p.begin("push", "pushing to %s", o.Repository)
		opts := []artifact.Option{artifact.WithInsecure(o.Insecure), artifact.WithTag(UniqueDirPrefix + short)}
		if o.GitURL != "" {
			opts = append(opts, artifact.WithSource(redactURL(o.GitURL)), artifact.WithRevision(co.commit))
			if o.Revision != co.commit {
				opts = append(opts, artifact.WithVersion(o.Revision))
			}
		}
		cfg := artifact.Config{Facts: *facts, APIVersion: apiVersion, BuiltAt: res.BuiltAt}
		res.Ref, res.Digest, err = artifact.Push(ctx, o.Repository, soPath, cfg, opts...)
		if err != nil {
			return nil, failf(ReasonPushFailed, "%v; check the repository name, the push credentials (spec.plugin.pushSecretRef) and that the registry is reachable", err)
		}
		p.note("%s", res.Ref)
	}

	p.begin("output", "writing the result")
	if o.Output != "" {
		if res.Path, err = keep(soPath, facts, o.Output); err != nil {
			return nil, err
		}
		p.note("plugin %s", res.Path)
	}
	p.end()
	res.Seconds = p.seconds
	fmt.Fprintf(p.w, "built %s in %.1fs\n", res.PluginPath, p.total().Seconds())
	return res, nil
}

// checkToolchain refuses any go command but the exact release asked for. Go loads a plugin
// only into a host built by the identical toolchain; a different patch release may even load
// and then misbehave, so "close" is not good enough.
func checkToolchain(ctx context.Context, r *runner, dir, want string) (string, error) {
	out, err := r.output(ctx, dir, "go", "env", "GOVERSION", "CGO_ENABLED", "CC")
	if err != nil {
		return "", failf(ReasonToolchainMismatch, "run the go command: %v; build in the golang:%s image", err, want)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 3 {
		return "", failf(ReasonInternal, "go env printed %q, want three lines", out)
	}
	got, cgo, cc := strings.TrimSpace(lines[0]), strings.TrimSpace(lines[1]), strings.TrimSpace(lines[2])
	if got != "go"+want {
		return "", failf(ReasonToolchainMismatch, "the go command is %s, but go%s was asked for: run the builder in the golang:%s image (or put that exact release first on PATH); Go loads plugins only into hosts built by the identical release",
			got, want, want)
	}
	if cgo != "1" {
		return "", failf(ReasonToolchainMismatch, "cgo is disabled (CGO_ENABLED=%s) although the builder asked for it; Go plugins need cgo", cgo)
	}
	if ccPath := strings.Fields(cc); len(ccPath) > 0 {
		if _, err := exec.LookPath(ccPath[0]); err != nil {
			return "", failf(ReasonToolchainMismatch, "cgo needs the C compiler %q, which is not installed: use the golang:%s image (Debian based, with gcc) or install it", ccPath[0], want)
		}
	}
	return got, nil
}

// packageDir resolves the package directory and requires it to stay inside the checkout,
// symbolic links included.
func packageDir(root, pkg string) (string, error) {
	dir := filepath.Join(root, filepath.FromSlash(pkg))
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", failf(ReasonSourceUnavailable, "resolve %s: %v", root, err)
	}
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", failf(ReasonPackageInvalid, "package directory %s does not exist in the source (check spec.plugin.package against the repository at this revision): %v", pkg, err)
	}
	rel, err := filepath.Rel(realRoot, realDir)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", failf(ReasonPackageInvalid, "package directory %s leads outside the repository (to %s)", pkg, realDir)
	}
	if fi, err := os.Stat(realDir); err != nil || !fi.IsDir() {
		return "", failf(ReasonPackageInvalid, "package path %s is not a directory", pkg)
	}
	return realDir, nil
}

// copyPackage copies every file the go command reads for pkg into dir, keeping embedded
// files' relative paths. A directory left over from an interrupted build is replaced: its
// name is a hash of its content, so it can only hold the same files.
func copyPackage(pkg *listPackage, dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return failf(ReasonInternal, "remove %s: %v", dir, err)
	}
	for _, f := range pkg.files() {
		src := filepath.Join(pkg.Dir, f)
		dst := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return failf(ReasonInternal, "copy package: %v", err)
		}
		if err := copyFile(src, dst, 0o644); err != nil {
			return failf(ReasonInternal, "copy package: %v", err)
		}
	}
	return nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// resolveAPIVersion reconciles the API version asked for with the one the plugin declares:
// hosts read the declared one, so the artifact must carry that value.
func resolveAPIVersion(want, dir string, goFiles []string) (string, error) {
	declared, err := declaredAPIVersion(dir, goFiles)
	if err != nil {
		return "", failf(ReasonAPIVersionMismatch, "read the plugin's APIVersion: %v", err)
	}
	switch {
	case declared == "" && want == "":
		return "", failf(ReasonAPIVersionMismatch, "the plugin declares no API version: add `var APIVersion = \"1.0.0\"` to its main package (hosts compare it before a swap), or set spec.plugin.apiVersion")
	case declared == "":
		return want, nil
	case !ValidAPIVersion(declared):
		return "", failf(ReasonAPIVersionMismatch, "the plugin declares APIVersion %q, which is not a semantic version such as 1.0.0", declared)
	case want != "" && !SameAPIVersion(want, declared):
		return "", failf(ReasonAPIVersionMismatch, "spec.plugin.apiVersion is %s but the plugin declares APIVersion %q at this revision: make them agree (hosts trust the plugin's own)", want, declared)
	}
	return declared, nil
}

// pluginFacts reads the built plugin's facts and checks what the build promised: a plugin,
// by the toolchain checked, with the plugin path of the unique copy, exporting symbol.
func pluginFacts(soPath, pluginPath, goVersion, symbol string) (*preflight.Facts, error) {
	facts, err := preflight.ReadFacts(soPath)
	if err != nil {
		return nil, failf(ReasonInternal, "record build facts: %v", err)
	}
	switch {
	case facts.Kind != preflight.KindPlugin:
		return nil, failf(ReasonInternal, "%s is a %s, not a plugin", soPath, facts.Kind)
	case facts.PluginPath != pluginPath:
		return nil, failf(ReasonInternal, "the plugin path is %q, not the unique %q the build asked for", facts.PluginPath, pluginPath)
	case facts.GoVersion != goVersion:
		return nil, failf(ReasonToolchainMismatch, "the plugin was built by %s, not %s", facts.GoVersion, goVersion)
	case !facts.CGO:
		return nil, failf(ReasonInternal, "the plugin was built without cgo")
	}
	if err := exportsSymbol(soPath, pluginPath, symbol); err != nil {
		return nil, err
	}
	return facts, nil
}

// exportsSymbol checks the plugin's dynamic symbol table for pluginPath.symbol, the name
// plugin.Lookup resolves (through dlsym) in the host.
func exportsSymbol(soPath, pluginPath, symbol string) error {
	f, err := elf.Open(soPath)
	if err != nil {
		return failf(ReasonInternal, "open %s: %v", soPath, err)
	}
	defer f.Close()
	syms, err := f.DynamicSymbols()
	if err != nil {
		return failf(ReasonInternal, "read the dynamic symbols of %s: %v", soPath, err)
	}
	want := pathToPrefix(pluginPath) + "." + symbol
	for _, s := range syms {
		if s.Name == want {
			return nil
		}
	}
	return failf(ReasonSymbolNotFound, "the plugin does not export %s: declare `func %s() ...` (or `var %s = ...`) in its main package, or set spec.plugin.symbol to the name it exports", symbol, symbol, symbol)
}

// pathToPrefix escapes an import path the way the Go linker names its symbols
// (cmd/internal/objabi.PathToPrefix): control characters, space, '%', '"', non-ASCII bytes
// and dots in the last path element become %xx.
func pathToPrefix(s string) string {
	slash := strings.LastIndex(s, "/")
	esc := func(i int) bool {
		c := s[i]
		return c <= ' ' || (c == '.' && i > slash) || c == '%' || c == '"' || c >= 0x7f
	}
	const hex = "0123456789abcdef"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if esc(i) {
			b.WriteByte('%')
			b.WriteByte(hex[s[i]>>4])
			b.WriteByte(hex[s[i]&0xf])
		} else {
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// keep copies the plugin and its facts into dir and returns the plugin's path there.
func keep(soPath string, facts *preflight.Facts, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", failf(ReasonInternal, "create %s: %v", dir, err)
	}
	dst := filepath.Join(dir, filepath.Base(soPath))
	if err := copyFile(soPath, dst, 0o644); err != nil {
		return "", failf(ReasonInternal, "keep the plugin: %v", err)
	}
	f := *facts
	f.Path = ""
	if err := f.WriteFile(strings.TrimSuffix(dst, ".so") + ".facts.json"); err != nil {
		return "", failf(ReasonInternal, "keep the facts: %v", err)
	}
	return dst, nil
}

// WriteTermination writes v as compact JSON to path. With onlyIfExists (the default path
// outside a container) a missing file is not created: running by hand writes nothing into /dev.
func WriteTermination(path string, v any, onlyIfExists bool) error {
	if path == "" {
		return nil
	}
	data, err := encodeCompact(v)
	if err != nil {
		return fmt.Errorf("encode termination message: %w", err)
	}
	if len(data) > MaxTerminationMessageBytes {
		return fmt.Errorf("termination message is %d bytes, over the kubelet's %d", len(data), MaxTerminationMessageBytes)
	}
	flags := os.O_WRONLY | os.O_TRUNC
	if !onlyIfExists {
		flags |= os.O_CREATE
	}
	f, err := os.OpenFile(path, flags, 0o644)
	if onlyIfExists && errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("write termination message: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write termination message %s: %w", path, err)
	}
	return f.Close()
}
