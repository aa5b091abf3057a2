package preflight

import (
	"fmt"
	"slices"
	"strings"
)

// Reasons a Problem gives. Each names one condition under which Check
// refuses a plugin.
const (
	// MissingFacts: the host's or the plugin's facts are nil, so nothing
	// can be compared. Read them with ReadFacts.
	MissingFacts = "MissingFacts"
	// NotAHost: the facts given as the host describe a plugin.
	NotAHost = "NotAHost"
	// NotAPlugin: the facts given as the plugin describe a binary that was
	// not built with -buildmode=plugin; plugin.Open fails on it.
	NotAPlugin = "NotAPlugin"
	// GoVersionMismatch: host and plugin were built by different Go
	// toolchains, patch releases included. A plugin from another minor
	// release can kill the host inside plugin.Open ("fatal error: runtime:
	// no plugin module data"); one from another patch release may even
	// load, but Go supports plugins only from the host's exact toolchain.
	GoVersionMismatch = "GoVersionMismatch"
	// PlatformMismatch: GOOS or GOARCH differ.
	PlatformMismatch = "PlatformMismatch"
	// GOAMD64Mismatch: both are amd64 but were built for different
	// micro-architecture levels. plugin.Open loads such a plugin silently;
	// it is still unsupported, and code for a higher level faults on CPUs
	// without its instructions.
	GOAMD64Mismatch = "GOAMD64Mismatch"
	// CgoDisabled: the host or the plugin was built with CGO_ENABLED=0.
	// Such a host answers every plugin.Open with "plugin: not implemented".
	CgoDisabled = "CgoDisabled"
	// DuplicatePluginPath: a plugin with the same plugin path was already
	// opened in the process. plugin.Open answers "plugin already loaded",
	// returns the old plugin, or crashes, depending on how the file relates
	// to the loaded one.
	DuplicatePluginPath = "DuplicatePluginPath"
	// PackageHashMismatch: a package the plugin links is already in the
	// process — in the host, or in a plugin opened earlier — with another
	// fingerprint. plugin.Open fails with "plugin was built with a
	// different version of package <Package>".
	PackageHashMismatch = "PackageHashMismatch"
)

// Reasons lists every reason constant of this package, in the order Check reports them.
var Reasons = []string{MissingFacts, NotAHost, NotAPlugin, GoVersionMismatch, PlatformMismatch, GOAMD64Mismatch,
	CgoDisabled, DuplicatePluginPath, PackageHashMismatch}

// Verdict is Check's answer. OK is true only when plugin.Open would
// succeed and the result is a build Go supports.
type Verdict struct {
	OK       bool      `json:"ok"`
	Problems []Problem `json:"problems,omitempty"`
}

// Problem is one reason a plugin is refused: one cause, however many packages
// it makes differ. No text of a Problem holds a line break.
type Problem struct {
	// Reason is one of the reason constants of this package.
	Reason string `json:"reason"`
	// Package is the offending package: for PackageHashMismatch the first (in
	// import path order) of Packages; for DuplicatePluginPath the plugin path.
	Package string `json:"package,omitempty"`
	// Packages are, for PackageHashMismatch, every package that differs for
	// this Problem's cause, sorted.
	Packages []string `json:"packages,omitempty"`
	// Cause is, for PackageHashMismatch, what makes Packages differ: one of
	// the Cause constants, or several recorded settings comma-separated
	// ("race,tags").
	Cause string `json:"cause,omitempty"`
	// Rebuild is, for PackageHashMismatch, the side to rebuild: RebuildPlugin
	// or RebuildHost.
	Rebuild string `json:"rebuild,omitempty"`
	// Want is the value in the process (host or loaded plugin), Got the
	// plugin's; for PackageHashMismatch the fingerprints of Package.
	Want string `json:"want,omitempty"`
	Got  string `json:"got,omitempty"`
	// Message says what differs, which side to rebuild and how, on one line.
	Message string `json:"message"`
}

// Error returns every problem as "Reason: message", joined by "; " on one
// line, or "" for a passing verdict.
func (v Verdict) Error() string {
	parts := make([]string, 0, len(v.Problems))
	for _, p := range v.Problems {
		parts = append(parts, p.Reason+": "+p.Message)
	}
	return strings.Join(parts, "; ")
}

// Err returns nil for a passing verdict and the verdict itself otherwise,
// so callers can write `if err := preflight.Check(...).Err(); err != nil`.
func (v Verdict) Err() error {
	if v.OK {
		return nil
	}
	return v
}

// Check predicts whether plugin.Open of the plugin would succeed in a host
// process, and whether the result would be a supported build.
//
// loaded lists every plugin plugin.Open was already called on in that
// process, in the order of the calls, including those whose Open failed:
// a failed Open leaves the library mapped and its packages visible.
//
// Package hashes are compared the way the process will: for each package
// the plugin links, against the first copy in the process — the host's,
// else that of the earliest loaded plugin that links it — because that is
// the definition the dynamic linker binds the plugin's check to. They are
// compared only when toolchain and platform agree; otherwise every package
// differs for that one reason, and it alone is reported.
func Check(host *Facts, plugin *Facts, loaded []*Facts) Verdict {
	if host == nil || plugin == nil {
		which := "host"
		if host != nil {
			which = "plugin"
		}
		return Verdict{Problems: []Problem{{Reason: MissingFacts, Message: fmt.Sprintf("no build facts for the %s; read them with preflight.ReadFacts or `splice facts`", which)}}}
	}
	var v Verdict
	v.Problems = append(v.Problems, kindProblems(host, plugin)...)
	v.Problems = append(v.Problems, toolchainProblems(host, plugin)...)
	v.Problems = append(v.Problems, platformProblems(host, plugin)...)
	v.Problems = append(v.Problems, cgoProblems(host, plugin)...)
	duplicate := duplicateProblems(plugin, loaded)
	v.Problems = append(v.Problems, duplicate...)
	if host.GoVersion == plugin.GoVersion && samePlatform(host, plugin) && host.Kind == KindHost && plugin.Kind == KindPlugin {
		v.Problems = append(v.Problems, packageProblems(host, plugin, loaded, len(duplicate) > 0)...)
	}
	for i, p := range v.Problems {
		v.Problems[i] = oneLineProblem(p)
	}
	v.OK = len(v.Problems) == 0
	return v
}

func kindProblems(host, plugin *Facts) []Problem {
	var ps []Problem
	if host.Kind != KindHost {
		ps = append(ps, Problem{Reason: NotAHost, Want: KindHost, Got: host.Kind,
			Message: fmt.Sprintf("%s is a %s (-buildmode=%s), not a host binary; give the program that calls plugin.Open", describe(host), host.Kind, host.BuildMode)})
	}
	if plugin.Kind != KindPlugin {
		ps = append(ps, Problem{Reason: NotAPlugin, Want: KindPlugin, Got: plugin.Kind,
			Message: fmt.Sprintf("%s is a %s (-buildmode=%s), not a plugin; build it with `go build -buildmode=plugin`", describe(plugin), plugin.Kind, plugin.BuildMode)})
	}
	return ps
}

func toolchainProblems(host, plugin *Facts) []Problem {
	if host.GoVersion == plugin.GoVersion {
		return nil
	}
	consequence := "a plugin from another Go release can kill the host inside plugin.Open"
	if releaseLine(host.GoVersion) == releaseLine(plugin.GoVersion) {
		consequence = "plugin.Open may even load a plugin from another patch release, but Go supports only identical toolchains"
	}
	return []Problem{{Reason: GoVersionMismatch, Want: host.GoVersion, Got: plugin.GoVersion,
		Message: fmt.Sprintf("the host was built with %s, the plugin with %s: %s; rebuild the plugin with %s (GOTOOLCHAIN=%s)",
			host.GoVersion, plugin.GoVersion, consequence, host.GoVersion, strings.Fields(host.GoVersion + " ")[0])}}
}

func samePlatform(host, plugin *Facts) bool {
	return host.GOOS == plugin.GOOS && host.GOARCH == plugin.GOARCH
}

func platformProblems(host, plugin *Facts) []Problem {
	if !samePlatform(host, plugin) {
		want, got := host.GOOS+"/"+host.GOARCH, plugin.GOOS+"/"+plugin.GOARCH
		return []Problem{{Reason: PlatformMismatch, Want: want, Got: got,
			Message: fmt.Sprintf("the host is %s, the plugin %s; rebuild the plugin with GOOS=%s GOARCH=%s", want, got, host.GOOS, host.GOARCH)}}
	}
	if host.GOARCH == "amd64" && amd64Level(host) != amd64Level(plugin) {
		return []Problem{{Reason: GOAMD64Mismatch, Want: amd64Level(host), Got: amd64Level(plugin),
			Message: fmt.Sprintf("the host was built with GOAMD64=%s, the plugin with GOAMD64=%s: plugin.Open would load it, but Go supports only plugins built with the host's settings; rebuild the plugin with GOAMD64=%s",
				amd64Level(host), amd64Level(plugin), amd64Level(host))}}
	}
	return nil
}

func cgoProblems(host, plugin *Facts) []Problem {
	var ps []Problem
	if !host.CGO {
		ps = append(ps, Problem{Reason: CgoDisabled, Want: "CGO_ENABLED=1", Got: "CGO_ENABLED=0",
			Message: fmt.Sprintf("%s was built with CGO_ENABLED=0, so its plugin.Open answers \"plugin: not implemented\"; rebuild the host with CGO_ENABLED=1", describe(host))})
	}
	if !plugin.CGO {
		ps = append(ps, Problem{Reason: CgoDisabled, Want: "CGO_ENABLED=1", Got: "CGO_ENABLED=0",
			Message: fmt.Sprintf("%s was built with CGO_ENABLED=0; plugins need cgo: rebuild it with CGO_ENABLED=1", describe(plugin))})
	}
	return ps
}

// duplicateProblems reports the first loaded plugin with the plugin's path.
func duplicateProblems(plugin *Facts, loaded []*Facts) []Problem {
	for _, l := range loaded {
		if l != nil && plugin.PluginPath != "" && l.PluginPath == plugin.PluginPath {
			msg := fmt.Sprintf("plugin path %s is already loaded in the process, from %s; a process can hold only one plugin per path: build every version under its own plugin path (for example a versioned package import path)",
				plugin.PluginPath, orUnknown(l.Path))
			if sameFingerprints(l, plugin) {
				msg = fmt.Sprintf("plugin path %s is already loaded in the process, from %s, and every package fingerprint is the same: this is that build again (a file started by hand and its artifact, under two digests?); nothing needs loading: name the loaded version, or give the host the same bytes so it records the digest as an alias",
					plugin.PluginPath, orUnknown(l.Path))
			}
			return []Problem{{Reason: DuplicatePluginPath, Package: plugin.PluginPath, Want: "a plugin path not loaded yet", Got: plugin.PluginPath, Message: msg}}
		}
	}
	return nil
}

// sameFingerprints reports whether two plugins link the same packages with the same
// fingerprints: the same build, whatever their files are called.
func sameFingerprints(a, b *Facts) bool {
	if len(a.Packages) != len(b.Packages) || a.GoVersion != b.GoVersion {
		return false
	}
	for pkg, h := range a.Packages {
		if b.Packages[pkg] != h {
			return false
		}
	}
	return true
}

// packageProblems compares each package the plugin links with its first definition in the
// process, and reports the differing ones grouped by cause: one Problem per module at another
// version, per set of differing build settings, and for the rest (their source differs), per
// process copy compared with. With duplicate, the plugin's own package is skipped: it differs
// for the reason DuplicatePluginPath reports already.
func packageProblems(host, plugin *Facts, loaded []*Facts, duplicate bool) []Problem {
	var ms []mismatch
	for _, pkg := range sortedKeys(plugin.Packages) {
		if duplicate && pkg == plugin.PluginPath {
			continue
		}
		got := plugin.Packages[pkg]
		want, owner := firstDefinition(pkg, host, loaded)
		if owner == nil || want == got {
			continue
		}
		ms = append(ms, mismatch{pkg: pkg, want: want, got: got, owner: owner})
	}
	var ps []Problem
	for _, g := range groupMismatches(plugin, ms) {
		ps = append(ps, g.problem(host, plugin))
	}
	return ps
}

// firstDefinition returns the fingerprint of pkg the plugin will be checked
// against, and whose it is: the host's, else the earliest loaded plugin's.
func firstDefinition(pkg string, host *Facts, loaded []*Facts) (string, *Facts) {
	if h, ok := host.Packages[pkg]; ok {
		return h, host
	}
	for _, l := range loaded {
		if l == nil {
			continue
		}
		if h, ok := l.Packages[pkg]; ok {
			return h, l
		}
	}
	return "", nil
}

// moduleOf returns the module of f that provides pkg (longest path prefix).
func moduleOf(f *Facts, pkg string) (Module, bool) {
	var best Module
	found := false
	for _, m := range append([]Module{f.MainModule}, f.Modules...) {
		if m.Path == "" || !(pkg == m.Path || strings.HasPrefix(pkg, m.Path+"/")) {
			continue
		}
		if !found || len(m.Path) > len(best.Path) {
			best, found = m, true
		}
	}
	return best, found
}

func sameModule(a, b Module) bool { return moduleVersion(a) == moduleVersion(b) && a.Sum == b.Sum }

func moduleVersion(m Module) string {
	v := m.Version
	if v == "" {
		v = "(no version)"
	}
	if m.Replace != nil {
		v += " => " + strings.TrimSpace(m.Replace.Path+" "+m.Replace.Version)
	}
	return v
}

func ownerName(owner, host *Facts) string {
	if owner == host {
		return describe(host)
	}
	return fmt.Sprintf("already-loaded plugin %s (%s)", owner.PluginPath, orUnknown(owner.Path))
}

func describe(f *Facts) string {
	if f.Path == "" {
		return "the " + f.Kind
	}
	return fmt.Sprintf("the %s %s", f.Kind, f.Path)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown file"
	}
	return s
}

// amd64Level defaults an unrecorded level to v1, the go command's default.
func amd64Level(f *Facts) string {
	if f.GOAMD64 == "" {
		return "v1"
	}
	return f.GOAMD64
}

// releaseLine returns "go1.26" for "go1.26.8" (and for "go1.26rc1").
func releaseLine(v string) string {
	v = strings.Fields(v + " ")[0]
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return v
	}
	minor := parts[1]
	if i := strings.IndexFunc(minor, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		minor = minor[:i]
	}
	return parts[0] + "." + minor
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}
