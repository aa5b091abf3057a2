package v1alpha1_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/internal/testenv"
)

// The generated CRD restates, as literals, values that the Go code owns as constants:
// controller-gen evaluates no Go, so the markers in compilerversion_types.go must be literals.
// These tests read the generated CRD (run `make manifests` after changing a marker) and hold
// it to the constants, so the two cannot drift apart.

// crdSchema returns the CompilerVersion CRD's schema, by the JSON paths of its properties.
func crdSchema(t *testing.T) map[string]apiextensionsv1.JSONSchemaProps {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "crd", "bases", "splice.dev_compilerversions.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.UnmarshalStrict(raw, &crd); err != nil {
		t.Fatal(err)
	}
	if len(crd.Spec.Versions) != 1 || crd.Spec.Versions[0].Name != splicev1.GroupVersion.Version {
		t.Fatalf("the CRD serves %d versions; this test knows %s only", len(crd.Spec.Versions), splicev1.GroupVersion.Version)
	}
	props := map[string]apiextensionsv1.JSONSchemaProps{}
	var walk func(path string, s apiextensionsv1.JSONSchemaProps)
	walk = func(path string, s apiextensionsv1.JSONSchemaProps) {
		props[path] = s
		for name, p := range s.Properties {
			walk(strings.TrimPrefix(path+"."+name, "."), p)
		}
		if s.Items != nil && s.Items.Schema != nil {
			walk(path+"[]", *s.Items.Schema)
		}
	}
	walk("", *crd.Spec.Versions[0].Schema.OpenAPIV3Schema)
	return props
}

// TestCRDDefaults: every default in the CRD's schema is one of the constants of defaults.go,
// and every one of those constants that has a schema default is there.
func TestCRDDefaults(t *testing.T) {
	want := map[string]any{
		"spec.plugin.symbol":                        splicev1.DefaultSymbol,
		"spec.strategy":                             map[string]any{"type": string(splicev1.DefaultStrategyType)},
		"spec.strategy.type":                        string(splicev1.DefaultStrategyType),
		"spec.strategy.rollingPatch.maxUnavailable": splicev1.DefaultMaxUnavailable,
		"spec.strategy.canary.onFailure":            string(splicev1.DefaultOnFailure),
		"spec.strategy.rollingPatch.onFailure":      string(splicev1.DefaultRollingPatchOnFailure),
		"spec.maxLoadedVersions":                    float64(splicev1.DefaultMaxLoadedVersions),
	}
	got := map[string]any{}
	for path, s := range crdSchema(t) {
		if s.Default == nil {
			continue
		}
		var v any
		if err := json.Unmarshal(s.Default.Raw, &v); err != nil {
			t.Fatalf("%s: default %s: %v", path, s.Default.Raw, err)
		}
		got[path] = v
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("the CRD's defaults are not the Go constants (a marker in compilerversion_types.go and a constant in defaults.go differ, or the CRD is stale: make manifests):\nCRD %v\nGo  %v", got, want)
	}
}

// TestCRDPatterns: every rule or pattern of the CRD about a digest is PinnedRefPattern (the
// artifact source's CEL rule), and every digest field's length bound is a digest's length.
func TestCRDPatterns(t *testing.T) {
	props := crdSchema(t)
	// CEL's single-quoted string needs the regexp's backslashes doubled.
	wantRule := "self.matches('" + strings.ReplaceAll(splicev1.PinnedRefPattern, `\`, `\\`) + "')"
	var rules []string
	for path, s := range props {
		if strings.Contains(s.Pattern, "sha256") || strings.Contains(s.Pattern, "a-f0-9") {
			t.Errorf("%s: pattern %q restates the digest rule; use a CEL rule on PinnedRefPattern or DigestPattern", path, s.Pattern)
		}
		for _, r := range s.XValidations {
			if strings.Contains(r.Rule, "sha256") || strings.Contains(r.Rule, "a-f0-9") {
				rules = append(rules, path+": "+r.Rule)
			}
		}
	}
	sort.Strings(rules)
	if want := []string{"spec.plugin.source.artifact: " + wantRule}; !reflect.DeepEqual(rules, want) {
		t.Fatalf("the CRD's digest rules are not PinnedRefPattern (the marker on PluginSource.Artifact and the constant differ, or the CRD is stale: make manifests):\nCRD %q\nGo  %q", rules, want)
	}

	digest := "sha256:" + strings.Repeat("0", 64)
	if !splicev1.ValidDigest(digest) {
		t.Fatalf("%s does not match DigestPattern", digest)
	}
	bounded := 0
	for path, s := range props {
		if !strings.HasSuffix(strings.ToLower(path), "digest") || s.Type != "string" {
			continue
		}
		bounded++
		if s.MaxLength == nil || *s.MaxLength != int64(len(digest)) {
			t.Errorf("%s: maxLength %v, want %d, the length of a digest", path, s.MaxLength, len(digest))
		}
	}
	if bounded < 4 {
		t.Fatalf("found %d digest fields in the schema; status has at least artifact, stableArtifact, rolloutDigest, recentFailures and pods", bounded)
	}
}

// TestCRDMaxLoadedVersionsBounds: the CRD's bounds on spec.maxLoadedVersions are the constants
// the pod protocol's annotation is held to, so that every value the API server admits reaches
// the host.
func TestCRDMaxLoadedVersionsBounds(t *testing.T) {
	s := crdSchema(t)["spec.maxLoadedVersions"]
	if s.Minimum == nil || s.Maximum == nil || *s.Minimum != float64(splicev1.MinMaxLoadedVersions) || *s.Maximum != float64(splicev1.MaxMaxLoadedVersions) {
		t.Fatalf("spec.maxLoadedVersions is bounded %v..%v in the CRD; the Go constants say %d..%d (make manifests, or align the markers)",
			s.Minimum, s.Maximum, splicev1.MinMaxLoadedVersions, splicev1.MaxMaxLoadedVersions)
	}
}
