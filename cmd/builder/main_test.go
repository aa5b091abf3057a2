package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/splice-dev/splice/builder"
	"github.com/splice-dev/splice/examples/greeter/greeterbuild"
	"github.com/splice-dev/splice/host/preflight"
)

func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestBuildCommand builds the greeter's plugin v1 from this checkout (no push) and checks the
// contract with the controller: JSON on stdout, the same result (without the local path) in
// the termination message, and a failure JSON with exit status 1 when the build fails.
func TestBuildCommand(t *testing.T) {
	root, err := greeterbuild.FindModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	goVersion := strings.TrimPrefix(strings.TrimSpace(runtimeGoVersion(t)), "go")
	term := filepath.Join(t.TempDir(), "termination-log")
	out := t.TempDir()
	code, stdout, stderr := runCmd(t, "build", "--source", root, "--package", "./examples/greeter/plugins/v1",
		"--go-version", goVersion, "--output", out, "--build-key", "abc", "--termination-message-path", term)
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	var res builder.Result
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("stdout is not a result: %v\n%s", err, stdout)
	}
	if res.Path == "" || res.BuildKey != "abc" || !strings.Contains(stderr, "[5/7] go build") {
		t.Fatalf("result %+v, progress:\n%s", res, stderr)
	}
	msg, err := os.ReadFile(term)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := builder.ParseResult(string(msg))
	if err != nil {
		t.Fatalf("the termination message does not parse as a result: %v\n%s", err, msg)
	}
	if parsed.Path != "" || parsed.PluginPath != res.PluginPath {
		t.Fatalf("termination message %+v; want the result without the local path", parsed)
	}

	// The facts subcommand records the built plugin's facts in the preflight's format.
	factsFile := filepath.Join(t.TempDir(), "facts.json")
	if code, _, stderr := runCmd(t, "facts", res.Path, "-o", factsFile); code != exitOK {
		t.Fatalf("facts: exit %d\n%s", code, stderr)
	}
	facts, err := preflight.ReadFacts(factsFile)
	if err != nil || facts.PluginPath != res.PluginPath {
		t.Fatalf("recorded facts %+v, %v", facts, err)
	}

	// A failed build: exit 1, the failure with its reason in the termination message.
	code, _, stderr = runCmd(t, "build", "--source", root, "--package", "./examples/greeter/plugins/v1",
		"--go-version", "1.0.0", "--termination-message-path", term)
	if code != exitFailed || !strings.Contains(stderr, "ToolchainMismatch") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	msg, err = os.ReadFile(term)
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := builder.ParseFailure(string(msg)); !ok || f.Reason != builder.ReasonToolchainMismatch {
		t.Fatalf("termination message %q; want a ToolchainMismatch failure", msg)
	}
}

// TestLocalBuildDefaultsAndNamesFlags: on the command line --go-version defaults to the go on
// PATH, and errors name the builder's flags, not the Build resource's fields.
func TestLocalBuildDefaultsAndNamesFlags(t *testing.T) {
	root, err := greeterbuild.FindModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	goVersion := strings.TrimSpace(runtimeGoVersion(t))
	code, stdout, stderr := runCmd(t, "build", "--source", root, "--package", "./examples/greeter/plugins/v1", "--output", t.TempDir())
	if code != exitOK {
		t.Fatalf("build without --go-version: exit %d\n%s", code, stderr)
	}
	var res builder.Result
	if err := json.Unmarshal([]byte(stdout), &res); err != nil || res.GoVersion != goVersion {
		t.Fatalf("result %+v (%v); want it built by %s", res, err, goVersion)
	}
	if !strings.Contains(stderr, "the go on PATH") {
		t.Errorf("progress does not say the toolchain is the go on PATH:\n%s", stderr)
	}

	code, _, stderr = runCmd(t, "build", "--source", root, "--package", "./examples/greeter/plugins/v1", "--api-version", "2.0.0")
	if code != exitFailed || !strings.Contains(stderr, "--api-version is 2.0.0") || strings.Contains(stderr, "spec.") {
		t.Fatalf("exit %d, stderr:\n%s\nwant exit %d naming --api-version and no spec field", code, stderr, exitFailed)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"build", "--package", "./p", "--go-version", "1.26.8"},
		{"build", "--no-such-flag"},
		{"facts"},
		{"install"},
	} {
		if code, _, stderr := runCmd(t, args...); code != exitUsage || !strings.Contains(stderr, "--help") {
			t.Errorf("%q: exit %d, stderr %q; want %d with a pointer to --help", args, code, stderr, exitUsage)
		}
	}
}

func TestInstall(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	if err := os.WriteFile(src, []byte("#!/bin/true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "splice-builder")
	if err := install(src, dst); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dst)
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("installed file %v, %v; want mode 0755", fi, err)
	}
	if err := install(src, filepath.Join(t.TempDir(), "missing-dir", "x")); err == nil || !strings.Contains(err.Error(), "mounted") {
		t.Fatalf("install into a missing directory: %v", err)
	}
}

func runtimeGoVersion(t *testing.T) string {
	t.Helper()
	out, err := execOutput("go", "env", "GOVERSION")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func execOutput(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).Output()
	return string(out), err
}
