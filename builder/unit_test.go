package builder

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestHashInputs(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	gomod := write("a/go.mod", "module example.com/m\n")
	write("a/p/main.go", "package main\n")
	write("a/lib/lib.go", "package lib\n")
	// An identical checkout elsewhere: the hash must not depend on where it sits.
	gomodB := write("b/go.mod", "module example.com/m\n")
	write("b/p/main.go", "package main\n")
	write("b/lib/lib.go", "package lib\n")

	env := map[string]string{"GOVERSION": "go1.26.8", "GOOS": "linux", "GOARCH": "amd64", "GOAMD64": "v1", "CGO_ENABLED": "1"}
	mainMod := func(gm string) *listModule { return &listModule{Path: "example.com/m", Main: true, GoMod: gm} }
	pkgs := func(root, gm string, extra ...*listPackage) []*listPackage {
		out := []*listPackage{
			{ImportPath: "fmt", Standard: true},
			{ImportPath: "example.com/dep/x", Module: &listModule{Path: "example.com/dep", Version: "v1.2.3"}, Dir: "/nonexistent", GoFiles: []string{"x.go"}},
			{ImportPath: "example.com/m/lib", Module: mainMod(gm), Dir: filepath.Join(dir, root, "lib"), GoFiles: []string{"lib.go"}},
		}
		out = append(out, extra...)
		return append(out, &listPackage{ImportPath: "example.com/m/p", Name: "main", Module: mainMod(gm), Dir: filepath.Join(dir, root, "p"), GoFiles: []string{"main.go"}})
	}
	hash := func(env map[string]string, tags []string, p []*listPackage) string {
		t.Helper()
		h, err := hashInputs(env, tags, p)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range env {
			m[a] = b
		}
		m[k] = v
		return m
	}
	base := hash(env, []string{"b", "a"}, pkgs("a", gomod))

	tests := []struct {
		name string
		got  func() string
		same bool
	}{
		{"same inputs elsewhere", func() string { return hash(env, []string{"a", "b"}, pkgs("b", gomodB)) }, true},
		{"tags in another order, repeated", func() string { return hash(env, []string{"a", "b", "a"}, pkgs("a", gomod)) }, true},
		{"another tag", func() string { return hash(env, []string{"a"}, pkgs("a", gomod)) }, false},
		{"another toolchain", func() string { return hash(with("GOVERSION", "go1.26.7"), []string{"a", "b"}, pkgs("a", gomod)) }, false},
		{"another GOAMD64", func() string { return hash(with("GOAMD64", "v3"), []string{"a", "b"}, pkgs("a", gomod)) }, false},
		{"a changed local dependency", func() string {
			write("b/lib/lib.go", "package lib\n\nconst X = 1\n")
			defer write("b/lib/lib.go", "package lib\n")
			return hash(env, []string{"a", "b"}, pkgs("b", gomodB))
		}, false},
		{"a changed go.mod", func() string {
			write("b/go.mod", "module example.com/m\n\ngo 1.26\n")
			defer write("b/go.mod", "module example.com/m\n")
			return hash(env, []string{"a", "b"}, pkgs("b", gomodB))
		}, false},
		{"another module version", func() string {
			p := pkgs("a", gomod)
			p[1].Module.Version = "v1.2.4"
			return hash(env, []string{"a", "b"}, p)
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.got(); (got == base) != tt.same {
				t.Fatalf("hash %s, base %s; want same=%v", got, base, tt.same)
			}
		})
	}

	t.Run("a module replaced by a directory is hashed by content", func(t *testing.T) {
		replaced := func() []*listPackage {
			return pkgs("a", gomod, &listPackage{ImportPath: "example.com/v", Dir: filepath.Join(dir, "a/vendored"), GoFiles: []string{"v.go"},
				Module: &listModule{Path: "example.com/v", Version: "v1.0.0", Replace: &listModule{Path: "./vendored", Dir: filepath.Join(dir, "a/vendored")}}})
		}
		write("a/vendored/v.go", "package v\n")
		before := hash(env, nil, replaced())
		write("a/vendored/v.go", "package v\n\nconst Y = 2\n")
		if after := hash(env, nil, replaced()); after == before {
			t.Fatalf("changing a directory-replaced module kept hash %s", after)
		}
	})

	t.Run("a missing local file is an error naming it", func(t *testing.T) {
		p := pkgs("a", gomod)
		p[len(p)-1].GoFiles = append(p[len(p)-1].GoFiles, "gone.go")
		_, err := hashInputs(env, nil, p)
		if err == nil || !strings.Contains(err.Error(), "gone.go") {
			t.Fatalf("err = %v; want one naming gone.go", err)
		}
	})
}

func TestParseResult(t *testing.T) {
	digest := "sha256:" + strings.Repeat("ab", 32)
	good := `{"ref":"r.example.com/p@` + digest + `","digest":"` + digest + `","goVersion":"go1.26.8","apiVersion":"1.0.0",` +
		`"pluginPath":"example.com/m/p/splice-0123456789abcdef","sourceHash":"` + strings.Repeat("0", 64) + `","builtAt":"2026-11-01T10:00:00Z","buildKey":"k"}`
	tests := []struct {
		name    string
		msg     string
		wantErr string
	}{
		{"valid", good, ""},
		{"build only, nothing pushed", strings.Replace(strings.Replace(good, `"ref":"r.example.com/p@`+digest+`",`, "", 1), `"digest":"`+digest+`",`, "", 1), ""},
		{"unknown field", strings.Replace(good, `"buildKey"`, `"surprise":1,"buildKey"`, 1), "unknown field"},
		{"two objects", good + good, "trailing data"},
		{"not JSON", "panic: runtime error", "decode"},
		{"bad digest", strings.ReplaceAll(good, digest, "sha256:abc"), "digest"},
		{"ref pinned elsewhere", strings.Replace(good, `p@`+digest, `p@sha256:`+strings.Repeat("cd", 32), 1), "not pinned by the digest"},
		{"go version with a go prefix missing", strings.Replace(good, `"go1.26.8"`, `"1.26.8"`, 1), "goVersion"},
		{"no builtAt", strings.Replace(good, `"builtAt":"2026-11-01T10:00:00Z",`, "", 1), "builtAt"},
		{"no plugin path", strings.Replace(good, `"pluginPath":"example.com/m/p/splice-0123456789abcdef",`, "", 1), "pluginPath"},
		{"too long", good[:len(good)-1] + `,"path":"` + strings.Repeat("x", MaxTerminationMessageBytes) + `"}`, "more than a termination message"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseResult(tt.msg)
			if tt.wantErr == "" {
				if err != nil || r == nil {
					t.Fatalf("ParseResult: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseResult err = %v; want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestFailureRoundTrip(t *testing.T) {
	long := "# example.com/p\n./main.go:3:2: undefined: x\n" + strings.Repeat("é", 4000) + "\nlast line of go build"
	f := NewFailure(failf(ReasonCompileFailed, "%s", long), "key")
	data, err := encodeCompact(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > MaxTerminationMessageBytes {
		t.Fatalf("encoded failure is %d bytes, over %d", len(data), MaxTerminationMessageBytes)
	}
	got, ok := ParseFailure(string(data))
	if !ok || got.Reason != ReasonCompileFailed || got.BuildKey != "key" || !utf8.ValidString(got.Error) ||
		!strings.Contains(got.Error, "undefined: x") || !strings.HasSuffix(got.Error, "last line of go build") {
		t.Fatalf("ParseFailure(%q) = %+v, %v; want the head and the tail of the error", data, got, ok)
	}
	for _, msg := range []string{"", "exit status 2", `{"reason":"Whatever","error":"x"}`, `{"reason":"CompileFailed","error":""}`} {
		if _, ok := ParseFailure(msg); ok {
			t.Errorf("ParseFailure(%q) accepted it", msg)
		}
	}
	if ReasonOf(errors.New("plain")) != ReasonInternal {
		t.Error("an error without a reason is not Internal")
	}
}

func TestOptionsValidate(t *testing.T) {
	ok := func() Options {
		return Options{GitURL: "https://git.example.com/p.git", Revision: "v1", Package: "./plugins/p", GoVersion: "1.26.8", Symbol: "Plugin"}
	}
	tests := []struct {
		name    string
		mutate  func(*Options)
		wantErr string
	}{
		{"valid", func(o *Options) {}, ""},
		{"go prefix accepted", func(o *Options) { o.GoVersion = "go1.26.8" }, ""},
		{"minor release refused", func(o *Options) { o.GoVersion = "1.26" }, "exact Go release"},
		{"no source", func(o *Options) { o.GitURL = "" }, "give the source"},
		{"both sources", func(o *Options) { o.Source = "." }, "exclusive"},
		{"no revision", func(o *Options) { o.Revision = "" }, "--revision"},
		{"revision like a flag", func(o *Options) { o.Revision = "--upload-pack=evil" }, "must not start with '-'"},
		{"package outside", func(o *Options) { o.Package = "../other" }, "inside the repository"},
		{"absolute package", func(o *Options) { o.Package = "/etc" }, "inside the repository"},
		{"no package", func(o *Options) { o.Package = "" }, "--package is required"},
		{"unexported symbol", func(o *Options) { o.Symbol = "plugin" }, "exported Go identifier"},
		{"bad API version", func(o *Options) { o.APIVersion = "one" }, "semantic version"},
		{"API version longer than status.artifact holds", func(o *Options) { o.APIVersion = "1.0.0-" + strings.Repeat("a", 64) }, "at most 64 bytes"},
		{"bad tag", func(o *Options) { o.Tags = []string{"a b"} }, "tag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ok()
			tt.mutate(&o)
			err := o.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if o.GoVersion != "1.26.8" {
					t.Fatalf("GoVersion normalized to %q", o.GoVersion)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || ReasonOf(err) != ReasonInvalidInput {
				t.Fatalf("Validate = %v; want InvalidInput containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestResolveAPIVersion(t *testing.T) {
	tests := []struct {
		name, src, want, expect, wantErr string
	}{
		{"declared var", `var APIVersion = "1.2.3"`, "", "1.2.3", ""},
		{"declared var, asked with v prefix", `var APIVersion = "1.2.3"`, "v1.2.3", "1.2.3", ""},
		// A constant is no symbol in a plugin: every host would fail to load it.
		{"declared const", `const APIVersion = "1.2.3"`, "", "", "a constant, which is no symbol in a plugin"},
		{"grouped", "var (\n\tA = 1\n\tAPIVersion = \"2.0.0\"\n)", "", "2.0.0", ""},
		{"not declared, asked", `var X = 1`, "1.0.0", "1.0.0", ""},
		{"not declared, not asked", `var X = 1`, "", "", "declares no API version"},
		{"disagrees", `var APIVersion = "1.2.3"`, "1.3.0", "", `declares APIVersion "1.2.3"`},
		{"computed", `var APIVersion = "1." + "2.3"`, "", "", "string literal"},
		{"not semver", `var APIVersion = "latest"`, "", "", "not a semantic version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\n"+tt.src+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := resolveAPIVersion(FieldNamesFlags, tt.want, dir, []string{"main.go"})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || ReasonOf(err) != ReasonAPIVersionMismatch {
					t.Fatalf("err = %v; want APIVersionMismatch containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.expect {
				t.Fatalf("resolveAPIVersion = %q, %v; want %q", got, err, tt.expect)
			}
		})
	}
}

func TestSmallHelpers(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:s3cret@git.example.com/p.git": "https://user:xxxxx@git.example.com/p.git",
		"https://git.example.com/a@b":               "https://git.example.com/a@b",
		"git@github.com:team/p.git":                 "git@github.com:team/p.git",
		"ssh://git@host/p":                          "ssh://git@host/p",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"github.com/a/b/splice-0123": "github.com/a/b/splice-0123",
		"example.com/p.v2":           "example.com/p%2ev2",
		`a b/"x"`:                    `a%20b/%22x%22`,
	} {
		if got := pathToPrefix(in); got != want {
			t.Errorf("pathToPrefix(%q) = %q, want %q", in, got, want)
		}
	}
	o := Options{}
	commit := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	now := commit.Add(time.Hour)
	if got := o.sourceDate(commit, now); !got.Equal(commit) {
		t.Errorf("git build builtAt = %v, want the commit time", got)
	}
	if got := o.sourceDate(time.Time{}, now); !got.Equal(now) {
		t.Errorf("checkout build builtAt = %v, want now", got)
	}
	o.SourceDateEpoch = 86400
	if got := o.sourceDate(commit, now); got.Unix() != 86400 {
		t.Errorf("SOURCE_DATE_EPOCH builtAt = %v, want 86400", got)
	}
}

func TestCredentialEnv(t *testing.T) {
	tmp := t.TempDir()
	write := func(dir, name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o440); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("https", func(t *testing.T) {
		dir := t.TempDir()
		write(dir, "username", "bot\n")
		write(dir, "password", "tok")
		env, err := credentialEnv(dir, "https://git.example/team/p.git", tmp, FieldNamesFlags)
		if err != nil {
			t.Fatal(err)
		}
		// base64("bot:tok"); the trailing newline a Secret often carries is dropped. The
		// header is scoped to the clone URL.
		if strings.Join(env, "|") != "GIT_CONFIG_COUNT=1|GIT_CONFIG_KEY_0=http.https://git.example/team/p.git.extraHeader|GIT_CONFIG_VALUE_0=Authorization: Basic Ym90OnRvaw==" {
			t.Fatalf("env %q", env)
		}
		for _, url := range []string{"http://git.example/p.git", "git://git.example/p.git"} {
			if _, err := credentialEnv(dir, url, tmp, FieldNamesFlags); ReasonOf(err) != ReasonInvalidInput || !strings.Contains(err.Error(), "never sent over") {
				t.Errorf("credentials for %s: %v; want InvalidInput, never sent in the clear", url, err)
			}
		}
	})
	t.Run("ssh with known_hosts", func(t *testing.T) {
		dir := t.TempDir()
		write(dir, "ssh-privatekey", "KEY")
		write(dir, "known_hosts", "host ssh-ed25519 AAAA")
		env, err := credentialEnv(dir, "ssh://git@git.example/p.git", tmp, FieldNamesFlags)
		if err != nil {
			t.Fatal(err)
		}
		if len(env) != 1 || !strings.Contains(env[0], "StrictHostKeyChecking=yes") || !strings.Contains(env[0], filepath.Join(dir, "known_hosts")) {
			t.Fatalf("env %q", env)
		}
		// ssh refuses a key others can read: the copy must be private.
		fi, err := os.Stat(filepath.Join(tmp, "git-ssh-key"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("key copy: %v, %v; want mode 0600", fi, err)
		}
	})
	t.Run("ssh without known_hosts", func(t *testing.T) {
		dir := t.TempDir()
		write(dir, "ssh-privatekey", "KEY")
		if _, err := credentialEnv(dir, "git@git.example:p.git", tmp, FieldNamesCRD); ReasonOf(err) != ReasonInvalidInput ||
			!strings.Contains(err.Error(), "no known_hosts") || !strings.Contains(err.Error(), "spec.plugin.source.git.secretRef") {
			t.Fatalf("err = %v; want InvalidInput naming known_hosts and the field", err)
		}
	})
	t.Run("empty secret", func(t *testing.T) {
		_, err := credentialEnv(t.TempDir(), "https://git.example/p.git", tmp, FieldNamesFlags)
		if ReasonOf(err) != ReasonInvalidInput {
			t.Fatalf("err = %v; want InvalidInput", err)
		}
	})
}

func TestWriteTermination(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "termination-log")
	if err := WriteTermination(missing, Failure{Reason: ReasonInternal, Error: "x"}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatalf("the default path was created outside a container: %v", err)
	}
	if err := WriteTermination(missing, Failure{Reason: ReasonInternal, Error: "x"}, false); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(missing)
	if err != nil || string(b) != `{"reason":"Internal","error":"x"}` {
		t.Fatalf("termination message %q, %v", b, err)
	}
}

// TestFieldNamesFollowTheCaller: errors name the builder's flags on the command line and the
// Build's CRD fields when the build controller runs it (it always passes --build-key).
func TestFieldNamesFollowTheCaller(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nvar APIVersion = \"1.2.3\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	none := t.TempDir()
	if err := os.WriteFile(filepath.Join(none, "main.go"), []byte("package main\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cli, crd := Options{}, Options{BuildKey: "k"}
	if cli.names() != FieldNamesFlags || crd.names() != FieldNamesCRD || (&Options{FieldNames: FieldNamesCRD}).names() != FieldNamesCRD {
		t.Fatalf("names: cli %s, controller %s", cli.names(), crd.names())
	}
	for _, tt := range []struct {
		o          Options
		dir, want  string
		apiVersion string
		not        string
	}{
		{cli, dir, "--api-version is 1.3.0", "1.3.0", "spec."},
		{crd, dir, "spec.plugin.apiVersion is 1.3.0", "1.3.0", "--api-version"},
		{cli, none, "or pass --api-version", "", "spec."},
		{crd, none, "or set spec.plugin.apiVersion", "", "--api-version"},
	} {
		_, err := resolveAPIVersion(tt.o.names(), tt.apiVersion, tt.dir, []string{"main.go"})
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), tt.not) {
			t.Errorf("%s: %v; want %q and no %q", tt.o.names(), err, tt.want, tt.not)
		}
	}
	for _, tt := range []struct {
		field, flags, crd string
	}{
		{fieldPackage, "--package", "spec.plugin.package"},
		{fieldSymbol, "--symbol", "spec.plugin.symbol"},
		{fieldAPIVersion, "--api-version", "spec.plugin.apiVersion"},
		{fieldGoVersion, "--go-version", "spec.goVersion"},
		{fieldContract, "--contract", "--contract"}, // no Build field sets it
	} {
		if got := FieldNamesFlags.name(tt.field); got != tt.flags {
			t.Errorf("flags name of %s = %q, want %q", tt.field, got, tt.flags)
		}
		if got := FieldNamesCRD.name(tt.field); got != tt.crd {
			t.Errorf("CRD name of %s = %q, want %q", tt.field, got, tt.crd)
		}
	}
}

// TestGoVersionDefaultsLocally: without --go-version a local build takes the go on PATH; the
// controller's always names one.
func TestGoVersionDefaultsLocally(t *testing.T) {
	o := Options{Source: ".", Package: "./p", Symbol: "Plugin"}
	if err := o.Validate(); err != nil {
		t.Errorf("local build without --go-version: %v; want it accepted", err)
	}
	o = Options{Source: ".", Package: "./p", Symbol: "Plugin", BuildKey: "k"}
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "spec.goVersion") {
		t.Errorf("controller build without a Go version: %v; want an error naming spec.goVersion", err)
	}
}
