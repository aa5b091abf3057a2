package preflight

import (
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
)

// Kinds of binaries Facts describe.
const (
	// KindHost is any Go binary that is not a plugin: the process that
	// calls plugin.Open.
	KindHost = "host"
	// KindPlugin is a binary built with go build -buildmode=plugin.
	KindPlugin = "plugin"
)

// Facts are a binary's or plugin's build facts: what plugin.Open compares,
// plus the build settings that explain a mismatch.
type Facts struct {
	// Kind is KindHost or KindPlugin.
	Kind string `json:"kind"`
	// Path is the file the facts were read from (a binary or a facts file).
	Path string `json:"path,omitempty"`
	// PluginPath is a plugin's identity in the runtime: its package import
	// path, or plugin/unnamed-<sha1> for a build from a list of files.
	// plugin.Open refuses a second plugin with the same PluginPath.
	PluginPath string `json:"pluginPath,omitempty"`
	// GoVersion is the toolchain that built the binary, e.g. "go1.26.8"
	// (with " X:<experiments>" when GOEXPERIMENT was set).
	GoVersion string `json:"goVersion"`
	GOOS      string `json:"goos"`
	GOARCH    string `json:"goarch"`
	// GOAMD64 is the amd64 micro-architecture level, "v1".."v4".
	GOAMD64  string   `json:"goamd64,omitempty"`
	CGO      bool     `json:"cgo"`
	Trimpath bool     `json:"trimpath"`
	Race     bool     `json:"race"`
	Tags     []string `json:"tags,omitempty"`
	GCFlags  string   `json:"gcflags,omitempty"`
	LDFlags  string   `json:"ldflags,omitempty"`
	// BuildMode is the -buildmode the binary was built with ("exe",
	// "pie", "plugin", ...).
	BuildMode string `json:"buildmode,omitempty"`
	// MainModule is the module the binary's main package belongs to.
	MainModule Module `json:"mainModule"`
	// Modules are the module dependencies, from debug/buildinfo Deps.
	Modules []Module `json:"modules,omitempty"`
	// Packages maps the import path of every package linked into the binary
	// to the hex form of its 8-byte go:link.pkghashbytes.<package> symbol:
	// the fingerprint plugin.Open compares. Empty for a binary built with
	// CGO_ENABLED=0, which cannot take part in plugin loading at all.
	Packages map[string]string `json:"packages"`
}

// Module is a module the binary was built from.
type Module struct {
	Path    string  `json:"path"`
	Version string  `json:"version,omitempty"`
	Sum     string  `json:"sum,omitempty"`
	Replace *Module `json:"replace,omitempty"`
}

// maxFactsFileSize bounds what ReadFacts accepts as a facts file. Real ones
// are a few tens of KB (one line per package); the bound keeps a hostile or
// mistaken input from exhausting the memory of the process reading it.
const maxFactsFileSize = 16 << 20

// pkghashBytesPrefix names the symbols holding each package's fingerprint.
const pkghashBytesPrefix = "go:link.pkghashbytes."

// ReadFactsFirst reads the build facts of the first of paths that holds them, or returns every
// path's error: the same file as its owner names it and as this process sees it (a host
// reports a plugin's path in its own mount namespace; an agent may see the volume elsewhere).
func ReadFactsFirst(paths ...string) (*Facts, error) {
	var errs []error
	for _, p := range paths {
		f, err := ReadFacts(p)
		if err == nil {
			return f, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// ReadFacts reads the build facts of a Go host binary or plugin (an ELF file:
// build information plus the package hashes in its dynamic symbol table), or
// a facts file written by Facts.WriteFile. Which one is decided by content.
func ReadFacts(path string) (*Facts, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read build facts: %w", err)
	}
	defer f.Close()

	head := make([]byte, 512)
	n, err := f.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read build facts of %s: %w", path, err)
	}
	full := n == len(head)
	head = head[:n]
	rest := bytes.TrimLeft(head, " \t\r\n")
	switch {
	case bytes.HasPrefix(head, []byte(elf.ELFMAG)):
		return readBinaryFacts(path, f)
	// A facts file is JSON, which may start with more white space than the head holds.
	case bytes.HasPrefix(rest, []byte("{")) || (full && len(rest) == 0):
		return readFactsFile(path, f)
	default:
		return nil, fmt.Errorf("read build facts of %s: neither an ELF binary nor a JSON facts file (written by `splice facts`)", path)
	}
}

// readBinaryFacts reads the facts of a Go ELF binary or plugin.
func readBinaryFacts(path string, f *os.File) (*Facts, error) {
	bi, err := buildinfo.Read(f)
	if err != nil {
		return nil, fmt.Errorf("read build information of %s: %w (preflight needs a binary built by the go command)", path, err)
	}
	facts := factsFromBuildInfo(bi)
	facts.Path = path

	ef, err := elf.NewFile(f)
	if err != nil {
		return nil, fmt.Errorf("read ELF headers of %s: %w", path, err)
	}
	facts.Packages, err = packageHashes(ef)
	if err != nil {
		return nil, fmt.Errorf("read package hashes of %s: %w", path, err)
	}

	if len(facts.Packages) == 0 && facts.CGO {
		// CGO_ENABLED=0 binaries legitimately have none (they are linked
		// statically and can neither open nor be plugins); Check reports
		// that as CgoDisabled. Anything else without them is unusable.
		if facts.Kind == KindPlugin {
			return nil, fmt.Errorf("read package hashes of %s: no %s* symbols in its dynamic symbol table; it is not a plugin built by `go build -buildmode=plugin`", path, pkghashBytesPrefix)
		}
		return nil, fmt.Errorf("read package hashes of %s: no %s* symbols in its dynamic symbol table: "+
			"either the binary does not import package plugin (and cannot open plugins: link the splice host library), "+
			"or its symbols were stripped; record its facts from the unstripped binary at build time with "+
			"`splice facts BINARY -o FILE` and pass that file instead of the binary", path, pkghashBytesPrefix)
	}

	if facts.Kind == KindPlugin {
		facts.PluginPath, err = pluginPath(ef, bi.Path, facts)
		if err != nil {
			return nil, fmt.Errorf("read plugin path of %s: %w", path, err)
		}
	}
	// Facts travel as JSON (facts files, artifact configs, the control socket): read them as
	// JSON carries them, and refuse what a facts file could not hold.
	facts.toValidUTF8()
	if err := facts.Validate(); err != nil {
		return nil, fmt.Errorf("read build facts of %s: %w", path, err)
	}
	return facts, nil
}

// toValidUTF8 replaces the bytes of the build information that are not UTF-8 (a -ldflags value
// may hold any) with U+FFFD, as encoding/json does: facts read from a binary then equal the same
// facts read back from a facts file, and from the host over the control socket. Package names
// are import paths, which are UTF-8; packageHashes refuses others.
func (f *Facts) toValidUTF8() {
	for _, s := range []*string{&f.PluginPath, &f.GoVersion, &f.GOOS, &f.GOARCH, &f.GOAMD64, &f.GCFlags, &f.LDFlags, &f.BuildMode} {
		*s = strings.ToValidUTF8(*s, "\uFFFD")
	}
	for i := range f.Tags {
		f.Tags[i] = strings.ToValidUTF8(f.Tags[i], "\uFFFD")
	}
	f.MainModule.toValidUTF8()
	for i := range f.Modules {
		f.Modules[i].toValidUTF8()
	}
}

func (m *Module) toValidUTF8() {
	for _, s := range []*string{&m.Path, &m.Version, &m.Sum} {
		*s = strings.ToValidUTF8(*s, "\uFFFD")
	}
	if m.Replace != nil {
		m.Replace.toValidUTF8()
	}
}

// factsFromBuildInfo copies what the go command recorded in the binary.
func factsFromBuildInfo(bi *buildinfo.BuildInfo) *Facts {
	f := &Facts{
		Kind:       KindHost,
		GoVersion:  bi.GoVersion,
		MainModule: convertModule(bi.Main),
		Packages:   map[string]string{},
	}
	for _, d := range bi.Deps {
		if d != nil {
			f.Modules = append(f.Modules, convertModule(*d))
		}
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "-buildmode":
			f.BuildMode = s.Value
		case "-tags":
			if s.Value != "" {
				f.Tags = strings.Split(s.Value, ",")
			}
		case "-trimpath":
			f.Trimpath = s.Value == "true"
		case "-race":
			f.Race = s.Value == "true"
		case "-gcflags":
			f.GCFlags = s.Value
		case "-ldflags":
			f.LDFlags = s.Value
		case "CGO_ENABLED":
			f.CGO = s.Value == "1"
		case "GOOS":
			f.GOOS = s.Value
		case "GOARCH":
			f.GOARCH = s.Value
		case "GOAMD64":
			f.GOAMD64 = s.Value
		}
	}
	if f.BuildMode == "plugin" {
		f.Kind = KindPlugin
	}
	return f
}

func convertModule(m debug.Module) Module {
	out := Module{Path: m.Path, Version: m.Version, Sum: m.Sum}
	if m.Replace != nil {
		r := convertModule(*m.Replace)
		out.Replace = &r
	}
	return out
}

// pluginPath finds the identity plugin.Open will register the plugin under.
// The linker stores it in the local symbol go:link.thispluginpath; a plugin
// stripped with -s has no .symtab, so then it is derived the way the go
// command chose it, and confirmed against the package list (the linker
// always emits a package hash under the plugin path).
func pluginPath(ef *elf.File, mainPath string, facts *Facts) (string, error) {
	p, found, err := symtabPluginPath(ef)
	if err != nil {
		return "", err
	}
	if found {
		return p, nil
	}
	var candidates []string
	if p := ldflagsPluginPath(facts.LDFlags); p != "" {
		candidates = append(candidates, p)
	}
	if mainPath != "" && mainPath != "command-line-arguments" {
		candidates = append(candidates, mainPath)
	}
	for pkg := range facts.Packages {
		if strings.HasPrefix(pkg, "plugin/unnamed-") {
			candidates = append(candidates, pkg)
		}
	}
	for _, c := range candidates {
		if _, ok := facts.Packages[c]; ok {
			return c, nil
		}
	}
	return "", fmt.Errorf("the plugin has no symbol table and its plugin path is neither its main package %q nor a plugin/unnamed-* package; rebuild it without -ldflags=-s", mainPath)
}

var pluginPathFlag = regexp.MustCompile(`(?:^|[\s=])--?pluginpath[= ]("[^"]*"|'[^']*'|\S+)`)

// ldflagsPluginPath returns the last -pluginpath given in -ldflags, which
// overrides the one the go command passes to the linker.
func ldflagsPluginPath(ldflags string) string {
	m := pluginPathFlag.FindAllStringSubmatch(ldflags, -1)
	if len(m) == 0 {
		return ""
	}
	return strings.Trim(m[len(m)-1][1], `"'`)
}

// WriteFile writes the facts as indented JSON, the format ReadFacts reads.
// The file is replaced atomically, so a reader never sees half of it.
func (f *Facts) WriteFile(path string) error {
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("encode build facts for %s: %w", path, err)
	}
	data = append(data, '\n')
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write build facts: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op once renamed
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write build facts to %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("write build facts to %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write build facts to %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write build facts: %w", err)
	}
	return nil
}

// readFactsFile decodes and validates a facts file.
func readFactsFile(path string, r io.Reader) (*Facts, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxFactsFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read facts file %s: %w", path, err)
	}
	if len(data) > maxFactsFileSize {
		return nil, fmt.Errorf("read facts file %s: larger than %d bytes; not a facts file written by `splice facts`", path, maxFactsFileSize)
	}
	var f Facts
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("decode facts file %s: %w", path, err)
	}
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("facts file %s: %w; record it again with `splice facts`", path, err)
	}
	f.Path = path
	if f.Packages == nil {
		f.Packages = map[string]string{}
	}
	return &f, nil
}

var hashPattern = regexp.MustCompile(`^[0-9a-f]{16}$`)

// Validate rejects facts that Check could not compare meaningfully: what ReadFacts refuses in
// a facts file. Facts read from another party (a facts file, an artifact's config blob) must
// pass it before they are trusted.
func (f *Facts) Validate() error {
	switch f.Kind {
	case KindHost, KindPlugin:
	default:
		return fmt.Errorf("kind is %q, want %q or %q", f.Kind, KindHost, KindPlugin)
	}
	if !strings.HasPrefix(f.GoVersion, "go") && !strings.HasPrefix(f.GoVersion, "devel go") {
		return fmt.Errorf("goVersion is %q, want a Go version such as go1.26.8", f.GoVersion)
	}
	if f.GOOS == "" || f.GOARCH == "" {
		return errors.New("goos or goarch is empty")
	}
	if f.Kind == KindPlugin && f.PluginPath == "" {
		return errors.New("pluginPath is empty for a plugin")
	}
	if f.CGO && len(f.Packages) == 0 {
		return errors.New("packages is empty, but a cgo-enabled host or plugin always has package hashes")
	}
	for pkg, h := range f.Packages {
		if pkg == "" || !hashPattern.MatchString(h) {
			return fmt.Errorf("package %q has hash %q, want 16 lowercase hex digits", pkg, h)
		}
	}
	return nil
}
