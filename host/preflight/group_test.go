package preflight_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/splice-dev/splice/host/preflight"
)

// TestPackageMismatchesGroupedByCause: differing packages are reported once per cause, saying
// which side to rebuild and how, with every package of the group kept for machines.
func TestPackageMismatchesGroupedByCause(t *testing.T) {
	type want struct {
		cause, rebuild string
		packages       []string
		message        []string // substrings
	}
	tests := []struct {
		name   string
		host   func(h *preflight.Facts)
		plugin func(p *preflight.Facts)
		want   []want
	}{
		{
			name: "host built without -trimpath",
			plugin: func(p *preflight.Facts) {
				p.Trimpath = true
				for _, k := range []string{"runtime", "example.com/app/api", "example.com/lib"} {
					p.Packages[k] = "ff" + p.Packages[k][2:]
				}
			},
			want: []want{{cause: preflight.CauseTrimpath, rebuild: "host",
				packages: []string{"example.com/app/api", "example.com/lib", "runtime"},
				message:  []string{"the host /app/server was built without -trimpath and the plugin with it (3 packages differ: example.com/app/api, example.com/lib, runtime)", "rebuild the host with -trimpath"}}},
		},
		{
			name: "plugin built without -trimpath",
			host: func(h *preflight.Facts) { h.Trimpath = true },
			plugin: func(p *preflight.Facts) {
				p.Packages["runtime"] = "ff00000000000001"
			},
			want: []want{{cause: preflight.CauseTrimpath, rebuild: "plugin", packages: []string{"runtime"},
				message: []string{"the plugin was built without -trimpath and the host /app/server with it (1 package differs: runtime)", "rebuild the plugin with -trimpath"}}},
		},
		{
			name: "module at another version",
			plugin: func(p *preflight.Facts) {
				p.Modules = []preflight.Module{{Path: "example.com/lib", Version: "v1.1.0", Sum: "h1:bbb="}}
				p.Packages["example.com/lib"] = "0000000000000014"
				p.Packages["example.com/lib/internal"] = "0000000000000015"
			},
			want: []want{{cause: preflight.CauseModule, rebuild: "plugin", packages: []string{"example.com/lib", "example.com/lib/internal"},
				message: []string{"module example.com/lib is v1.0.0 in the host /app/server and v1.1.0 in the plugin (2 packages differ: example.com/lib, example.com/lib/internal)", "require example.com/lib v1.0.0"}}},
		},
		{
			name: "a module and an unexplained package are two causes",
			plugin: func(p *preflight.Facts) {
				p.Modules = []preflight.Module{{Path: "example.com/lib", Version: "v1.1.0", Sum: "h1:bbb="}}
				p.Packages["example.com/lib"] = "0000000000000014"
				p.Packages["example.com/app/api"] = "1000000000000003"
			},
			want: []want{
				{cause: preflight.CauseSource, rebuild: "plugin", packages: []string{"example.com/app/api"}, message: []string{"same checkout directory"}},
				{cause: preflight.CauseModule, rebuild: "plugin", packages: []string{"example.com/lib"}, message: []string{"module example.com/lib is v1.0.0"}},
			},
		},
		{
			name: "-gcflags",
			plugin: func(p *preflight.Facts) {
				p.GCFlags = "all=-N -l"
				p.Packages["runtime"] = "1000000000000001"
				p.Packages["example.com/lib"] = "1000000000000004"
			},
			want: []want{{cause: preflight.CauseGCFlags, rebuild: "plugin", packages: []string{"example.com/lib", "runtime"},
				message: []string{`-gcflags is "" in the host /app/server and "all=-N -l" in the plugin (2 packages differ`, "rebuild the plugin without -gcflags"}}},
		},
		{
			name: "several settings at once are one cause",
			plugin: func(p *preflight.Facts) {
				p.Race, p.Tags = true, []string{"b", "a"}
				p.Packages["runtime"] = "1000000000000001"
			},
			want: []want{{cause: preflight.CauseRace + "," + preflight.CauseTags, rebuild: "plugin", packages: []string{"runtime"},
				message: []string{"-race is off in the host /app/server and on in the plugin", `-tags is "" in the host /app/server and "a,b" in the plugin`, "rebuild the plugin without -race and without -tags"}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, plugin := hostFacts(), pluginFacts("example.com/v1")
			if tt.host != nil {
				tt.host(host)
			}
			tt.plugin(plugin)
			v := preflight.Check(host, plugin, nil)
			if len(v.Problems) != len(tt.want) {
				t.Fatalf("%d problems, want %d: %s", len(v.Problems), len(tt.want), v.Error())
			}
			for i, w := range tt.want {
				p := v.Problems[i]
				if p.Reason != preflight.PackageHashMismatch || p.Cause != w.cause || p.Rebuild != w.rebuild || !slices.Equal(p.Packages, w.packages) || p.Package != w.packages[0] {
					t.Errorf("problem %d = %+v\nwant cause %s, rebuild %s, packages %v", i, p, w.cause, w.rebuild, w.packages)
				}
				for _, m := range w.message {
					if !strings.Contains(p.Message, m) {
						t.Errorf("problem %d message %q\nlacks %q", i, p.Message, m)
					}
				}
			}
		})
	}
}

// TestManyPackagesNameTheFirstFew: the message names a few packages and counts the rest; the
// Packages field lists them all.
func TestManyPackagesNameTheFirstFew(t *testing.T) {
	host, plugin := hostFacts(), pluginFacts("example.com/v1")
	plugin.Trimpath = true
	for i := range 35 {
		pkg := fmt.Sprintf("example.com/lib/p%02d", i)
		host.Packages[pkg] = "0000000000000001"
		plugin.Packages[pkg] = "0000000000000002"
	}
	v := preflight.Check(host, plugin, nil)
	if len(v.Problems) != 1 {
		t.Fatalf("%d problems, want one: %s", len(v.Problems), v.Error())
	}
	p := v.Problems[0]
	if len(p.Packages) != 35 {
		t.Errorf("Packages has %d entries, want 35", len(p.Packages))
	}
	if want := "(35 packages differ: example.com/lib/p00, example.com/lib/p01, example.com/lib/p02, example.com/lib/p03, example.com/lib/p04 and 30 more)"; !strings.Contains(p.Message, want) {
		t.Errorf("message %q lacks %q", p.Message, want)
	}
}

// TestNoNewlines: whatever the facts hold, no message, no JSON value and no Error() of any
// reason contains a line break, so logs and termination messages stay one record per problem.
func TestNoNewlines(t *testing.T) {
	nasty := "a\nb\r\nc"
	type tc struct {
		host, plugin func(*preflight.Facts) *preflight.Facts
		loaded       []*preflight.Facts
	}
	id := func(f *preflight.Facts) *preflight.Facts { return f }
	dup := pluginFacts("example.com/v1")
	dup.Path = "/plugins/" + nasty
	cases := []tc{
		{host: func(*preflight.Facts) *preflight.Facts { return nil }, plugin: id},
		{host: id, plugin: func(*preflight.Facts) *preflight.Facts { return nil }},
		{host: func(h *preflight.Facts) *preflight.Facts { h.Kind, h.Path = preflight.KindPlugin, nasty; return h }, plugin: id},
		{host: id, plugin: func(p *preflight.Facts) *preflight.Facts {
			p.Kind, p.Path, p.BuildMode = preflight.KindHost, nasty, nasty
			return p
		}},
		{host: id, plugin: func(p *preflight.Facts) *preflight.Facts { p.GoVersion = "go1.26.7 " + nasty; return p }},
		{host: id, plugin: func(p *preflight.Facts) *preflight.Facts { p.GOOS = nasty; return p }},
		{host: id, plugin: func(p *preflight.Facts) *preflight.Facts { p.GOAMD64 = nasty; return p }},
		{host: func(h *preflight.Facts) *preflight.Facts { h.CGO, h.Path = false, nasty; return h }, plugin: func(p *preflight.Facts) *preflight.Facts { p.CGO = false; return p }},
		{host: id, plugin: id, loaded: []*preflight.Facts{dup}},
		{host: id, plugin: func(p *preflight.Facts) *preflight.Facts {
			p.Trimpath, p.Race, p.GCFlags, p.Tags = true, true, nasty, []string{nasty}
			p.Packages["runtime"] = "1000000000000001"
			return p
		}},
		{host: id, plugin: func(p *preflight.Facts) *preflight.Facts {
			p.Modules = []preflight.Module{{Path: "example.com/lib", Version: nasty, Replace: &preflight.Module{Path: nasty}}}
			p.Packages["example.com/lib"] = "1000000000000004"
			return p
		}},
		{host: id, plugin: func(p *preflight.Facts) *preflight.Facts {
			p.Packages["example.com/app/api"] = "1000000000000003"
			p.Packages["example.com/shared\n"] = "1000000000000003"
			return p
		}, loaded: []*preflight.Facts{withPackages(pluginFacts("example.com/p1\n"), "example.com/shared\n", "2000000000000003")}},
	}
	seen := map[string]bool{}
	for i, c := range cases {
		v := preflight.Check(c.host(hostFacts()), c.plugin(pluginFacts("example.com/v1")), c.loaded)
		if v.OK {
			t.Errorf("case %d passed; each case must be refused", i)
		}
		for _, p := range v.Problems {
			seen[p.Reason] = true
		}
		data, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var anyJSON any
		if err := json.Unmarshal(data, &anyJSON); err != nil {
			t.Fatal(err)
		}
		if s := findBreak(anyJSON); s != "" {
			t.Errorf("case %d: a JSON value holds a line break: %q", i, s)
		}
		if strings.ContainsAny(v.Error(), "\r\n") {
			t.Errorf("case %d: Error() holds a line break: %q", i, v.Error())
		}
	}
	for _, r := range preflight.Reasons {
		if !seen[r] {
			t.Errorf("no case produces reason %s; add one", r)
		}
	}
}

func findBreak(v any) string {
	switch x := v.(type) {
	case string:
		if strings.ContainsAny(x, "\r\n") {
			return x
		}
	case []any:
		for _, e := range x {
			if s := findBreak(e); s != "" {
				return s
			}
		}
	case map[string]any:
		for k, e := range x {
			if s := findBreak(k); s != "" {
				return s
			}
			if s := findBreak(e); s != "" {
				return s
			}
		}
	}
	return ""
}

// TestRealBuildsOneProblemPerCause: real builds that differ in one setting or module get one
// Problem, naming that cause and the side to rebuild.
func TestRealBuildsOneProblemPerCause(t *testing.T) {
	if testing.Short() {
		t.Skip("builds plugins; skipped with -short")
	}
	tests := []struct {
		plugin, cause, rebuild, message string
	}{
		{"a-trimpath.so", preflight.CauseTrimpath, preflight.RebuildHost, "was built without -trimpath and the plugin with it"},
		{"a-race.so", preflight.CauseRace, preflight.RebuildPlugin, "rebuild the plugin without -race"},
		{"a-gcflags-shared.so", preflight.CauseGCFlags, preflight.RebuildPlugin, "rebuild the plugin without -gcflags"},
		{"a-dep-v1.1.0.so", preflight.CauseModule, preflight.RebuildPlugin, "module example.test/dep is v1.0.0 => ../dep/v1 (devel) in the host"},
	}
	host := factsOf(t, "host")
	for _, tt := range tests {
		t.Run(tt.plugin, func(t *testing.T) {
			v := preflight.Check(host, factsOf(t, tt.plugin), nil)
			if len(v.Problems) != 1 {
				t.Fatalf("%d problems, want one: %s", len(v.Problems), v.Error())
			}
			p := v.Problems[0]
			if p.Reason != preflight.PackageHashMismatch || p.Cause != tt.cause || p.Rebuild != tt.rebuild || !strings.Contains(p.Message, tt.message) || len(p.Packages) == 0 {
				t.Errorf("problem %+v\nwant cause %s, rebuild %s, message containing %q", p, tt.cause, tt.rebuild, tt.message)
			}
			t.Logf("%s: %s", tt.plugin, v.Error())
		})
	}
}

// TestDuplicateOfTheSameBuildSaysSo: the same build under another file (a plugin started by
// hand and its artifact) is named as such, not as another version under a reused path.
func TestDuplicateOfTheSameBuildSaysSo(t *testing.T) {
	loaded := pluginFacts("example.com/v1")
	loaded.Path = "/app/plugin.so"
	v := preflight.Check(hostFacts(), pluginFacts("example.com/v1"), []*preflight.Facts{loaded})
	if len(v.Problems) != 1 || v.Problems[0].Reason != preflight.DuplicatePluginPath || !strings.Contains(v.Problems[0].Message, "this is that build again") {
		t.Errorf("verdict %s; want one DuplicatePluginPath saying it is the same build", v.Error())
	}
	other := pluginFacts("example.com/v1")
	other.Packages["example.com/lib"] = "1000000000000004"
	v = preflight.Check(hostFacts(), other, []*preflight.Facts{loaded})
	if len(v.Problems) == 0 || strings.Contains(v.Problems[0].Message, "that build again") {
		t.Errorf("verdict %s; want a DuplicatePluginPath for another build", v.Error())
	}
}
