package main

import (
	"bufio"
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"text/template"

	"github.com/spf13/cobra"
)

// HostModuleVersion is the release of the host module a skeleton requires without
// --host-module-dir. The host is a nested module, so its releases are tagged host/vX.Y.Z
// (host/v0.1.0 for this one) and fetched with
// `go get github.com/splice-dev/splice/host@v0.1.0`.
const HostModuleVersion = "v0.1.0"

// hostModulePath is the module the skeleton links.
const hostModulePath = "github.com/splice-dev/splice/host"

// defaultLogrVersion is the logr release the host module requires at HostModuleVersion; with
// --host-module-dir the version comes from that checkout's go.mod.
const defaultLogrVersion = "v1.4.4"

// logrSums are go.sum's lines for defaultLogrVersion.
const logrSums = `github.com/go-logr/logr v1.4.4 h1:tG4xh9yMsRCAiodLVTxyrkzSZ9+o0L1Kg/+cPVcbP/8=
github.com/go-logr/logr v1.4.4/go.mod h1:9T104GzyrTigFIr8wt5mBrctHMim0Nb2HLGrmQ40KvY=
`

//go:embed templates/skeleton
var skeletonFS embed.FS

const skeletonRoot = "templates/skeleton"

func newInitCommand() *cobra.Command {
	var o initOptions
	cmd := &cobra.Command{
		Use:   "init DIR --module PATH [--host-module-dir DIR]",
		Short: "Write a new service skeleton: contract, host, two plugins, Makefile, test, manifests",
		Long: `Write a new service skeleton into DIR (which must not exist, or be empty):
go.mod, a contract package, an HTTP host built on host/serve, two plugins
(plugins/v1 and plugins/v2) to swap between, a Makefile building host and
plugins with the same flags (CGO_ENABLED=1, -trimpath, one toolchain), a test
that builds them and checks the plugin serves and swaps, and a CompilerVersion
and an opted-in Deployment under deploy/.

The skeleton requires ` + hostModulePath + ` ` + HostModuleVersion + `
(a nested module: its tags are host/vX.Y.Z; fetch it with
'go get ` + hostModulePath + `@` + HostModuleVersion + `' and 'go mod tidy').
--host-module-dir replaces it with a local checkout's host/ directory instead.

Nothing is half-written: the skeleton is written beside DIR and renamed into
place.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.module == "" {
				return usageError{errors.New("--module is required: the new service's module path")}
			}
			o.dir = args[0]
			if err := writeSkeleton(o); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (module %s); next: cd %s && make test\n", o.dir, o.module, o.dir)
			return nil
		},
	}
	cmd.Flags().StringVar(&o.module, "module", "", "module path of the new service (required)")
	cmd.Flags().StringVar(&o.hostDir, "host-module-dir", "", "use the host module from this local directory (a replace directive) instead of the release")
	return cmd
}

type initOptions struct {
	dir, module, hostDir string
}

// skeletonData is what the templates see.
type skeletonData struct {
	Module, Name             string
	GoDirective, GoVersion   string
	HostVersion, LogrVersion string
	ReleaseVersion           string
	HostDir                  string // absolute; empty without --host-module-dir
}

var (
	modulePathRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._~/-]*[A-Za-z0-9]$`)
	notDNSRE     = regexp.MustCompile(`[^a-z0-9-]+`)
)

// writeSkeleton renders the skeleton into a temporary directory beside o.dir and renames it
// into place.
func writeSkeleton(o initOptions) error {
	data, sums, err := skeletonFor(o)
	if err != nil {
		return err
	}
	target, err := filepath.Abs(o.dir)
	if err != nil {
		return err
	}
	if err := checkTarget(target); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(target), "."+filepath.Base(target)+".splice-init-")
	if err != nil {
		return fmt.Errorf("init: create a staging directory beside %s: %w", target, err)
	}
	defer os.RemoveAll(tmp) // gone once renamed; the remains of a failure otherwise
	if err := renderSkeleton(tmp, data); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, "go.sum"), []byte(sums), 0o644); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	// rename(2) replaces an empty directory atomically and refuses a non-empty one, so a
	// directory filled meanwhile is never overwritten (os.Rename refuses any directory).
	if err := syscall.Rename(tmp, target); err != nil {
		return fmt.Errorf("init: move the skeleton into %s: %w", target, err)
	}
	return nil
}

// skeletonFor checks the options and returns the templates' data and the go.sum to write.
func skeletonFor(o initOptions) (skeletonData, string, error) {
	if !modulePathRE.MatchString(o.module) || strings.Contains(o.module, "//") {
		return skeletonData{}, "", usageError{fmt.Errorf("--module %q is not a module path", o.module)}
	}
	abs, err := filepath.Abs(o.dir)
	if err != nil {
		return skeletonData{}, "", err
	}
	name := strings.Trim(notDNSRE.ReplaceAllString(strings.ToLower(filepath.Base(abs)), "-"), "-")
	if name == "" {
		name = "service"
	}
	d := skeletonData{
		Module: o.module, Name: name,
		GoDirective: goDirective(), GoVersion: strings.TrimPrefix(runtime.Version(), "go"),
		HostVersion: HostModuleVersion, LogrVersion: defaultLogrVersion, ReleaseVersion: HostModuleVersion,
	}
	if o.hostDir == "" {
		return d, logrSums, nil
	}
	if d.HostDir, err = filepath.Abs(o.hostDir); err != nil {
		return d, "", err
	}
	d.HostVersion = "v0.0.0-00010101000000-000000000000"
	sums, err := readHostModule(d.HostDir, &d)
	return d, sums, err
}

// readHostModule checks that dir holds the host module, sets the logr version it requires and
// returns its go.sum.
func readHostModule(dir string, d *skeletonData) (string, error) {
	gomod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return "", fmt.Errorf("--host-module-dir %s: %w", dir, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	module := ""
	for sc.Scan() {
		f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "require "))
		switch {
		case len(f) == 2 && f[0] == "module":
			module = f[1]
		case len(f) >= 2 && f[0] == "github.com/go-logr/logr":
			d.LogrVersion = f[1]
		}
	}
	if module != hostModulePath {
		return "", fmt.Errorf("--host-module-dir %s holds module %q, not %s (pass the checkout's host/ directory)", dir, module, hostModulePath)
	}
	sums, err := os.ReadFile(filepath.Join(dir, "go.sum"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("--host-module-dir %s: %w", dir, err)
	}
	return string(sums), nil
}

// goDirective is the go line of the skeleton's go.mod: this toolchain's language version.
func goDirective() string {
	v := strings.TrimPrefix(runtime.Version(), "go")
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 || strings.ContainsAny(v, " +-") {
		return "1.26.0"
	}
	return parts[0] + "." + parts[1] + ".0"
}

// checkTarget refuses a target that exists and is not an empty directory, or whose parent
// does not exist.
func checkTarget(target string) error {
	entries, err := os.ReadDir(target)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if _, err := os.Stat(filepath.Dir(target)); err != nil {
			return fmt.Errorf("init: %s: the parent directory: %w", target, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("init: %s: %w", target, err)
	case len(entries) > 0:
		return fmt.Errorf("init: %s is not empty (%d entries); choose a new or empty directory, nothing was written", target, len(entries))
	}
	return nil
}

// renderSkeleton executes every template under skeletonRoot into dir, the .tmpl suffix
// dropped.
func renderSkeleton(dir string, data skeletonData) error {
	return fs.WalkDir(skeletonFS, skeletonRoot, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel := strings.TrimSuffix(strings.TrimPrefix(p, skeletonRoot+"/"), ".tmpl")
		src, err := skeletonFS.ReadFile(p)
		if err != nil {
			return err
		}
		t, err := template.New(path.Base(p)).Option("missingkey=error").Parse(string(src))
		if err != nil {
			return fmt.Errorf("init: template %s: %w", rel, err)
		}
		var buf bytes.Buffer
		if err := t.Execute(&buf, data); err != nil {
			return fmt.Errorf("init: template %s: %w", rel, err)
		}
		out := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return err
		}
		return os.WriteFile(out, buf.Bytes(), 0o644)
	})
}
