package preflight_test

import (
	"bytes"
	"debug/elf"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/splice-dev/splice/host/preflight"
)

// elfOracle reads what ReadFacts must find, through debug/elf's own symbol
// decoding (DynamicSymbols/Symbols and Section.Data) instead of the
// package's in-place walker.
type elfOracle struct {
	dynHashes    map[string]string // go:link.pkghashbytes.* in .dynsym
	symtabHashes map[string]string // the same in .symtab, nil if stripped
	pluginPath   string            // go:link.thispluginpath, "" if absent
}

func readOracle(t *testing.T, path string) elfOracle {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var o elfOracle
	symbolBytes := func(s elf.Symbol) []byte {
		sec := f.Sections[s.Section]
		data, err := sec.Data()
		if err != nil {
			t.Fatal(err)
		}
		return data[s.Value-sec.Addr : s.Value-sec.Addr+s.Size]
	}
	hashes := func(syms []elf.Symbol) map[string]string {
		m := map[string]string{}
		for _, s := range syms {
			if pkg, ok := strings.CutPrefix(s.Name, "go:link.pkghashbytes."); ok {
				m[pkg] = hex.EncodeToString(symbolBytes(s))
			}
			if s.Name == "go:link.thispluginpath" {
				o.pluginPath = string(symbolBytes(s))
			}
		}
		return m
	}
	dyn, err := f.DynamicSymbols()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) { // static binaries have no .dynsym
		t.Fatal(err)
	}
	o.dynHashes = hashes(dyn)
	if syms, err := f.Symbols(); err == nil {
		o.symtabHashes = hashes(syms)
	}
	return o
}

func TestReadFactsOfBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("builds hosts and plugins; skipped with -short")
	}
	depV1 := preflight.Module{Path: "example.test/dep", Version: "v1.0.0", Replace: &preflight.Module{Path: "../dep/v1", Version: "(devel)"}}
	tests := []struct {
		artifact     string
		kind         string
		buildMode    string
		cgo          bool
		ldflags      string
		wantPackages []string // a few that must be there
		stripped     bool
	}{
		{artifact: "host", kind: preflight.KindHost, buildMode: "exe", cgo: true,
			wantPackages: []string{"runtime", "plugin", "main", "example.test/matrix/shared", "example.test/dep"}},
		{artifact: "host-stripped", kind: preflight.KindHost, buildMode: "exe", cgo: true, ldflags: "-s -w", stripped: true,
			wantPackages: []string{"runtime", "plugin", "main", "example.test/matrix/shared", "example.test/dep"}},
		{artifact: "host-nocgo", kind: preflight.KindHost, buildMode: "exe", cgo: false},
		{artifact: "a.so", kind: preflight.KindPlugin, buildMode: "plugin", cgo: true,
			wantPackages: []string{"runtime", "example.test/matrix/shared", "example.test/dep", "example.test/matrix/plugins/a"}},
	}
	for _, tt := range tests {
		t.Run(tt.artifact, func(t *testing.T) {
			path := build(t, tt.artifact)
			f, err := preflight.ReadFacts(path)
			if err != nil {
				t.Fatal(err)
			}
			if f.Kind != tt.kind || f.BuildMode != tt.buildMode || f.CGO != tt.cgo || f.LDFlags != tt.ldflags || f.Path != path {
				t.Errorf("kind %q, buildmode %q, cgo %t, ldflags %q, path %q; want %q, %q, %t, %q, %q",
					f.Kind, f.BuildMode, f.CGO, f.LDFlags, f.Path, tt.kind, tt.buildMode, tt.cgo, tt.ldflags, path)
			}
			if f.GoVersion != runtime.Version() || f.GOOS != runtime.GOOS || f.GOARCH != runtime.GOARCH {
				t.Errorf("toolchain %s %s/%s, want %s %s/%s", f.GoVersion, f.GOOS, f.GOARCH, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			}
			if runtime.GOARCH == "amd64" && f.GOAMD64 != "v1" {
				t.Errorf("GOAMD64 = %q, want v1 (pinned by the test build)", f.GOAMD64)
			}
			if f.MainModule.Path != "example.test/matrix" || !slices.ContainsFunc(f.Modules, func(m preflight.Module) bool { return reflect.DeepEqual(m, depV1) }) {
				t.Errorf("main module %+v, modules %+v; want example.test/matrix and %+v", f.MainModule, f.Modules, depV1)
			}
			for _, pkg := range tt.wantPackages {
				if _, ok := f.Packages[pkg]; !ok {
					t.Errorf("package %s missing from %d packages", pkg, len(f.Packages))
				}
			}

			o := readOracle(t, path)
			if !reflect.DeepEqual(f.Packages, o.dynHashes) {
				t.Errorf("packages differ from debug/elf's reading of .dynsym:\n got %v\nwant %v", f.Packages, o.dynHashes)
			}
			if tt.stripped != (o.symtabHashes == nil) {
				t.Errorf("stripped = %t, but .symtab present = %t", tt.stripped, o.symtabHashes != nil)
			}
			if o.symtabHashes != nil && !reflect.DeepEqual(o.symtabHashes, o.dynHashes) {
				t.Errorf(".symtab and .dynsym disagree on the hashes")
			}
			if tt.kind == preflight.KindPlugin && f.PluginPath != o.pluginPath {
				t.Errorf("plugin path %q, linker recorded %q", f.PluginPath, o.pluginPath)
			}
		})
	}
}

// A host stripped with -s -w keeps .dynsym (the dynamic linker needs it),
// so its facts are read directly; a binary without the hashes in .dynsym
// needs a facts file recorded at build time.
func TestReadFactsStripped(t *testing.T) {
	if testing.Short() {
		t.Skip("builds hosts; skipped with -short")
	}
	unstripped := factsOf(t, "host")
	factsFile := filepath.Join(t.TempDir(), "host.facts.json")
	if err := unstripped.WriteFile(factsFile); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		wantErr string // substring; empty means the packages must equal the unstripped host's
	}{
		{name: "host stripped with -s -w", path: build(t, "host-stripped")},
		{name: "facts file recorded before stripping", path: factsFile},
		{name: "stripped binary without the hashes", path: build(t, "nopluginhost-stripped"),
			wantErr: "`splice facts BINARY -o FILE`"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := preflight.ReadFacts(tt.path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), tt.path) {
					t.Fatalf("ReadFacts error = %v, want one naming %s and containing %q", err, tt.path, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(f.Packages) == 0 || !reflect.DeepEqual(f.Packages, unstripped.Packages) {
				t.Errorf("packages differ from the unstripped host's:\n got %v\nwant %v", f.Packages, unstripped.Packages)
			}
			if v := preflight.Check(f, factsOf(t, "a.so"), nil); !v.OK {
				t.Errorf("plugin a refused:\n%s", v.Error())
			}
		})
	}
}

func TestPluginPath(t *testing.T) {
	if testing.Short() {
		t.Skip("builds plugins; skipped with -short")
	}
	tests := []struct {
		artifact string
		want     string // exact, or a prefix ending in "-"
	}{
		{"a.so", "example.test/matrix/plugins/a"},
		{"a-stripped.so", "example.test/matrix/plugins/a"},
		{"a-unnamed.so", "plugin/unnamed-"},
		{"a-unnamed-stripped.so", "plugin/unnamed-"},
		{"a-custom-path.so", "example.test/custom/path"},
		{"a-custom-path-stripped.so", "example.test/custom/stripped"},
	}
	for _, tt := range tests {
		t.Run(tt.artifact, func(t *testing.T) {
			f := factsOf(t, tt.artifact)
			ok := f.PluginPath == tt.want || (strings.HasSuffix(tt.want, "-") && strings.HasPrefix(f.PluginPath, tt.want) && len(f.PluginPath) == len(tt.want)+40)
			if !ok {
				t.Errorf("PluginPath = %q, want %q", f.PluginPath, tt.want)
			}
			if _, ok := f.Packages[f.PluginPath]; !ok {
				t.Errorf("no package hash under the plugin path %q", f.PluginPath)
			}
			if o := readOracle(t, build(t, tt.artifact)); o.pluginPath != "" && o.pluginPath != f.PluginPath {
				t.Errorf("PluginPath = %q, linker recorded %q", f.PluginPath, o.pluginPath)
			}
		})
	}
}

func TestFactsRoundTrip(t *testing.T) {
	handMade := hostFacts()
	handMade.Tags = []string{"netgo", "osusergo"}
	handMade.Trimpath, handMade.Race = true, true
	handMade.GCFlags, handMade.LDFlags = "all=-N -l", "-X main.version=1"
	handMade.Modules = append(handMade.Modules, preflight.Module{Path: "example.com/r", Version: "v0.1.0",
		Replace: &preflight.Module{Path: "example.com/fork", Version: "v0.1.1", Sum: "h1:ccc="}})

	tests := []struct {
		name  string
		facts func(t *testing.T) *preflight.Facts
	}{
		{"hand-made host", func(*testing.T) *preflight.Facts { return handMade }},
		{"hand-made plugin", func(*testing.T) *preflight.Facts { return pluginFacts("example.com/v1") }},
		{"built host", func(t *testing.T) *preflight.Facts { return skipShort(t, "host") }},
		{"built plugin", func(t *testing.T) *preflight.Facts { return skipShort(t, "a.so") }},
		{"built CGO_ENABLED=0 host", func(t *testing.T) *preflight.Facts { return skipShort(t, "host-nocgo") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.facts(t)
			file := filepath.Join(t.TempDir(), "facts.json")
			if err := in.WriteFile(file); err != nil {
				t.Fatal(err)
			}
			out, err := preflight.ReadFacts(file)
			if err != nil {
				t.Fatal(err)
			}
			if out.Path != file {
				t.Errorf("Path = %q, want the facts file %q", out.Path, file)
			}
			want := *in
			want.Path = file
			if !reflect.DeepEqual(*out, want) {
				t.Errorf("round trip changed the facts:\n got %+v\nwant %+v", *out, want)
			}
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			for _, key := range []string{`"kind"`, `"goVersion"`, `"goos"`, `"goarch"`, `"cgo"`, `"mainModule"`, `"packages"`} {
				if !bytes.Contains(data, []byte(key)) {
					t.Errorf("facts file lacks key %s:\n%s", key, data)
				}
			}
		})
	}
}

func skipShort(t *testing.T, artifact string) *preflight.Facts {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a binary; skipped with -short")
	}
	return factsOf(t, artifact)
}

func TestReadFactsRejects(t *testing.T) {
	valid := `{"kind":"host","goVersion":"go1.26.8","goos":"linux","goarch":"amd64","cgo":true,"packages":{"runtime":"0000000000000001"}}`
	tests := []struct {
		name    string
		content string // file contents; "" with missing=true means no file
		missing bool
		size    int64 // extend the file with zeros to this size
		wantErr string
	}{
		{name: "no such file", missing: true, wantErr: "no such file"},
		{name: "empty file", content: "", wantErr: "neither an ELF binary nor a JSON facts file"},
		{name: "text", content: "#!/bin/sh\necho hi\n", wantErr: "neither an ELF binary nor a JSON facts file"},
		{name: "truncated ELF", content: "\x7fELF\x02\x01\x01", wantErr: "read build information of"},
		{name: "bad JSON", content: `{"kind": "host",`, wantErr: "decode facts file"},
		{name: "wrong kind", content: strings.Replace(valid, `"host"`, `"library"`, 1), wantErr: `kind is "library"`},
		{name: "no Go version", content: strings.Replace(valid, `"go1.26.8"`, `""`, 1), wantErr: "goVersion"},
		{name: "no platform", content: strings.Replace(valid, `"linux"`, `""`, 1), wantErr: "goos or goarch is empty"},
		{name: "bad hash", content: strings.Replace(valid, `0000000000000001`, `xyz`, 1), wantErr: `package "runtime" has hash "xyz"`},
		{name: "cgo without packages", content: strings.Replace(valid, `"runtime":"0000000000000001"`, ``, 1), wantErr: "packages is empty"},
		{name: "plugin without plugin path", content: strings.Replace(valid, `"host"`, `"plugin"`, 1), wantErr: "pluginPath is empty"},
		{name: "oversized", content: "{", size: 17 << 20, wantErr: "larger than"},
		{name: "valid", content: valid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "facts")
			if !tt.missing {
				if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
					t.Fatal(err)
				}
				if tt.size > 0 {
					if err := os.Truncate(path, tt.size); err != nil {
						t.Fatal(err)
					}
				}
			}
			f, err := preflight.ReadFacts(path)
			if tt.wantErr == "" {
				if err != nil || f == nil {
					t.Fatalf("ReadFacts = %v, %v; want facts", f, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), path) {
				t.Fatalf("ReadFacts error = %v; want one naming %s and containing %q", err, path, tt.wantErr)
			}
		})
	}
}

// BenchmarkReadFacts measures what the host pays before every plugin.Open.
func BenchmarkReadFacts(b *testing.B) {
	hostFile := filepath.Join(b.TempDir(), "host.facts.json")
	if err := factsOf(b, "host").WriteFile(hostFile); err != nil {
		b.Fatal(err)
	}
	for _, bm := range []struct{ name, path string }{
		{"host", build(b, "host")},
		{"host-stripped", build(b, "host-stripped")},
		{"host-facts-file", hostFile},
		{"plugin", build(b, "a.so")},
	} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := preflight.ReadFacts(bm.path); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCheck measures the comparison alone, against two loaded plugins.
func BenchmarkCheck(b *testing.B) {
	host, plugin := factsOf(b, "host"), factsOf(b, "ps3.so")
	loaded := []*preflight.Facts{factsOf(b, "a.so"), factsOf(b, "ps1.so")}
	b.ReportAllocs()
	for b.Loop() {
		if v := preflight.Check(host, plugin, loaded); !v.OK {
			b.Fatal(v.Error())
		}
	}
}
