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
	"github.com/splice-dev/splice/host/preflight"
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
	if o.VulnDB != "" {
		steps++
	}
	b := &pluginBuild{o: &o, p: newProgress(w, steps)}
	work, removeWork, err := workDir(o.WorkDir)
	if err != nil {
		return nil, err
	}
	defer removeWork()
	b.work, b.tmp = work, filepath.Join(work, "tmp")
	b.r = &runner{env: goEnv, progress: w}

	if err := b.toolchain(ctx); err != nil {
		return nil, err
	}
	if err := b.source(ctx); err != nil {
		return nil, err
	}
	if err := b.resolve(ctx); err != nil {
		return nil, err
	}
	if err := b.copy(); err != nil {
		return nil, err
	}
	// Always removed: with --source the copy sits in the user's checkout.
	defer os.RemoveAll(b.unique)
	if err := b.checkAPIVersion(); err != nil {
		return nil, err
	}
	soPath, err := b.compile(ctx)
	if err != nil {
		return nil, err
	}
	res, facts, err := b.record(ctx, soPath)
	if err != nil {
		return nil, err
	}
	if err := b.vulnGate(ctx, soPath); err != nil {
		return nil, err
	}
	res.Vulnerabilities = b.vulns
	if err := b.push(ctx, res, soPath, facts); err != nil {
		return nil, err
	}
	if err := b.output(res, soPath, facts); err != nil {
		return nil, err
	}
	b.p.end()
	res.Seconds = b.p.seconds
	fmt.Fprintf(b.p.w, "built %s in %.1fs\n", res.PluginPath, b.p.total().Seconds())
	return res, nil
}

// A pluginBuild carries one run of Build from step to step: each step fills in what the next ones
// read.
type pluginBuild struct {
	o *Options
	p *progress
	r *runner
	// work is the working directory, tmp the go command's and git's temporary directory in it.
	work, tmp string
	// goVersion is the checked toolchain's, "go1.26.8".
	goVersion string
	co        *checkout
	pkgDir    string
	in        *inputs
	// short is the start of the inputs' hash that names the unique copy, unique that copy's
	// directory and pluginPath its import path.
	short, unique, pluginPath string
	apiVersion                string
	// vulns are what the vulnerability scan found; nil when none ran.
	vulns *artifact.Vulnerabilities
}

// workDir makes the working directory absolute, creates its tmp directory, and returns how to
// remove it: a directory of its own is made (and removed) when dir is empty, and one given is
// kept.
func workDir(dir string) (work string, remove func(), err error) {
	remove = func() {}
	if dir == "" {
		if dir, err = os.MkdirTemp("", "splice-build-"); err != nil {
			return "", nil, failf(ReasonInternal, "create a working directory: %v", err)
		}
		tmpDir := dir
		remove = func() { os.RemoveAll(tmpDir) }
	}
	if work, err = filepath.Abs(dir); err != nil {
		remove()
		return "", nil, failf(ReasonInternal, "working directory: %v", err)
	}
	tmp := filepath.Join(work, "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		remove()
		return "", nil, failf(ReasonInternal, "create %s: %v", tmp, err)
	}
	return work, remove, nil
}

func (b *pluginBuild) toolchain(ctx context.Context) error {
	if b.o.GoVersion == "" {
		b.p.begin("toolchain", "checking the Go toolchain: the go on PATH (no --%s given)", FlagGoVersion)
	} else {
		b.p.begin("toolchain", "checking the Go toolchain: want go%s", b.o.GoVersion)
	}
	v, err := checkToolchain(ctx, b.r, b.tmp, b.o.GoVersion)
	if err != nil {
		return err
	}
	b.goVersion = v
	if b.o.GoVersion == "" {
		b.o.GoVersion = strings.TrimPrefix(v, "go")
		b.p.note("%s (the go on PATH; hosts must be built with it too), cgo enabled", v)
		return nil
	}
	b.p.note("%s, cgo enabled", v)
	return nil
}

// source clones the repository at the revision, or takes the checkout given.
func (b *pluginBuild) source(ctx context.Context) error {
	var err error
	if b.o.GitURL == "" {
		b.p.begin("source", "using the checkout in %s", b.o.Source)
		b.co, err = localCheckout(b.o.Source)
		return err
	}
	b.p.begin("source", "cloning %s at %s", redactURL(b.o.GitURL), b.o.Revision)
	if b.co, err = clone(ctx, b.o, filepath.Join(b.work, "src"), b.tmp, b.p); err != nil {
		return err
	}
	b.p.note("commit %s (%s)", b.co.commit, b.co.commitTime.Format(time.RFC3339))
	return nil
}

// resolve finds the package and hashes everything it is built from.
func (b *pluginBuild) resolve(ctx context.Context) error {
	b.p.begin("inputs", "resolving package %s and its dependencies", b.o.Package)
	var err error
	if b.pkgDir, err = packageDir(b.o.names(), b.co.root, b.o.Package); err != nil {
		return err
	}
	if b.in, err = resolveInputs(ctx, b.r, b.pkgDir, b.o.Tags); err != nil {
		return err
	}
	if b.in.goVersion != b.goVersion {
		return failf(ReasonToolchainMismatch, "go env GOVERSION in %s is %s, but the toolchain checked is %s; remove any toolchain switch (GOTOOLCHAIN) from the build environment", b.pkgDir, b.in.goVersion, b.goVersion)
	}
	b.short = b.in.hash[:16]
	b.p.note("%s: inputs hash %s", b.in.pkg.ImportPath, b.in.hash)
	return nil
}

// copy makes the unique copy of the package that is built. The copy is named after the
// inputs' hash: its import path, and so the plugin path, is the same for the same inputs and
// different for any other. It lives inside the package directory so that every internal
// package the original may import stays importable.
func (b *pluginBuild) copy() error {
	b.unique = filepath.Join(b.pkgDir, UniqueDirPrefix+b.short)
	b.pluginPath = b.in.pkg.ImportPath + "/" + UniqueDirPrefix + b.short
	b.p.begin("copy", "copying the package to %s", b.pluginPath)
	return copyPackage(b.in.pkg, b.unique)
}

func (b *pluginBuild) checkAPIVersion() error {
	v, err := resolveAPIVersion(b.o.names(), b.o.APIVersion, b.unique, append(append([]string{}, b.in.pkg.GoFiles...), b.in.pkg.CgoFiles...))
	if err != nil {
		return err
	}
	b.apiVersion = v
	b.p.note("plugin API version %s", v)
	return nil
}

// compile builds the unique copy as a plugin and returns the plugin's path.
func (b *pluginBuild) compile(ctx context.Context) (string, error) {
	b.p.begin("compile", "go build %s", strings.Join(buildFlags, " "))
	outDir := filepath.Join(b.work, "out")
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", failf(ReasonInternal, "create %s: %v", outDir, err)
	}
	soPath := filepath.Join(outDir, path.Base(b.in.pkg.ImportPath)+"-"+b.short+".so")
	args := append([]string{"build", "-v"}, buildFlags...)
	if len(b.o.Tags) > 0 {
		args = append(args, "-tags", strings.Join(b.o.Tags, ","))
	}
	args = append(args, "-o", soPath, ".")
	if err := b.r.stream(ctx, b.unique, "      go: ", "go", args...); err != nil {
		return "", failf(ReasonCompileFailed, "build plugin %s: %v", b.o.Package, err)
	}
	return soPath, nil
}

// record reads and checks the built plugin's facts, and starts the result from them.
func (b *pluginBuild) record(ctx context.Context, soPath string) (*Result, *preflight.Facts, error) {
	b.p.begin("facts", "recording the build facts")
	facts, err := pluginFacts(b.o.names(), soPath, b.pluginPath, b.goVersion, b.o.Symbol)
	if err != nil {
		return nil, nil, err
	}
	if err := b.checkConstructor(ctx); err != nil {
		return nil, nil, err
	}
	b.p.note("plugin path %s, %d packages, %s/%s %s", facts.PluginPath, len(facts.Packages), facts.GOOS, facts.GOARCH, facts.GOAMD64)
	return &Result{
		GoVersion:  b.goVersion,
		APIVersion: b.apiVersion,
		PluginPath: facts.PluginPath,
		SourceHash: b.in.hash,
		Revision:   b.co.commit,
		BuiltAt:    b.o.sourceDate(b.co.commitTime, time.Now()).Truncate(time.Second),
		BuildKey:   b.o.BuildKey,
	}, facts, nil
}

// push pushes the plugin when a repository is given, and records its reference and digest.
func (b *pluginBuild) push(ctx context.Context, res *Result, soPath string, facts *preflight.Facts) error {
	if b.o.Repository == "" {
		return nil
	}
	b.p.begin("push", "pushing to %s", b.o.Repository)
	opts := []artifact.Option{artifact.WithInsecure(b.o.Insecure), artifact.WithTag(UniqueDirPrefix + b.short)}
	if b.o.GitURL != "" {
		opts = append(opts, artifact.WithSource(redactURL(b.o.GitURL)), artifact.WithRevision(b.co.commit))
		if b.o.Revision != b.co.commit {
			opts = append(opts, artifact.WithVersion(b.o.Revision))
		}
	}
	cfg := artifact.Config{Facts: *facts, APIVersion: b.apiVersion, BuiltAt: res.BuiltAt, Vulnerabilities: b.vulns}
	var err error
	res.Ref, res.Digest, err = artifact.Push(ctx, b.o.Repository, soPath, cfg, opts...)
	if err != nil {
		return failf(ReasonPushFailed, "%v; check the repository name, the push credentials (%s) and that the registry is reachable", err, b.o.names().name(fieldPushSecret))
	}
	b.p.note("%s", res.Ref)
	return nil
}

// output keeps the plugin and its facts in o.Output when it is set.
func (b *pluginBuild) output(res *Result, soPath string, facts *preflight.Facts) error {
	b.p.begin("output", "writing the result")
	if b.o.Output == "" {
		return nil
	}
	var err error
	if res.Path, err = keep(soPath, facts, b.o.Output); err != nil {
		return err
	}
	b.p.note("plugin %s", res.Path)
	return nil
}

// checkToolchain refuses any go command but the exact release asked for. Go loads a plugin
// only into a host built by the identical toolchain; a different patch release may even load
// and then misbehave, so "close" is not good enough. An empty want takes the go on PATH.
func checkToolchain(ctx context.Context, r *runner, dir, want string) (string, error) {
	image := "golang:" + want
	if want == "" {
		image = "golang:<the hosts' Go release>"
	}
	out, err := r.output(ctx, dir, "go", "env", "GOVERSION", "CGO_ENABLED", "CC")
	if err != nil {
		return "", failf(ReasonToolchainMismatch, "run the go command: %v; install Go, or build in the %s image", err, image)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 3 {
		return "", failf(ReasonInternal, "go env printed %q, want three lines", out)
	}
	got, cgo, cc := strings.TrimSpace(lines[0]), strings.TrimSpace(lines[1]), strings.TrimSpace(lines[2])
	if want != "" && got != "go"+want {
		return "", failf(ReasonToolchainMismatch, "the go command is %s, but go%s was asked for: run the builder in the golang:%s image (or put that exact release first on PATH); Go loads plugins only into hosts built by the identical release",
			got, want, want)
	}
	if cgo != "1" {
		return "", failf(ReasonToolchainMismatch, "cgo is disabled (CGO_ENABLED=%s) although the builder asked for it; Go plugins need cgo", cgo)
	}
	if ccPath := strings.Fields(cc); len(ccPath) > 0 {
		if _, err := exec.LookPath(ccPath[0]); err != nil {
			return "", failf(ReasonToolchainMismatch, "cgo needs the C compiler %q, which is not installed: use the %s image (Debian based, with gcc) or install it", ccPath[0], image)
		}
	}
	return got, nil
}

// packageDir resolves the package directory and requires it to stay inside the checkout,
// symbolic links included.
func packageDir(names FieldNames, root, pkg string) (string, error) {
	dir := filepath.Join(root, filepath.FromSlash(pkg))
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", failf(ReasonSourceUnavailable, "resolve %s: %v", root, err)
	}
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", failf(ReasonPackageInvalid, "package directory %s does not exist in the source (check %s against the repository at this revision): %v", pkg, names.name(fieldPackage), err)
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
func resolveAPIVersion(names FieldNames, want, dir string, goFiles []string) (string, error) {
	declared, err := declaredAPIVersion(dir, goFiles)
	if err != nil {
		return "", failf(ReasonAPIVersionMismatch, "read the plugin's APIVersion: %v", err)
	}
	switch {
	case declared == "" && want == "":
		return "", failf(ReasonAPIVersionMismatch, "the plugin declares no API version: add `var APIVersion = \"1.0.0\"` to its main package (hosts compare it before a swap), or %s", names.set(fieldAPIVersion))
	case declared == "":
		return want, nil
	case !ValidAPIVersion(declared):
		return "", failf(ReasonAPIVersionMismatch, "the plugin declares APIVersion %q, which is not a semantic version such as 1.0.0", declared)
	case want != "" && !SameAPIVersion(want, declared):
		return "", failf(ReasonAPIVersionMismatch, "%s is %s but the plugin declares APIVersion %q at this revision: make them agree (hosts trust the plugin's own)", names.name(fieldAPIVersion), want, declared)
	}
	return declared, nil
}

// pluginFacts reads the built plugin's facts and checks what the build promised: a plugin,
// by the toolchain checked, with the plugin path of the unique copy, exporting symbol.
func pluginFacts(names FieldNames, soPath, pluginPath, goVersion, symbol string) (*preflight.Facts, error) {
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
	if err := exportsSymbol(names, soPath, pluginPath, symbol); err != nil {
		return nil, err
	}
	return facts, nil
}

// exportsSymbol checks the plugin's dynamic symbol table for pluginPath.symbol, the name
// plugin.Lookup resolves (through dlsym) in the host.
func exportsSymbol(names FieldNames, soPath, pluginPath, symbol string) error {
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
	return failf(ReasonSymbolNotFound, "the plugin does not export %s: declare `func %s() T` (T the interface the hosts load it as) in its main package, or %s naming the constructor it exports", symbol, symbol, names.set(fieldSymbol))
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
