package preflight_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/splice-dev/splice/host/preflight"
	"github.com/splice-dev/splice/host/preflight/preflighttest"
)

// builder builds every artifact of the package's tests once, lazily, into a
// directory that outlives single tests (several tests and the benchmark use
// the same host and plugins; each build costs seconds on this machine).
var builder *preflighttest.Builder

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "preflight-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "create build directory:", err)
		return 2
	}
	defer os.RemoveAll(dir)
	testdata, err := filepath.Abs("testdata")
	if err != nil {
		fmt.Fprintln(os.Stderr, "locate testdata:", err)
		return 2
	}
	builder = preflighttest.New(dir, testdata)
	return m.Run()
}

// Toolchains other than the running one, fetched by the go command from the
// module proxy on first use (GOTOOLCHAIN=<version>).
const (
	otherRelease = "go1.27.3"
	otherPatch   = "go1.26.7"
)

// artifacts are every host and plugin the tests build, by file name. All
// are built from the same sources (preflight/testdata) with the go command
// running the tests, and differ from "host" and "a.so" only as stated.
var artifacts = map[string]preflighttest.Spec{
	"host":                  {Pkg: []string{"./host"}},
	"host-stripped":         {Pkg: []string{"./host"}, Flags: []string{"-ldflags=-s -w"}},
	"host-nocgo":            {Pkg: []string{"./host"}, Env: []string{"CGO_ENABLED=0"}},
	"nopluginhost-stripped": {Pkg: []string{"./nopluginhost"}, Flags: []string{"-ldflags=-s -w"}},

	"a.so":                {Pkg: []string{"./plugins/a"}, Plugin: true},
	"a-again.so":          {Pkg: []string{"./plugins/a"}, Plugin: true},
	"a-go1.27.3.so":       {Pkg: []string{"./plugins/a"}, Plugin: true, Env: []string{"GOTOOLCHAIN=" + otherRelease}},
	"a-go1.26.7.so":       {Pkg: []string{"./plugins/a"}, Plugin: true, Env: []string{"GOTOOLCHAIN=" + otherPatch}},
	"a-trimpath.so":       {Pkg: []string{"./plugins/a"}, Plugin: true, Flags: []string{"-trimpath"}},
	"a-race.so":           {Pkg: []string{"./plugins/a"}, Plugin: true, Flags: []string{"-race"}},
	"a-gcflags-shared.so": {Pkg: []string{"./plugins/a"}, Plugin: true, Flags: []string{"-gcflags=example.test/matrix/shared=-N -l"}},
	"a-gcflags-own.so":    {Pkg: []string{"./plugins/a"}, Plugin: true, Flags: []string{"-gcflags=example.test/matrix/plugins/a=-N -l"}},
	"a-tag-adds-file.so":  {Pkg: []string{"./plugins/a"}, Plugin: true, Flags: []string{"-tags=splicetag"}},
	"a-tag-no-file.so":    {Pkg: []string{"./plugins/a"}, Plugin: true, Flags: []string{"-tags=nosuchfiletag"}},
	"a-dep-v1.1.0.so":     {Pkg: []string{"./plugins/a"}, Plugin: true, Flags: []string{"-modfile=go.depv2.mod"}},
	"a-other-checkout.so": {Pkg: []string{"./plugins/a"}, Plugin: true, Checkout: "src2"},
	"a-goamd64-v3.so":     {Pkg: []string{"./plugins/a"}, Plugin: true, Env: []string{"GOAMD64=v3"}},
	"a-stripped.so":       {Pkg: []string{"./plugins/a"}, Plugin: true, Flags: []string{"-ldflags=-s -w"}},
	"a-unnamed.so":        {Pkg: []string{"plugins/a/a.go"}, Plugin: true},
	"a-unnamed-stripped.so": {Pkg: []string{"plugins/a/a.go"}, Plugin: true,
		Flags: []string{"-ldflags=-s -w"}},
	"a-custom-path.so": {Pkg: []string{"./plugins/a"}, Plugin: true,
		Flags: []string{"-ldflags=-pluginpath=example.test/custom/path"}},
	"a-custom-path-stripped.so": {Pkg: []string{"./plugins/a"}, Plugin: true,
		Flags: []string{"-ldflags=-s -w -pluginpath=example.test/custom/stripped"}},

	"ps1.so":           {Pkg: []string{"./plugins/ps1"}, Plugin: true},
	"ps2-pstag.so":     {Pkg: []string{"./plugins/ps2"}, Plugin: true, Flags: []string{"-tags=pstag"}},
	"ps2-both-tags.so": {Pkg: []string{"./plugins/ps2"}, Plugin: true, Flags: []string{"-tags=splicetag,pstag"}},
	"ps3.so":           {Pkg: []string{"./plugins/ps3"}, Plugin: true},
}

// build returns the path of an artifact, building it on first use. It skips
// the test when the artifact needs a toolchain that cannot be fetched.
func build(tb testing.TB, name string) string {
	tb.Helper()
	spec, ok := artifacts[name]
	if !ok {
		tb.Fatalf("no artifact %q", name)
	}
	for _, e := range spec.Env {
		if v, ok := strings.CutPrefix(e, "GOTOOLCHAIN="); ok {
			requireToolchain(tb, v)
		}
	}
	path, err := builder.Build(name, spec)
	if err != nil {
		tb.Fatal(err)
	}
	return path
}

var toolchains sync.Map // version -> *toolchainResult

type toolchainResult struct {
	once sync.Once
	err  error
}

// requireToolchain fetches a Go toolchain through the go command (from the
// module proxy, ~76 MB once) and skips the test if that fails.
func requireToolchain(tb testing.TB, version string) {
	tb.Helper()
	v, _ := toolchains.LoadOrStore(version, &toolchainResult{})
	r := v.(*toolchainResult)
	r.once.Do(func() {
		r.err = preflighttest.Go(".", []string{"GOTOOLCHAIN=" + version}, "version")
	})
	if r.err != nil {
		tb.Skipf("toolchain %s could not be fetched from the module proxy, so this case cannot be built: %v", version, r.err)
	}
}

var factsCache sync.Map // artifact name -> *preflight.Facts

// factsOf reads the facts of an artifact once.
func factsOf(tb testing.TB, name string) *preflight.Facts {
	tb.Helper()
	if f, ok := factsCache.Load(name); ok {
		return f.(*preflight.Facts)
	}
	f, err := preflight.ReadFacts(build(tb, name))
	if err != nil {
		tb.Fatal(err)
	}
	factsCache.Store(name, f)
	return f
}
