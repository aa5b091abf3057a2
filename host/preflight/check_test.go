package preflight_test

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/splice-dev/splice/host/preflight"
)

// Hand-made facts: a host and a plugin that agree on everything.
func hostFacts() *preflight.Facts {
	return &preflight.Facts{
		Kind: preflight.KindHost, Path: "/app/server", GoVersion: "go1.26.8",
		GOOS: "linux", GOARCH: "amd64", GOAMD64: "v1", CGO: true, BuildMode: "exe",
		MainModule: preflight.Module{Path: "example.com/app", Version: "(devel)"},
		Modules: []preflight.Module{
			{Path: "example.com/lib", Version: "v1.0.0", Sum: "h1:aaa="},
		},
		Packages: map[string]string{
			"runtime":                  "0000000000000001",
			"fmt":                      "0000000000000002",
			"example.com/app/api":      "0000000000000003",
			"example.com/lib":          "0000000000000004",
			"example.com/lib/internal": "0000000000000005",
			"main":                     "0000000000000006",
		},
	}
}

func pluginFacts(pluginPath string) *preflight.Facts {
	return &preflight.Facts{
		Kind: preflight.KindPlugin, Path: "/plugins/" + pluginPath + ".so", PluginPath: pluginPath,
		GoVersion: "go1.26.8", GOOS: "linux", GOARCH: "amd64", GOAMD64: "v1", CGO: true, BuildMode: "plugin",
		MainModule: preflight.Module{Path: "example.com/app", Version: "(devel)"},
		Modules: []preflight.Module{
			{Path: "example.com/lib", Version: "v1.0.0", Sum: "h1:aaa="},
		},
		Packages: map[string]string{
			"runtime":             "0000000000000001",
			"example.com/app/api": "0000000000000003",
			"example.com/lib":     "0000000000000004",
			pluginPath:            "00000000000000aa",
		},
	}
}

func TestCheck(t *testing.T) {
	type want struct {
		reason  string
		pkg     string // Problem.Package, when set
		message string // substring of Problem.Message
	}
	tests := []struct {
		name   string
		host   func(h *preflight.Facts) *preflight.Facts
		plugin func(p *preflight.Facts) *preflight.Facts
		loaded []*preflight.Facts
		want   []want // in order; empty means OK
	}{
		{name: "identical settings and shared packages"},
		{
			name: "package only in the plugin is not compared",
			plugin: func(p *preflight.Facts) *preflight.Facts {
				p.Packages["example.com/new"] = "00000000000000ff"
				return p
			},
		},
		{
			name: "other minor release: only the toolchain is reported",
			plugin: func(p *preflight.Facts) *preflight.Facts {
				p.GoVersion = "go1.27.3"
				p.Packages["runtime"] = "ffffffffffffffff"
				return p
			},
			want: []want{{reason: preflight.GoVersionMismatch, message: "rebuild the plugin with go1.26.8 (GOTOOLCHAIN=go1.26.8)"}},
		},
		{
			name:   "other patch release",
			plugin: func(p *preflight.Facts) *preflight.Facts { p.GoVersion = "go1.26.7"; return p },
			want:   []want{{reason: preflight.GoVersionMismatch, message: "another patch release"}},
		},
		{
			name:   "GOEXPERIMENT makes another toolchain",
			plugin: func(p *preflight.Facts) *preflight.Facts { p.GoVersion = "go1.26.8 X:nodwarf5"; return p },
			want:   []want{{reason: preflight.GoVersionMismatch, message: "GOTOOLCHAIN=go1.26.8"}},
		},
		{
			name:   "other architecture",
			plugin: func(p *preflight.Facts) *preflight.Facts { p.GOARCH, p.GOAMD64 = "arm64", ""; return p },
			want:   []want{{reason: preflight.PlatformMismatch, message: "GOOS=linux GOARCH=amd64"}},
		},
		{
			name:   "GOAMD64 level",
			plugin: func(p *preflight.Facts) *preflight.Facts { p.GOAMD64 = "v3"; return p },
			want:   []want{{reason: preflight.GOAMD64Mismatch, message: "GOAMD64=v1"}},
		},
		{
			name:   "unrecorded GOAMD64 is the default v1",
			plugin: func(p *preflight.Facts) *preflight.Facts { p.GOAMD64 = ""; return p },
		},
		{
			name: "GOAMD64 does not apply to arm64",
			host: func(h *preflight.Facts) *preflight.Facts { h.GOARCH, h.GOAMD64 = "arm64", ""; return h },
			plugin: func(p *preflight.Facts) *preflight.Facts {
				p.GOARCH, p.GOAMD64 = "arm64", "v3" // nonsense, but not ours to judge
				return p
			},
		},
		{
			name: "cgo disabled in the host",
			host: func(h *preflight.Facts) *preflight.Facts {
				h.CGO, h.Packages = false, map[string]string{}
				return h
			},
			want: []want{{reason: preflight.CgoDisabled, message: "plugin: not implemented"}},
		},
		{
			name:   "cgo disabled in the plugin",
			plugin: func(p *preflight.Facts) *preflight.Facts { p.CGO = false; return p },
			want:   []want{{reason: preflight.CgoDisabled, message: "rebuild it with CGO_ENABLED=1"}},
		},
		{
			name:   "not a plugin",
			plugin: func(p *preflight.Facts) *preflight.Facts { p.Kind, p.BuildMode = preflight.KindHost, "exe"; return p },
			want:   []want{{reason: preflight.NotAPlugin, message: "go build -buildmode=plugin"}},
		},
		{
			name: "a plugin given as the host",
			host: func(h *preflight.Facts) *preflight.Facts {
				h.Kind, h.BuildMode = preflight.KindPlugin, "plugin"
				return h
			},
			want: []want{{reason: preflight.NotAHost}},
		},
		{
			name:   "no host facts",
			host:   func(*preflight.Facts) *preflight.Facts { return nil },
			plugin: func(p *preflight.Facts) *preflight.Facts { p.GoVersion = "go1.1"; return p },
			want:   []want{{reason: preflight.MissingFacts, message: "for the host"}},
		},
		{
			name:   "no plugin facts",
			plugin: func(*preflight.Facts) *preflight.Facts { return nil },
			want:   []want{{reason: preflight.MissingFacts, message: "for the plugin"}},
		},
		{
			name: "dependency at another version names the module",
			plugin: func(p *preflight.Facts) *preflight.Facts {
				p.Modules = []preflight.Module{{Path: "example.com/lib", Version: "v1.1.0", Sum: "h1:bbb="}}
				p.Packages["example.com/lib"] = "0000000000000014"
				p.Packages["example.com/lib/internal"] = "0000000000000015"
				return p
			},
			want: []want{
				{reason: preflight.PackageHashMismatch, pkg: "example.com/lib", message: "module example.com/lib is v1.0.0 in the host /app/server and v1.1.0 in the plugin (2 packages differ: example.com/lib, example.com/lib/internal)"},
			},
		},
		{
			name: "replaced dependency names the replacement",
			plugin: func(p *preflight.Facts) *preflight.Facts {
				p.Modules = []preflight.Module{{Path: "example.com/lib", Version: "v1.0.0", Replace: &preflight.Module{Path: "../lib"}}}
				p.Packages["example.com/lib"] = "0000000000000014"
				return p
			},
			want: []want{{reason: preflight.PackageHashMismatch, pkg: "example.com/lib", message: "v1.0.0 => ../lib in the plugin"}},
		},
		{
			name: "-trimpath difference is named for a standard package",
			plugin: func(p *preflight.Facts) *preflight.Facts {
				p.Trimpath = true
				p.Packages["runtime"] = "1000000000000001"
				return p
			},
			want: []want{{reason: preflight.PackageHashMismatch, pkg: "runtime", message: "the host /app/server was built without -trimpath and the plugin with it"}},
		},
		{
			name: "-race, -gcflags and -tags differences are named",
			plugin: func(p *preflight.Facts) *preflight.Facts {
				p.Race, p.GCFlags, p.Tags = true, "all=-N -l", []string{"b", "a"}
				p.Packages["runtime"] = "1000000000000001"
				return p
			},
			want: []want{{reason: preflight.PackageHashMismatch, pkg: "runtime", message: `-race is off in the host /app/server and on in the plugin; -gcflags is "" in the host /app/server and "all=-N -l" in the plugin; -tags is "" in the host /app/server and "a,b" in the plugin`}},
		},
		{
			name: "no recorded difference points at the checkout directory",
			plugin: func(p *preflight.Facts) *preflight.Facts {
				p.Packages["example.com/app/api"] = "1000000000000003"
				return p
			},
			want: []want{{reason: preflight.PackageHashMismatch, pkg: "example.com/app/api", message: "same checkout directory"}},
		},
		{
			name: "package only in an already-loaded plugin names that plugin",
			plugin: func(p *preflight.Facts) *preflight.Facts {
				p.Packages["example.com/shared"] = "00000000000000b2"
				return p
			},
			loaded: []*preflight.Facts{withPackages(pluginFacts("example.com/p1"), "example.com/shared", "00000000000000b1")},
			want: []want{{reason: preflight.PackageHashMismatch, pkg: "example.com/shared",
				message: "already-loaded plugin example.com/p1 (/plugins/example.com/p1.so)"}},
		},
		{
			name: "the first loaded copy is the one compared",
			plugin: func(p *preflight.Facts) *preflight.Facts {
				p.Packages["example.com/shared"] = "00000000000000b1"
				return p
			},
			loaded: []*preflight.Facts{
				withPackages(pluginFacts("example.com/p1"), "example.com/shared", "00000000000000b1"),
				withPackages(pluginFacts("example.com/p2-failed"), "example.com/shared", "00000000000000b2"),
			},
		},
		{
			name: "a failed load's copy counts when it came first",
			plugin: func(p *preflight.Facts) *preflight.Facts {
				p.Packages["example.com/shared"] = "00000000000000b1"
				return p
			},
			loaded: []*preflight.Facts{
				withPackages(pluginFacts("example.com/p2-failed"), "example.com/shared", "00000000000000b2"),
				withPackages(pluginFacts("example.com/p1"), "example.com/shared", "00000000000000b1"),
			},
			want: []want{{reason: preflight.PackageHashMismatch, pkg: "example.com/shared", message: "example.com/p2-failed"}},
		},
		{
			name:   "the host's copy wins over a loaded plugin's",
			loaded: []*preflight.Facts{withPackages(pluginFacts("example.com/p1"), "example.com/app/api", "00000000000000ee")},
		},
		{
			name:   "nil entries in loaded are ignored",
			loaded: []*preflight.Facts{nil},
		},
		{
			name:   "duplicate plugin path; its own package is not reported again",
			loaded: []*preflight.Facts{withPackages(pluginFacts("example.com/v1"), "example.com/v1", "00000000000000ab")},
			want:   []want{{reason: preflight.DuplicatePluginPath, pkg: "example.com/v1", message: "already loaded in the process, from /plugins/example.com/v1.so"}},
		},
		{
			name: "every problem is reported, settings first",
			plugin: func(p *preflight.Facts) *preflight.Facts {
				p.GOAMD64, p.CGO = "v2", false
				p.Packages["fmt"] = "1000000000000002"
				return p
			},
			loaded: []*preflight.Facts{pluginFacts("example.com/v1")},
			want: []want{
				{reason: preflight.GOAMD64Mismatch},
				{reason: preflight.CgoDisabled},
				{reason: preflight.DuplicatePluginPath},
				{reason: preflight.PackageHashMismatch, pkg: "fmt"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, plugin := hostFacts(), pluginFacts("example.com/v1")
			if tt.host != nil {
				host = tt.host(host)
			}
			if tt.plugin != nil {
				plugin = tt.plugin(plugin)
			}
			v := preflight.Check(host, plugin, tt.loaded)

			if v.OK != (len(tt.want) == 0) {
				t.Fatalf("OK = %t, want %t; problems:\n%s", v.OK, len(tt.want) == 0, v.Error())
			}
			if len(v.Problems) != len(tt.want) {
				t.Fatalf("%d problems, want %d:\n%s", len(v.Problems), len(tt.want), v.Error())
			}
			for i, w := range tt.want {
				p := v.Problems[i]
				if p.Reason != w.reason || (w.pkg != "" && p.Package != w.pkg) || !strings.Contains(p.Message, w.message) {
					t.Errorf("problem %d = %+v\nwant reason %s, package %q, message containing %q", i, p, w.reason, w.pkg, w.message)
				}
				if p.Reason == preflight.PackageHashMismatch && (p.Want == "" || p.Got == "" || p.Want == p.Got) {
					t.Errorf("problem %d: want %q, got %q: both hashes must be given and differ", i, p.Want, p.Got)
				}
			}
		})
	}
}

func withPackages(f *preflight.Facts, kv ...string) *preflight.Facts {
	for i := 0; i+1 < len(kv); i += 2 {
		f.Packages[kv[i]] = kv[i+1]
	}
	return f
}

func TestVerdictError(t *testing.T) {
	ok := preflight.Check(hostFacts(), pluginFacts("example.com/v1"), nil)
	if ok.Error() != "" || ok.Err() != nil {
		t.Errorf("passing verdict: Error() = %q, Err() = %v; want empty and nil", ok.Error(), ok.Err())
	}

	p := pluginFacts("example.com/v1")
	p.GOAMD64 = "v3"
	p.Packages["runtime"] = "1000000000000001"
	p.Packages["example.com/lib"] = "1000000000000004"
	refused := preflight.Check(hostFacts(), p, nil)
	// One line: the problems joined by "; ", each "Reason: message"; the two differing
	// packages, for one cause, are one problem.
	msg := refused.Error()
	if strings.ContainsAny(msg, "\r\n") || len(refused.Problems) != 2 {
		t.Fatalf("Error() = %q with %d problems, want one line and 2 problems", msg, len(refused.Problems))
	}
	if want := "GOAMD64Mismatch: " + refused.Problems[0].Message + "; PackageHashMismatch: " + refused.Problems[1].Message; msg != want {
		t.Errorf("Error() = %q, want %q", msg, want)
	}
	var v preflight.Verdict
	if err := refused.Err(); !errors.As(err, &v) || v.OK {
		t.Errorf("Err() = %v, want the refusing Verdict", err)
	}

	// The JSON form is what the agent reports; its field names are API.
	data, err := json.Marshal(refused)
	if err != nil {
		t.Fatal(err)
	}
	var decoded map[string]any
	if err := json.Unmarshal(data, &decoded); err != nil {
		t.Fatal(err)
	}
	problems, _ := decoded["problems"].([]any)
	if decoded["ok"] != false || len(problems) != 2 {
		t.Fatalf("JSON = %s", data)
	}
	first, _ := problems[1].(map[string]any)
	var keys []string
	for k := range first {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"cause", "got", "message", "package", "packages", "reason", "rebuild", "want"}; !slices.Equal(keys, want) {
		t.Errorf("problem JSON keys = %v, want %v", keys, want)
	}
}
