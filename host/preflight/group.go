package preflight

import (
	"fmt"
	"strings"
)

// Causes a PackageHashMismatch gives (Problem.Cause): what made the packages of one Problem
// differ. A Problem whose packages differ for several recorded settings at once names them
// all, comma-separated, in this order: trimpath, race, gcflags, tags.
const (
	// CauseModule: the module providing the packages is at another version (or replaced
	// differently) in the plugin than where it was first loaded.
	CauseModule = "module"
	// CauseTrimpath: one side was built with -trimpath and the other without; every package
	// compiled from source then differs.
	CauseTrimpath = "trimpath"
	// CauseRace: one side was built with -race.
	CauseRace = "race"
	// CauseGCFlags: -gcflags differ.
	CauseGCFlags = "gcflags"
	// CauseTags: -tags differ.
	CauseTags = "tags"
	// CauseSource: no recorded setting or module version differs, so the source does (or,
	// without -trimpath, the directory it was compiled in).
	CauseSource = "source"
)

// Rebuild values of a Problem: the side that must be rebuilt to fix it.
const (
	RebuildPlugin = "plugin"
	RebuildHost   = "host"
)

// namedPackages is how many packages a grouped message names before counting the rest.
const namedPackages = 5

// mismatch is one differing package and the copy it is compared with.
type mismatch struct {
	pkg, want, got string
	owner          *Facts
}

// group is the differing packages of one cause against one owner.
type group struct {
	cause, key string
	owner      *Facts
	// module and pluginModule are the two versions of the module, for CauseModule.
	module, pluginModule Module
	items                []mismatch
}

// groupMismatches sorts differing packages (in package order) into groups by owner and
// cause; groups keep the order of their first package.
func groupMismatches(plugin *Facts, ms []mismatch) []*group {
	var groups []*group
	byKey := map[string]*group{}
	owners := map[*Facts]int{}
	for _, m := range ms {
		g := classify(m, plugin)
		if _, ok := owners[m.owner]; !ok {
			owners[m.owner] = len(owners)
		}
		key := fmt.Sprintf("%d\x00%s", owners[m.owner], g.key)
		if prev := byKey[key]; prev != nil {
			prev.items = append(prev.items, m)
			continue
		}
		g.items = []mismatch{m}
		byKey[key] = g
		groups = append(groups, g)
	}
	return groups
}

// classify names the cause of one package's difference: its module's version, else the
// recorded settings that differ, else its source.
func classify(m mismatch, plugin *Facts) *group {
	if om, ok := moduleOf(m.owner, m.pkg); ok {
		if pm, ok := moduleOf(plugin, m.pkg); ok && !sameModule(om, pm) {
			return &group{cause: CauseModule, key: CauseModule + "\x00" + om.Path, owner: m.owner, module: om, pluginModule: pm}
		}
	}
	if causes := settingCauses(m.owner, plugin); len(causes) > 0 {
		c := strings.Join(causes, ",")
		return &group{cause: c, key: c, owner: m.owner}
	}
	return &group{cause: CauseSource, key: CauseSource, owner: m.owner}
}

// settingCauses lists the recorded build settings that differ between the two builds.
func settingCauses(owner, plugin *Facts) []string {
	var cs []string
	if owner.Trimpath != plugin.Trimpath {
		cs = append(cs, CauseTrimpath)
	}
	if owner.Race != plugin.Race {
		cs = append(cs, CauseRace)
	}
	if owner.GCFlags != plugin.GCFlags {
		cs = append(cs, CauseGCFlags)
	}
	if tagList(owner) != tagList(plugin) {
		cs = append(cs, CauseTags)
	}
	return cs
}

func tagList(f *Facts) string { return strings.Join(sortedCopy(f.Tags), ",") }

// problem turns a group into one PackageHashMismatch. Package, Want and Got are the first
// package's, as they were when there was one Problem per package.
func (g *group) problem(host, plugin *Facts) Problem {
	first := g.items[0]
	pkgs := make([]string, len(g.items))
	for i, m := range g.items {
		pkgs[i] = m.pkg
	}
	what, rebuild, fix := g.explain(host, plugin)
	return Problem{Reason: PackageHashMismatch, Package: first.pkg, Packages: pkgs, Cause: g.cause, Rebuild: rebuild,
		Want: first.want, Got: first.got,
		Message: fmt.Sprintf("%s (%s); %s", what, countPackages(pkgs), fix)}
}

// countPackages is "3 packages differ: a, b, c", naming at most namedPackages.
func countPackages(pkgs []string) string {
	noun := "packages differ"
	if len(pkgs) == 1 {
		noun = "package differs"
	}
	s := fmt.Sprintf("%d %s: %s", len(pkgs), noun, strings.Join(pkgs[:min(len(pkgs), namedPackages)], ", "))
	if len(pkgs) > namedPackages {
		s += fmt.Sprintf(" and %d more", len(pkgs)-namedPackages)
	}
	return s
}

// explain says what differs, which side to rebuild, and how.
func (g *group) explain(host, plugin *Facts) (what, rebuild, fix string) {
	there := ownerName(g.owner, host)
	switch g.cause {
	case CauseModule:
		return fmt.Sprintf("module %s is %s in %s and %s in the plugin", g.module.Path, moduleVersion(g.module), there, moduleVersion(g.pluginModule)),
			RebuildPlugin, fmt.Sprintf("build the plugin against the go.mod and go.sum of %s (%s)", there, requirement(g.module))
	case CauseSource:
		fix := "their source differs: build the plugin from the same module versions"
		if !g.owner.Trimpath && !plugin.Trimpath {
			fix += " and the same checkout directory (without -trimpath the directory is part of every package)"
		}
		return "no recorded setting or module version explains the difference with " + there, RebuildPlugin, fix
	case CauseTrimpath:
		if g.owner == host && !host.Trimpath {
			return fmt.Sprintf("%s was built without -trimpath and the plugin with it", there), RebuildHost,
				"rebuild the host with -trimpath, as the builder builds every plugin (or build the plugin without -trimpath, in the host's checkout directory)"
		}
	}
	var diffs, fixes []string
	for _, c := range strings.Split(g.cause, ",") {
		d, f := settingDiff(c, g.owner, plugin, there)
		diffs, fixes = append(diffs, d), append(fixes, f)
	}
	return strings.Join(diffs, "; "), RebuildPlugin, "rebuild the plugin " + strings.Join(fixes, " and ")
}

// requirement is the go.mod line that gives module m: "require p v", plus its replacement.
func requirement(m Module) string {
	r := fmt.Sprintf("require %s %s", m.Path, m.Version)
	if m.Replace != nil {
		r += ", replaced by " + strings.TrimSpace(m.Replace.Path+" "+m.Replace.Version)
	}
	return r
}

// settingDiff describes one differing setting and the plugin flag that matches owner.
func settingDiff(cause string, owner, plugin *Facts, there string) (diff, fix string) {
	switch cause {
	case CauseTrimpath:
		if plugin.Trimpath {
			return fmt.Sprintf("%s was built without -trimpath and the plugin with it", there), "without -trimpath"
		}
		return fmt.Sprintf("the plugin was built without -trimpath and %s with it", there), "with -trimpath"
	case CauseRace:
		return fmt.Sprintf("-race is %s in %s and %s in the plugin", onOff(owner.Race), there, onOff(plugin.Race)), withFlag(owner.Race, "-race")
	case CauseGCFlags:
		return fmt.Sprintf("-gcflags is %q in %s and %q in the plugin", owner.GCFlags, there, plugin.GCFlags), withValue("-gcflags", owner.GCFlags)
	default:
		return fmt.Sprintf("-tags is %q in %s and %q in the plugin", tagList(owner), there, tagList(plugin)), withValue("-tags", tagList(owner))
	}
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func withFlag(on bool, flag string) string {
	if on {
		return "with " + flag
	}
	return "without " + flag
}

func withValue(flag, v string) string {
	if v == "" {
		return "without " + flag
	}
	return fmt.Sprintf("with %s=%q", flag, v)
}

// OneLine escapes line breaks and other control characters as \xNN, so that a message or
// value taken from another party (a path, a version or a flag from a file, a plugin's panic
// value) stays on one line in logs and JSON.
func OneLine(s string) string {
	if !strings.ContainsFunc(s, isControl) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if isControl(r) {
			fmt.Fprintf(&b, `\x%02x`, r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func isControl(r rune) bool {
	return r < 0x20 || r == 0x7f || r == '\u2028' || r == '\u2029' || r == '\u0085'
}

// oneLineProblem applies oneLine to every text of p.
func oneLineProblem(p Problem) Problem {
	p.Reason, p.Package, p.Want, p.Got, p.Message = OneLine(p.Reason), OneLine(p.Package), OneLine(p.Want), OneLine(p.Got), OneLine(p.Message)
	for i, s := range p.Packages {
		p.Packages[i] = OneLine(s)
	}
	return p
}
