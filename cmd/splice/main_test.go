package main_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/splice-dev/splice/host/preflight/preflighttest"
)

// The CLI is tested as users run it: the built binary, its exit status and
// its output, against real hosts and plugins.
var (
	builder *preflighttest.Builder
	workDir string
	splice  string // the built CLI
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	var err error
	workDir, err = os.MkdirTemp("", "splice-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "create build directory:", err)
		return 2
	}
	defer os.RemoveAll(workDir)
	testdata, err := filepath.Abs("../../host/preflight/testdata")
	if err != nil {
		fmt.Fprintln(os.Stderr, "locate testdata:", err)
		return 2
	}
	builder = preflighttest.New(workDir, testdata)
	return m.Run()
}

var artifacts = map[string]preflighttest.Spec{
	"host":               {Pkg: []string{"./host"}},
	"a.so":               {Pkg: []string{"./plugins/a"}, Plugin: true},
	"a-tag-adds-file.so": {Pkg: []string{"./plugins/a"}, Plugin: true, Flags: []string{"-tags=splicetag"}},
}

func build(t *testing.T, name string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a host, plugins and the CLI; skipped with -short")
	}
	path, err := builder.Build(name, artifacts[name])
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// buildCLI builds this command once.
func buildCLI(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the CLI; skipped with -short")
	}
	if splice == "" {
		out := filepath.Join(workDir, "splice")
		if err := preflighttest.Go(".", nil, "build", "-o", out, "."); err != nil {
			t.Fatal(err)
		}
		splice = out
	}
	return splice
}

// runCLI runs the CLI and returns its exit status, stdout and stderr.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(buildCLI(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, stdout.String(), stderr.String()
	case errors.As(err, &exit):
		return exit.ExitCode(), stdout.String(), stderr.String()
	default:
		t.Fatalf("run splice %v: %v", args, err)
		return -1, "", ""
	}
}

func TestExitStatus(t *testing.T) {
	host, good, bad := build(t, "host"), build(t, "a.so"), build(t, "a-tag-adds-file.so")
	factsFile := filepath.Join(t.TempDir(), "host.facts.json")
	missing := filepath.Join(t.TempDir(), "missing.so")

	tests := []struct {
		name       string
		args       []string
		setup      func(t *testing.T) // runs first
		wantStatus int
		wantStdout []string // substrings
		wantStderr []string
	}{
		{name: "no command", args: nil, wantStatus: 2, wantStderr: []string{"missing command", "--help"}},
		{name: "unknown command", args: []string{"deploy"}, wantStatus: 2, wantStderr: []string{"unknown command"}},
		{name: "preflight without a plugin", args: []string{"preflight", host}, wantStatus: 2, wantStderr: []string{"requires at least 2 arg(s)", "splice preflight --help"}},
		{name: "unknown flag", args: []string{"preflight", "--bogus", host, good}, wantStatus: 2, wantStderr: []string{"unknown flag: --bogus"}},
		{name: "bad output format", args: []string{"preflight", "-o", "yaml", host, good}, wantStatus: 2, wantStderr: []string{`-o "yaml": want text or json`}},
		{name: "plugin file missing", args: []string{"preflight", host, missing}, wantStatus: 2, wantStderr: []string{missing, "no such file"}},
		{name: "loadable plugin", args: []string{"preflight", host, good}, wantStatus: 0,
			wantStdout: []string{"ok: " + host + " can load " + good}},
		{name: "mismatched package", args: []string{"preflight", host, bad}, wantStatus: 1,
			wantStdout: []string{"refused:", "PackageHashMismatch: -tags is \"\" in the host", `and "splicetag" in the plugin (1 package differs: example.test/matrix/shared); rebuild the plugin without -tags`}},
		{name: "already loaded", args: []string{"preflight", host, good, good}, wantStatus: 1,
			wantStdout: []string{"DuplicatePluginPath: plugin path example.test/matrix/plugins/a is already loaded"}},
		{name: "a plugin as the host", args: []string{"preflight", good, good}, wantStatus: 1,
			wantStdout: []string{"NotAHost"}},
		{name: "facts to a file", args: []string{"facts", host, "-o", factsFile}, wantStatus: 0},
		{name: "facts file as the host", args: []string{"preflight", factsFile, good}, wantStatus: 0,
			setup:      func(t *testing.T) { requireFile(t, factsFile) },
			wantStdout: []string{"ok: "}},
		{name: "facts to stdout", args: []string{"facts", good}, wantStatus: 0,
			wantStdout: []string{`"kind": "plugin"`, `"pluginPath": "example.test/matrix/plugins/a"`}},
		{name: "facts with two binaries", args: []string{"facts", host, good}, wantStatus: 2, wantStderr: []string{"accepts 1 arg(s), received 2"}},
		{name: "facts of a missing file", args: []string{"facts", missing}, wantStatus: 2, wantStderr: []string{missing}},
		{name: "facts into a missing directory", args: []string{"facts", host, "-o", filepath.Join(missing, "f.json")}, wantStatus: 2,
			wantStderr: []string{"write build facts"}},
	}
	// Sequential: "facts file as the host" reads what "facts to a file" wrote.
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.setup != nil {
				tt.setup(t)
			}
			status, stdout, stderr := runCLI(t, tt.args...)
			if status != tt.wantStatus {
				t.Errorf("exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", status, tt.wantStatus, stdout, stderr)
			}
			for _, s := range tt.wantStdout {
				if !strings.Contains(stdout, s) {
					t.Errorf("stdout lacks %q:\n%s", s, stdout)
				}
			}
			for _, s := range tt.wantStderr {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, stderr)
				}
			}
			if tt.wantStatus != 2 && stderr != "" {
				t.Errorf("stderr not empty:\n%s", stderr)
			}
		})
	}
}

func requireFile(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%s: %v (an earlier case should have written it)", path, err)
	}
}

func TestPreflightJSON(t *testing.T) {
	host, good, bad := build(t, "host"), build(t, "a.so"), build(t, "a-tag-adds-file.so")
	tests := []struct {
		name       string
		args       []string
		wantStatus int
		wantOK     bool
		wantPkg    string // package of the first problem
	}{
		{name: "loadable", args: []string{"preflight", "-o", "json", host, good}, wantStatus: 0, wantOK: true},
		{name: "refused", args: []string{"preflight", "-o", "json", host, bad}, wantStatus: 1, wantPkg: "example.test/matrix/shared"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, stdout, stderr := runCLI(t, tt.args...)
			if status != tt.wantStatus {
				t.Fatalf("exit status %d, want %d; stderr:\n%s", status, tt.wantStatus, stderr)
			}
			var res struct {
				Host, Plugin string
				OK           bool
				Problems     []struct{ Reason, Package, Want, Got, Message string }
			}
			if err := json.Unmarshal([]byte(stdout), &res); err != nil {
				t.Fatalf("stdout is not JSON: %v\n%s", err, stdout)
			}
			if res.OK != tt.wantOK || res.Host != host || res.Plugin != tt.args[len(tt.args)-1] {
				t.Errorf("result %+v", res)
			}
			if tt.wantPkg != "" && (len(res.Problems) == 0 || res.Problems[0].Package != tt.wantPkg || res.Problems[0].Want == "" || res.Problems[0].Message == "") {
				t.Errorf("problems %+v, want the first about package %s with hashes and a message", res.Problems, tt.wantPkg)
			}
		})
	}
}
