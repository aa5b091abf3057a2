package main_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

// TestInitSkeletonBuildsAndServes runs `splice init` with the worktree's host module, then the
// skeleton's own tests (a real host and plugins, built and swapped), and checks that the
// skeleton's module graph holds no Kubernetes module.
func TestInitSkeletonBuildsAndServes(t *testing.T) {
	hostDir, err := filepath.Abs("../../host")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "my-service")
	status, stdout, stderr := runCLI(t, "init", dir, "--module", "example.com/team/myservice", "--host-module-dir", hostDir)
	if status != 0 {
		t.Fatalf("splice init: exit %d\n%s%s", status, stdout, stderr)
	}
	for _, f := range []string{"go.mod", "go.sum", "Makefile", "contract/contract.go", "cmd/host/main.go", "cmd/host/host_test.go",
		"plugins/v1/main.go", "plugins/v2/main.go", "deploy/compilerversion.yaml", "deploy/deployment.yaml"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("skeleton lacks %s: %v", f, err)
		}
	}
	deploy, _ := os.ReadFile(filepath.Join(dir, "deploy/deployment.yaml"))
	if !strings.Contains(string(deploy), `splice.dev/inject: "true"`) || !strings.Contains(string(deploy), "-shared=/var/run/splice") {
		t.Errorf("the Deployment is not opted in:\n%s", deploy)
	}

	var mod struct {
		Require []struct{ Path string }
		Replace []struct{ New struct{ Path string } }
	}
	if err := json.Unmarshal(goIn(t, dir, "mod", "edit", "-json"), &mod); err != nil {
		t.Fatal(err)
	}
	if len(mod.Replace) != 1 || mod.Replace[0].New.Path != hostDir {
		t.Errorf("go.mod replaces %+v, want the host module by %s", mod.Replace, hostDir)
	}
	all := string(goIn(t, dir, "list", "-m", "all"))
	for _, m := range strings.Fields(all) {
		if strings.HasPrefix(m, "k8s.io/") || strings.HasPrefix(m, "sigs.k8s.io/") {
			t.Errorf("the skeleton's module graph holds %s:\n%s", m, all)
		}
	}

	out := goIn(t, dir, "test", "./...", "-count=1")
	if !strings.Contains(string(out), "ok  \texample.com/team/myservice/cmd/host") {
		t.Errorf("the skeleton's test did not run:\n%s", out)
	}
}

func TestInitRefusesNonEmptyDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "keep"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	status, _, stderr := runCLI(t, "init", dir, "--module", "example.com/x")
	if status != 2 || !strings.Contains(stderr, "is not empty") {
		t.Fatalf("init into a non-empty directory: exit %d, %q", status, stderr)
	}
	entries, _ := os.ReadDir(dir)
	siblings, _ := os.ReadDir(filepath.Dir(dir))
	if len(entries) != 1 || len(siblings) != 1 {
		t.Fatalf("init left files behind: %v in the directory, %v beside it", entries, siblings)
	}
	if status, _, stderr := runCLI(t, "init", filepath.Join(dir, "new")); status != 2 || !strings.Contains(stderr, "--module is required") {
		t.Fatalf("init without --module: exit %d, %q", status, stderr)
	}
	// Without --host-module-dir the release is required.
	rel := filepath.Join(t.TempDir(), "rel")
	if status, _, stderr := runCLI(t, "init", rel, "--module", "example.com/rel"); status != 0 {
		t.Fatalf("init: exit %d, %s", status, stderr)
	}
	gomod, _ := os.ReadFile(filepath.Join(rel, "go.mod"))
	if !strings.Contains(string(gomod), "require github.com/splice-dev/splice/host v") || strings.Contains(string(gomod), "replace") {
		t.Fatalf("go.mod without --host-module-dir:\n%s", gomod)
	}
}

// goIn runs the go command in dir, outside any workspace, and returns its standard output.
func goIn(t *testing.T, dir string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=1")
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("go %s in %s: %v\n%s%s", strings.Join(args, " "), dir, err, out, stderr)
	}
	return out
}

// TestInitManifests decodes the skeleton's manifests strictly into the API types: the
// CompilerVersion pins this toolchain and selects the Deployment's pods, which opt in.
func TestInitManifests(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Quote_Svc")
	if status, _, stderr := runCLI(t, "init", dir, "--module", "example.com/q"); status != 0 {
		t.Fatalf("init: exit %d, %s", status, stderr)
	}
	var cv splicev1.CompilerVersion
	raw, _ := os.ReadFile(filepath.Join(dir, "deploy/compilerversion.yaml"))
	if err := yaml.UnmarshalStrict(raw, &cv); err != nil {
		t.Fatalf("CompilerVersion: %v\n%s", err, raw)
	}
	var d appsv1.Deployment
	raw, _ = os.ReadFile(filepath.Join(dir, "deploy/deployment.yaml"))
	if err := yaml.UnmarshalStrict(raw, &d); err != nil {
		t.Fatalf("Deployment: %v\n%s", err, raw)
	}
	if cv.Name != "quote-svc" || d.Name != "quote-svc" {
		t.Errorf("names %q and %q, want quote-svc (the directory as a DNS label)", cv.Name, d.Name)
	}
	if want := strings.TrimPrefix(runtime.Version(), "go"); cv.Spec.GoVersion != want {
		t.Errorf("goVersion %q, want this toolchain's %q", cv.Spec.GoVersion, want)
	}
	podLabels := labels.Set(d.Spec.Template.Labels)
	if sel := labels.SelectorFromSet(cv.Spec.Selector.MatchLabels); !sel.Matches(podLabels) {
		t.Errorf("the CompilerVersion's selector %v does not select the Deployment's pods %v", sel, podLabels)
	}
	if podLabels[splicev1.LabelInject] != "true" {
		t.Errorf("pods not opted in: labels %v", podLabels)
	}
}
