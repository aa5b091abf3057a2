package builder

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// listPackage is the part of `go list -json` the builder reads.
type listPackage struct {
	Dir        string
	ImportPath string
	Name       string
	Standard   bool
	Module     *listModule
	Error      *struct{ Err string }
	DepsErrors []*struct{ Err string }

	GoFiles, CgoFiles, CFiles, CXXFiles, MFiles, HFiles, FFiles, SFiles []string
	SwigFiles, SwigCXXFiles, SysoFiles, EmbedFiles                      []string
}

type listModule struct {
	Path    string
	Version string
	Dir     string
	GoMod   string
	Main    bool
	Replace *listModule
}

// files are every file the go command reads to compile the package, relative to its Dir.
func (p *listPackage) files() []string {
	var out []string
	for _, l := range [][]string{p.GoFiles, p.CgoFiles, p.CFiles, p.CXXFiles, p.MFiles, p.HFiles, p.FFiles, p.SFiles,
		p.SwigFiles, p.SwigCXXFiles, p.SysoFiles, p.EmbedFiles} {
		out = append(out, l...)
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// local reports whether the package's source lives in the checkout (the main module, or a
// module replaced by a directory) rather than in an immutable module version.
func (p *listPackage) local() bool {
	m := p.Module
	if m == nil {
		return true
	}
	if m.Replace != nil {
		return m.Replace.Version == ""
	}
	return m.Version == ""
}

// moduleVersion names an immutable module version ("path@version"), for packages that are
// not local.
func (p *listPackage) moduleVersion() string {
	m := p.Module
	if m.Replace != nil {
		return m.Path + "=>" + m.Replace.Path + "@" + m.Replace.Version
	}
	return m.Path + "@" + m.Version
}

// buildFlags are the go build flags every plugin is built with, apart from -tags and -o.
// -trimpath keeps package hashes independent of where the checkout sits (the host is built
// the same way); -buildvcs=false keeps the clone's VCS state out of the file, so identical
// inputs give an identical plugin; -v prints each package as it is compiled (the progress).
var buildFlags = []string{"-buildmode=plugin", "-trimpath", "-buildvcs=false"}

// goEnvKeys are the go env settings that change what a build produces.
var goEnvKeys = []string{
	"GOVERSION", "GOOS", "GOARCH", "GOAMD64", "GOARM", "GOARM64", "GO386", "GOMIPS", "GOMIPS64", "GOPPC64",
	"GORISCV64", "GOWASM", "GOEXPERIMENT", "GOFIPS140", "CGO_ENABLED", "CC", "CXX", "CGO_CFLAGS", "CGO_CPPFLAGS",
	"CGO_CXXFLAGS", "CGO_FFLAGS", "CGO_LDFLAGS", "GOFLAGS",
}

// inputs are what the build reads, resolved before it runs.
type inputs struct {
	// pkg is the plugin's main package.
	pkg *listPackage
	// hash is the hex sha256 of everything that determines the plugin (see hashInputs).
	hash string
	// goVersion is `go env GOVERSION`.
	goVersion string
}

// resolveInputs lists the plugin package and everything it imports, and hashes them.
func resolveInputs(ctx context.Context, r *runner, pkgDir string, tags []string) (*inputs, error) {
	envOut, err := r.output(ctx, pkgDir, "go", append([]string{"env", "-json"}, goEnvKeys...)...)
	if err != nil {
		return nil, failf(ReasonPackageInvalid, "read the go environment in %s: %v", pkgDir, err)
	}
	env := map[string]string{}
	if err := json.Unmarshal(envOut, &env); err != nil {
		return nil, failf(ReasonInternal, "decode go env -json: %v", err)
	}

	args := []string{"list", "-deps", "-json"}
	args = append(args, buildFlags...)
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	args = append(args, ".")
	out, err := r.output(ctx, pkgDir, "go", args...)
	if err != nil {
		return nil, failf(ReasonPackageInvalid, "list the plugin package and its dependencies: %v", err)
	}
	var pkgs []*listPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, failf(ReasonInternal, "decode go list output: %v", err)
		}
		pkgs = append(pkgs, &p)
	}
	if len(pkgs) == 0 {
		return nil, failf(ReasonPackageInvalid, "go list found no package in %s", pkgDir)
	}
	// -deps lists dependencies first: the package asked for is the last one.
	main := pkgs[len(pkgs)-1]
	if main.Error != nil {
		return nil, failf(ReasonPackageInvalid, "package in %s: %s", pkgDir, main.Error.Err)
	}
	for _, e := range main.DepsErrors {
		return nil, failf(ReasonPackageInvalid, "dependency of %s: %s", main.ImportPath, e.Err)
	}
	if main.Name != "main" {
		return nil, failf(ReasonPackageInvalid, "%s is package %s; a plugin must be package main (with an exported symbol such as `func Plugin() ...`)", main.ImportPath, main.Name)
	}
	if main.Module == nil {
		return nil, failf(ReasonPackageInvalid, "%s is not in a module: the repository needs a go.mod", pkgDir)
	}
	h, err := hashInputs(env, tags, pkgs)
	if err != nil {
		return nil, err
	}
	return &inputs{pkg: main, hash: h, goVersion: env["GOVERSION"]}, nil
}

// hashInputs hashes, in a canonical text form, everything that determines the built plugin:
// the toolchain and its environment, the flags and tags, every local package's files and
// every local module's go.mod (by content), and every other module by its immutable version.
// Equal hashes mean the same plugin; any change to what is compiled changes the hash, and with
// it the plugin path, so a host can load the new build next to the old one.
func hashInputs(env map[string]string, tags []string, pkgs []*listPackage) (string, error) {
	var b strings.Builder
	b.WriteString("splice plugin build v1\n")
	for _, k := range goEnvKeys {
		fmt.Fprintf(&b, "env %s=%q\n", k, env[k])
	}
	fmt.Fprintf(&b, "flags %s\n", strings.Join(buildFlags, " "))
	t := slices.Clone(tags)
	sort.Strings(t)
	fmt.Fprintf(&b, "tags %s\n", strings.Join(slices.Compact(t), ","))
	fmt.Fprintf(&b, "package %s\n", pkgs[len(pkgs)-1].ImportPath)

	modules := map[string]bool{}
	goMods := map[string]bool{}
	for _, p := range pkgs {
		if p.Standard {
			continue // fixed by GOVERSION
		}
		if !p.local() {
			modules[p.moduleVersion()] = true
			continue
		}
		if p.Module != nil {
			gm := p.Module.GoMod
			if p.Module.Replace != nil {
				gm = p.Module.Replace.GoMod
			}
			if gm != "" {
				goMods[gm] = true
			}
		}
		fmt.Fprintf(&b, "pkg %s\n", p.ImportPath)
		for _, f := range p.files() {
			sum, err := fileSum(filepath.Join(p.Dir, f))
			if err != nil {
				return "", failf(ReasonPackageInvalid, "hash %s of package %s: %v", f, p.ImportPath, err)
			}
			fmt.Fprintf(&b, "file %q %s\n", filepath.ToSlash(f), sum)
		}
	}
	for _, m := range sortedKeys(modules) {
		fmt.Fprintf(&b, "module %s\n", m)
	}
	for _, gm := range sortedKeys(goMods) {
		sum, err := fileSum(gm)
		if err != nil {
			return "", failf(ReasonPackageInvalid, "hash %s: %v", gm, err)
		}
		// Only the content counts: the checkout's location must not change the plugin path.
		fmt.Fprintf(&b, "gomod %s\n", sum)
	}
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:]), nil
}

func fileSum(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
