package host_test

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// allowedModules is everything an application's module graph may gain by depending on the
// host module: the module itself and logr. Kubernetes, the operator's dependencies and every
// other module stay out, so that linking the host library never raises a version of a package
// the application and its plugins share (the first rule of Go plugins: shared packages must be
// identical). Growing this list is a decision for the whole project, not for one change.
var allowedModules = []string{"github.com/splice-dev/splice/host", "github.com/go-logr/logr"}

// TestModuleDependencies fails if the host module requires, or any of its packages (tests
// included) links, a module outside allowedModules.
func TestModuleDependencies(t *testing.T) {
	var mod struct {
		Module  struct{ Path string }
		Require []struct{ Path, Version string }
		Replace []struct{ Old, New struct{ Path string } }
	}
	if err := json.Unmarshal(goCmd(t, "mod", "edit", "-json"), &mod); err != nil {
		t.Fatalf("go mod edit -json: %v", err)
	}
	if mod.Module.Path != allowedModules[0] {
		t.Fatalf("module path is %q, want %q: applications go get the host by that path", mod.Module.Path, allowedModules[0])
	}
	for _, r := range mod.Require {
		if !slices.Contains(allowedModules, r.Path) {
			t.Errorf("host/go.mod requires %s %s: the host module may depend only on %v", r.Path, r.Version, allowedModules)
		}
	}
	if len(mod.Replace) > 0 {
		t.Errorf("host/go.mod has replace directives %v: applications would not see them", mod.Replace)
	}
	out := goCmd(t, "list", "-deps", "-test", "-f", "{{with .Module}}{{.Path}}{{end}}", "./...")
	seen := map[string]bool{}
	for _, m := range strings.Fields(string(out)) {
		if !slices.Contains(allowedModules, m) && !seen[m] {
			seen[m] = true
			t.Errorf("a host package links module %s: the host module may link only %v", m, allowedModules)
		}
	}
}

func goCmd(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("go", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}
