package argocd

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the argocd-cm snippet of docs/argocd.md from health.lua")

const (
	// customizations is laid out as Argo CD's resource_customizations: <group>/<kind>/health.lua,
	// health_test.yaml and testdata/.
	customizations = "config/argocd/resource_customizations"
	// compilerVersion is the directory of the one script Splice ships.
	compilerVersion = customizations + "/splice.dev/CompilerVersion"
	docsPage        = "docs/argocd.md"
	// configMapKey is the argocd-cm key of a health check for group splice.dev, kind CompilerVersion.
	configMapKey = "resource.customizations.health.splice.dev_CompilerVersion"
)

// healthTests is a health_test.yaml, in Argo CD's format.
type healthTests struct {
	Tests []healthTest `json:"tests"`
}

type healthTest struct {
	HealthStatus healthStatus `json:"healthStatus"`
	InputPath    string       `json:"inputPath"`
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// scriptDirs returns every directory under customizations that holds a health.lua, as Argo CD's
// own test walks its tree, so that a script added for another kind is tested too. It fails when
// CompilerVersion's is not among them: a walk that finds nothing would pass every test.
func scriptDirs(t *testing.T, root string) []string {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(filepath.Join(root, customizations), func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == "health.lua" {
			dirs = append(dirs, filepath.Dir(path))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(dirs, filepath.Join(root, compilerVersion)) {
		t.Fatalf("no %s/health.lua among the scripts found: %v", compilerVersion, dirs)
	}
	return dirs
}

// readHealthTests reads a script's health_test.yaml strictly: a misspelled key would otherwise
// leave a case whose expectation is empty.
func readHealthTests(t *testing.T, dir string) healthTests {
	t.Helper()
	var ht healthTests
	if err := yaml.UnmarshalStrict([]byte(readFile(t, filepath.Join(dir, "health_test.yaml"))), &ht); err != nil {
		t.Fatalf("%s/health_test.yaml: %v", dir, err)
	}
	if len(ht.Tests) == 0 {
		t.Fatalf("%s/health_test.yaml lists no test", dir)
	}
	for i, tc := range ht.Tests {
		if tc.InputPath == "" || !validStatuses[tc.HealthStatus.Status] {
			t.Fatalf("%s/health_test.yaml: test %d needs an inputPath and one of Argo CD's health statuses, has %+v", dir, i, tc)
		}
	}
	return ht
}

// loadObject reads a testdata file into the object Argo CD hands the script: decoded as the
// cluster cache decodes it (whole numbers become int64). It must be a CompilerVersion that decodes
// into the API's Go type without unknown fields, so that a misspelled status field cannot make a
// case pass by leaving the field out.
func loadObject(t *testing.T, path string) map[string]any {
	t.Helper()
	js, err := yaml.YAMLToJSON([]byte(readFile(t, path)))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var u unstructured.Unstructured
	if err := u.UnmarshalJSON(js); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if gvk := u.GroupVersionKind(); gvk != splicev1.GroupVersion.WithKind("CompilerVersion") {
		t.Fatalf("%s is a %s, not a CompilerVersion", path, gvk)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	var cv splicev1.CompilerVersion
	if err := dec.Decode(&cv); err != nil {
		t.Fatalf("%s does not decode into a CompilerVersion: %v", path, err)
	}
	return u.Object
}

// TestHealthChecks runs every case of every health_test.yaml, with the libraries Argo CD gives
// an argocd-cm script and with all of them: the script must not depend on which.
func TestHealthChecks(t *testing.T) {
	root := testenv.RepoRoot()
	for _, dir := range scriptDirs(t, root) {
		script := readFile(t, filepath.Join(dir, "health.lua"))
		rel, _ := filepath.Rel(filepath.Join(root, customizations), dir)
		for _, tc := range readHealthTests(t, dir).Tests {
			t.Run(filepath.Join(rel, tc.InputPath), func(t *testing.T) {
				obj := loadObject(t, filepath.Join(dir, tc.InputPath))
				for _, mode := range []libs{argocdCM, openLibs} {
					got, err := runHealth(script, obj, mode)
					if err != nil {
						t.Errorf("%s: the script failed: %v", mode, err)
						continue
					}
					if got != tc.HealthStatus {
						t.Errorf("%s:\n got %s %q\nwant %s %q", mode, got.Status, got.Message, tc.HealthStatus.Status, tc.HealthStatus.Message)
					}
				}
			})
		}
	}
}

// TestHealthTestsListEveryInput keeps health_test.yaml and testdata/ the same set: a testdata
// file no case names tests nothing, and a case whose file is gone fails only when it runs.
func TestHealthTestsListEveryInput(t *testing.T) {
	root := testenv.RepoRoot()
	for _, dir := range scriptDirs(t, root) {
		listed := map[string]bool{}
		for _, tc := range readHealthTests(t, dir).Tests {
			p := filepath.ToSlash(filepath.Clean(tc.InputPath))
			if listed[p] {
				t.Errorf("%s/health_test.yaml lists %s twice", dir, p)
			}
			listed[p] = true
		}
		present := map[string]bool{}
		err := filepath.WalkDir(filepath.Join(dir, "testdata"), func(path string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				rel, _ := filepath.Rel(dir, path)
				present[filepath.ToSlash(rel)] = true
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		for p := range present {
			if !listed[p] {
				t.Errorf("%s/%s is not listed in health_test.yaml: add a case for it or delete it", dir, p)
			}
		}
		for p := range listed {
			if !present[p] {
				t.Errorf("%s/health_test.yaml lists %s, which is not a file under testdata/", dir, p)
			}
		}
	}
}

// returnedStatus finds the statuses health.lua returns: every health("<status>", ...) call.
var returnedStatus = regexp.MustCompile(`\bhealth\("(\w+)"`)

// TestHealthTestsCoverEveryOutcome asks for a case of every status CompilerVersion's script can
// return, and for the four its mapping is about.
func TestHealthTestsCoverEveryOutcome(t *testing.T) {
	dir := filepath.Join(testenv.RepoRoot(), compilerVersion)
	want := map[string]bool{"Healthy": true, "Progressing": true, "Suspended": true, "Degraded": true}
	for _, m := range returnedStatus.FindAllStringSubmatch(readFile(t, filepath.Join(dir, "health.lua")), -1) {
		want[m[1]] = true
	}
	covered := map[string]bool{}
	for _, tc := range readHealthTests(t, dir).Tests {
		covered[tc.HealthStatus.Status] = true
	}
	for status := range want {
		if !covered[status] {
			t.Errorf("no case of health_test.yaml expects %s", status)
		}
	}
}

// TestDocsCarryTheScript holds the argocd-cm snippet of docs/argocd.md to health.lua, byte for
// byte, as the value a YAML parser reads from it. With -update it first rewrites the snippet:
// every line after the key's "|" line, to the end of the code block, becomes the script
// indented by four spaces, so the key must stay the last entry of the snippet.
func TestDocsCarryTheScript(t *testing.T) {
	root := testenv.RepoRoot()
	script := readFile(t, filepath.Join(root, compilerVersion, "health.lua"))
	path := filepath.Join(root, docsPage)
	page := readFile(t, path)
	if *update {
		page = rewriteSnippet(t, page, script)
		if err := os.WriteFile(path, []byte(page), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	start, end := snippet(t, page)
	var cm struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Data map[string]string `json:"data"`
	}
	// Every line of the block ends with a newline in the page, the last one too, which the value
	// of a "|" block keeps.
	lines := strings.Split(page, "\n")
	if err := yaml.Unmarshal([]byte(strings.Join(lines[start:end], "\n")+"\n"), &cm); err != nil {
		t.Fatalf("%s: the argocd-cm snippet is not YAML: %v", docsPage, err)
	}
	if cm.Kind != "ConfigMap" || cm.Metadata.Name != "argocd-cm" {
		t.Fatalf("%s: the snippet is a %s named %s, not the ConfigMap argocd-cm", docsPage, cm.Kind, cm.Metadata.Name)
	}
	if got := cm.Data[configMapKey]; got != script {
		t.Errorf("%s: %s is not %s/health.lua (%s); go test ./test/argocd/ -run TestDocs -update rewrites it",
			docsPage, configMapKey, compilerVersion, firstDifference(got, script))
	}
}

// snippet returns the lines [start, end) of the one ```yaml block of page that holds the
// configMapKey entry.
func snippet(t *testing.T, page string) (start, end int) {
	t.Helper()
	lines := strings.Split(page, "\n")
	found := 0
	for i := 0; i < len(lines); i++ {
		if lines[i] != "```yaml" {
			continue
		}
		j := i + 1
		for j < len(lines) && lines[j] != "```" {
			j++
		}
		if slices.Contains(lines[i+1:j], "  "+configMapKey+": |") {
			start, end = i+1, j
			found++
		}
		i = j
	}
	if found != 1 {
		t.Fatalf("%s: want one ```yaml block with the line %q, found %d", docsPage, "  "+configMapKey+": |", found)
	}
	return start, end
}

// rewriteSnippet puts script, indented, after the configMapKey line of the snippet.
func rewriteSnippet(t *testing.T, page, script string) string {
	t.Helper()
	start, end := snippet(t, page)
	lines := strings.Split(page, "\n")
	key := start + slices.Index(lines[start:end], "  "+configMapKey+": |")
	var body []string
	for _, line := range strings.Split(strings.TrimSuffix(script, "\n"), "\n") {
		if line != "" {
			line = "    " + line
		}
		body = append(body, line)
	}
	return strings.Join(slices.Concat(lines[:key+1], body, lines[end:]), "\n")
}

// firstDifference says where two texts first differ, by line.
func firstDifference(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(g) && i < len(w); i++ {
		if g[i] != w[i] {
			return fmt.Sprintf("line %d of the script: the docs have %q, health.lua has %q", i+1, g[i], w[i])
		}
	}
	return fmt.Sprintf("the docs have %d lines, health.lua %d", len(g), len(w))
}

// TestScriptNamesTheAPI ties the names health.lua compares against to the API, so that a phase
// added to the CRD, or a condition type, reason or annotation renamed in Go, fails here rather
// than silently falling through to another health in Argo CD.
func TestScriptNamesTheAPI(t *testing.T) {
	root := testenv.RepoRoot()
	script := readFile(t, filepath.Join(root, compilerVersion, "health.lua"))
	var crd struct {
		Spec struct {
			Versions []struct {
				Name   string `json:"name"`
				Schema struct {
					OpenAPIV3Schema struct {
						Properties struct {
							Status struct {
								Properties struct {
									Phase struct {
										Enum []string `json:"enum"`
									} `json:"phase"`
								} `json:"properties"`
							} `json:"status"`
						} `json:"properties"`
					} `json:"openAPIV3Schema"`
				} `json:"schema"`
			} `json:"versions"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal([]byte(readFile(t, filepath.Join(root, "config/crd/bases/splice.dev_compilerversions.yaml"))), &crd); err != nil {
		t.Fatal(err)
	}
	var phases []string
	for _, v := range crd.Spec.Versions {
		if v.Name == splicev1.GroupVersion.Version {
			phases = v.Schema.OpenAPIV3Schema.Properties.Status.Properties.Phase.Enum
		}
	}
	if len(phases) == 0 {
		t.Fatalf("the CRD has no status.phase enum for %s", splicev1.GroupVersion.Version)
	}
	for _, p := range phases {
		if !strings.Contains(script, `phase == "`+p+`"`) {
			t.Errorf("health.lua does not decide phase %s, which the CRD allows", p)
		}
	}
	for _, name := range []string{
		splicev1.ConditionReady, splicev1.ConditionBuilt, splicev1.ConditionProgressing,
		splicev1.ConditionPaused, splicev1.ConditionDegraded,
		splicev1.ReasonInvalidSelector, splicev1.ReasonNoTargetPods, splicev1.ReasonPausedByUser, splicev1.ReasonAborted,
	} {
		if !strings.Contains(script, `"`+name+`"`) {
			t.Errorf("health.lua does not compare against %q", name)
		}
	}
	for _, annotation := range []string{splicev1.AnnotationAbort, splicev1.AnnotationPaused, splicev1.AnnotationRetry} {
		if !strings.Contains(script, annotation) {
			t.Errorf("health.lua does not name the annotation %s", annotation)
		}
	}
}
