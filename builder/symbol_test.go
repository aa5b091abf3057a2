package builder

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// contractModule is a checkout with a contract package and plugins whose constructors return
// the contract, a concrete type, another interface, or are a variable.
var contractModule = map[string]string{
	"go.mod":        "module example.test/contract\n\ngo 1.21\n",
	"api/api.go":    "package api\n\n// Greeter is the contract.\ntype Greeter interface{ Greet(name string) string }\n",
	"impl/impl.go":  "package impl\n\ntype Impl struct{}\n\nfunc (Impl) Greet(n string) string { return n }\n\nfunc (Impl) String() string { return \"impl\" }\n",
	"good/main.go":  "package main\n\nimport (\n\t\"example.test/contract/api\"\n\t\"example.test/contract/impl\"\n)\n\nvar APIVersion = \"1.0.0\"\n\nfunc Plugin() api.Greeter { return impl.Impl{} }\n",
	"concrete/m.go": "package main\n\nimport \"example.test/contract/impl\"\n\nvar APIVersion = \"1.0.0\"\n\nfunc Plugin() *impl.Impl { return &impl.Impl{} }\n",
	"other/m.go":    "package main\n\nimport (\n\t\"fmt\"\n\n\t\"example.test/contract/impl\"\n)\n\nvar APIVersion = \"1.0.0\"\n\nfunc Plugin() fmt.Stringer { return impl.Impl{} }\n",
	"variable/m.go": "package main\n\nimport (\n\t\"example.test/contract/api\"\n\t\"example.test/contract/impl\"\n)\n\nvar APIVersion = \"1.0.0\"\n\nvar Plugin = func() api.Greeter { return impl.Impl{} }\n",
	"args/m.go":     "package main\n\nimport (\n\t\"example.test/contract/api\"\n\t\"example.test/contract/impl\"\n)\n\nvar APIVersion = \"1.0.0\"\n\nfunc Plugin(name string) api.Greeter { return impl.Impl{} }\n",
}

func writeContractModule(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range contractModule {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestConstructorTypeCheckedAtBuild: a plugin whose constructor is not `func Plugin() T`, T
// the contract, fails the build (not the load in the pod), naming the symbol, the type the
// host needs and the type the plugin has.
func TestConstructorTypeCheckedAtBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds plugins; skipped with -short")
	}
	src := writeContractModule(t)
	const contract = "example.test/contract/api.Greeter"
	tests := []struct {
		name, pkg, contract string
		want                []string // substrings of the error; none: the build succeeds
		reason              string   // default ReasonSymbolTypeMismatch
	}{
		{name: "contract returned", pkg: "./good", contract: contract},
		{name: "an interface, no contract given", pkg: "./good"},
		{name: "concrete type", pkg: "./concrete", contract: contract,
			want: []string{"Plugin", "func() *example.test/contract/impl.Impl", "func() example.test/contract/api.Greeter"}},
		{name: "concrete type, no contract given", pkg: "./concrete",
			want: []string{"Plugin", "func() *example.test/contract/impl.Impl", "returns an interface"}},
		{name: "another interface", pkg: "./other", contract: contract,
			want: []string{"Plugin", "func() fmt.Stringer", "func() example.test/contract/api.Greeter"}},
		{name: "a variable", pkg: "./variable", contract: contract,
			want: []string{"Plugin is a variable", "func Plugin() example.test/contract/api.Greeter"}},
		{name: "parameters", pkg: "./args",
			want: []string{"Plugin", "func(name string) example.test/contract/api.Greeter", "no parameters"}},
		{name: "unknown contract", pkg: "./good", contract: "example.test/contract/api.Nope",
			want: []string{"--contract", "example.test/contract/api.Nope"}, reason: ReasonInvalidInput},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := build(t, Options{Source: src, Package: tt.pkg, Contract: tt.contract})
			t.Logf("error: %v", err)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("build: %v", err)
				}
				return
			}
			reason := ReasonSymbolTypeMismatch
			if tt.reason != "" {
				reason = tt.reason
			}
			if ReasonOf(err) != reason {
				t.Fatalf("build: (%s) %v; want %s", ReasonOf(err), err, reason)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
