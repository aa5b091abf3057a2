package preflight_test

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/splice-dev/splice/host/preflight"
)

// An outcome of plugin.Open in the child host.
const (
	openOK         = "ok"          // plugin.Open returned a nil error
	openError      = "error"       // plugin.Open returned an error
	openCrash      = "crash"       // the host died inside plugin.Open
	openNotReached = "not reached" // the host died before this step
)

type openResult struct {
	kind   string
	detail string // error message, or the crash's first line
}

func (r openResult) String() string {
	if r.detail == "" {
		return r.kind
	}
	return r.kind + ": " + r.detail
}

// step opens one plugin after the earlier steps' plugins.
type step struct {
	plugin string // artifact name
	// open is what plugin.Open must do, and openDetail a substring of its
	// error or crash message.
	open       string
	openDetail string
	// reasons are the verdict's Problem reasons, as a set; nil means the
	// verdict must be OK.
	reasons []string
	// unsupported marks a load that plugin.Open performs although Go does
	// not support it: Open must succeed and the preflight must refuse.
	unsupported bool
}

type matrixCase struct {
	name string
	host string // artifact the child runs
	// hostFacts, if set, is the artifact whose facts are recorded to a facts
	// file (before stripping) and given to the preflight instead of host.
	hostFacts string
	steps     []step
}

var matrix = []matrixCase{
	{name: "identical build", host: "host", steps: []step{
		{plugin: "a.so", open: openOK},
	}},
	{name: "two plugins sharing an identical plugin-only package", host: "host", steps: []step{
		{plugin: "ps1.so", open: openOK},
		{plugin: "ps3.so", open: openOK},
	}},
	{name: "plugin from another Go release (" + otherRelease + ")", host: "host", steps: []step{
		{plugin: "a-go1.27.3.so", open: openCrash, openDetail: "fatal error: runtime: no plugin module data",
			reasons: []string{preflight.GoVersionMismatch}},
	}},
	{name: "plugin from another patch release (" + otherPatch + ")", host: "host", steps: []step{
		{plugin: "a-go1.26.7.so", open: openOK, unsupported: true,
			reasons: []string{preflight.GoVersionMismatch}},
	}},
	{name: "-trimpath plugin, host without", host: "host", steps: []step{
		{plugin: "a-trimpath.so", open: openError, openDetail: "different version of package",
			reasons: []string{preflight.PackageHashMismatch}},
	}},
	{name: "-race plugin, host without", host: "host", steps: []step{
		{plugin: "a-race.so", open: openError, openDetail: "different version of package",
			reasons: []string{preflight.PackageHashMismatch}},
	}},
	{name: "-gcflags on a package shared with the host", host: "host", steps: []step{
		{plugin: "a-gcflags-shared.so", open: openError, openDetail: "different version of package example.test/matrix/shared",
			reasons: []string{preflight.PackageHashMismatch}},
	}},
	{name: "-gcflags on the plugin's own package only", host: "host", steps: []step{
		{plugin: "a-gcflags-own.so", open: openOK},
	}},
	{name: "build tag that adds a file to a shared package", host: "host", steps: []step{
		{plugin: "a-tag-adds-file.so", open: openError, openDetail: "different version of package example.test/matrix/shared",
			reasons: []string{preflight.PackageHashMismatch}},
	}},
	{name: "build tag that adds no file", host: "host", steps: []step{
		{plugin: "a-tag-no-file.so", open: openOK},
	}},
	{name: "dependency v1.1.0 in the plugin, v1.0.0 in the host", host: "host", steps: []step{
		{plugin: "a-dep-v1.1.0.so", open: openError, openDetail: "different version of package example.test/dep",
			reasons: []string{preflight.PackageHashMismatch}},
	}},
	{name: "same sources from another checkout directory, no -trimpath", host: "host", steps: []step{
		{plugin: "a-other-checkout.so", open: openError, openDetail: "different version of package example.test/",
			reasons: []string{preflight.PackageHashMismatch}},
	}},
	{name: "GOAMD64=v3 plugin in a v1 host", host: "host", steps: []step{
		{plugin: "a-goamd64-v3.so", open: openOK, unsupported: true,
			reasons: []string{preflight.GOAMD64Mismatch}},
	}},
	{name: "identical builds of the same plugin path", host: "host", steps: []step{
		{plugin: "a.so", open: openOK},
		{plugin: "a-again.so", open: openError, openDetail: "plugin already loaded",
			reasons: []string{preflight.DuplicatePluginPath}},
	}},
	{name: "the same file opened twice (Open returns the old plugin)", host: "host", steps: []step{
		{plugin: "a.so", open: openOK},
		{plugin: "a.so", open: openOK, unsupported: true,
			reasons: []string{preflight.DuplicatePluginPath}},
	}},
	{name: "CGO_ENABLED=0 host", host: "host-nocgo", steps: []step{
		{plugin: "a.so", open: openError, openDetail: "plugin: not implemented",
			reasons: []string{preflight.CgoDisabled}},
	}},
	{name: "plugin-only package built differently, loaded second", host: "host", steps: []step{
		{plugin: "ps1.so", open: openOK},
		{plugin: "ps2-pstag.so", open: openError, openDetail: "different version of package example.test/matrix/pluginshared",
			reasons: []string{preflight.PackageHashMismatch}},
	}},
	{name: "plugin-only package built differently, load order reversed", host: "host", steps: []step{
		{plugin: "ps2-pstag.so", open: openOK},
		{plugin: "ps1.so", open: openError, openDetail: "different version of package example.test/matrix/pluginshared",
			reasons: []string{preflight.PackageHashMismatch}},
	}},
	{name: "first loaded copy of a package wins over a later failed one", host: "host", steps: []step{
		{plugin: "ps1.so", open: openOK},
		{plugin: "ps2-pstag.so", open: openError, openDetail: "different version of package example.test/matrix/pluginshared",
			reasons: []string{preflight.PackageHashMismatch}},
		{plugin: "ps3.so", open: openOK},
	}},
	{name: "a failed load's packages stay loaded", host: "host", steps: []step{
		{plugin: "ps2-both-tags.so", open: openError, openDetail: "different version of package example.test/matrix/shared",
			reasons: []string{preflight.PackageHashMismatch}},
		{plugin: "ps1.so", open: openError, openDetail: "different version of package example.test/matrix/pluginshared",
			reasons: []string{preflight.PackageHashMismatch}},
	}},
	{name: "host stripped with -s -w, facts read from its .dynsym", host: "host-stripped", steps: []step{
		{plugin: "a.so", open: openOK},
		{plugin: "ps2-both-tags.so", open: openError, openDetail: "different version of package example.test/matrix/shared",
			reasons: []string{preflight.PackageHashMismatch}},
	}},
	{name: "stripped host, facts file recorded before stripping", host: "host-stripped", hostFacts: "host", steps: []step{
		{plugin: "a.so", open: openOK},
		{plugin: "ps2-both-tags.so", open: openError, openDetail: "different version of package example.test/matrix/shared",
			reasons: []string{preflight.PackageHashMismatch}},
	}},
	{name: "plugin stripped with -s -w", host: "host", steps: []step{
		{plugin: "a-stripped.so", open: openOK},
	}},
	{name: "file-list build (plugin/unnamed-...) next to the named one", host: "host", steps: []step{
		{plugin: "a-unnamed.so", open: openOK},
		{plugin: "a.so", open: openOK},
	}},
	{name: "an executable instead of a plugin", host: "host", steps: []step{
		{plugin: "host", open: openError, openDetail: "cannot dynamically load",
			reasons: []string{preflight.NotAPlugin}},
	}},
}

// TestMatrix builds real hosts and plugins that differ in one way each,
// opens the plugins in a child host process, and requires the preflight
// verdict to agree with what plugin.Open did at every step.
func TestMatrix(t *testing.T) {
	if testing.Short() {
		t.Skip("the matrix builds ~25 hosts and plugins and runs them; skipped with -short")
	}
	var (
		mu   sync.Mutex
		rows []string
	)
	t.Cleanup(func() {
		var buf bytes.Buffer
		w := tabwriter.NewWriter(&buf, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "case\tstep\tplugin.Open in child\tpreflight verdict")
		slices.Sort(rows)
		for _, r := range rows {
			fmt.Fprintln(w, r[strings.IndexByte(r, '\x00')+1:])
		}
		w.Flush()
		t.Logf("matrix results:\n%s", buf.String())
	})

	for ci, c := range matrix {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			host := build(t, c.host)
			hostFacts := factsOf(t, c.host)
			if c.hostFacts != "" {
				file := filepath.Join(t.TempDir(), "host.facts.json")
				if err := factsOf(t, c.hostFacts).WriteFile(file); err != nil {
					t.Fatal(err)
				}
				var err error
				if hostFacts, err = preflight.ReadFacts(file); err != nil {
					t.Fatal(err)
				}
			}

			var paths []string
			var stepFacts []*preflight.Facts
			for _, s := range c.steps {
				paths = append(paths, build(t, s.plugin))
				stepFacts = append(stepFacts, factsOf(t, s.plugin))
			}
			outcomes := runChild(t, host, paths)

			for i, s := range c.steps {
				got := outcomes[i]
				// Every plugin Open was called on before counts, whether
				// or not it loaded.
				v := preflight.Check(hostFacts, stepFacts[i], stepFacts[:i])

				mu.Lock()
				rows = append(rows, fmt.Sprintf("%03d.%d\x00%s\t%d %s\t%s\t%s", ci, i, c.name, i+1, s.plugin, shorten(strings.ReplaceAll(openPrefix.ReplaceAllString(got.String(), ""), "plugin was built with a ", ""), 72), summarize(v)))
				mu.Unlock()

				if got.kind != s.open || !strings.Contains(got.detail, s.openDetail) {
					t.Errorf("step %d (%s): plugin.Open: %s; the case expects %s containing %q", i+1, s.plugin, got, s.open, s.openDetail)
				}
				// The preflight must agree with the child.
				switch {
				case s.unsupported && got.kind == openOK && v.OK:
					t.Errorf("step %d (%s): plugin.Open loads this unsupported build, and the preflight must refuse it, but it passed", i+1, s.plugin)
				case !s.unsupported && (got.kind == openOK) != v.OK:
					t.Errorf("step %d (%s): plugin.Open: %s, but the preflight says OK=%t:\n%s", i+1, s.plugin, got, v.OK, v.Error())
				}
				if gotReasons := reasonSet(v); !slices.Equal(gotReasons, s.reasons) {
					t.Errorf("step %d (%s): verdict reasons %v, want %v:\n%s", i+1, s.plugin, gotReasons, s.reasons, v.Error())
				}
				// Open names the first differing package it meets; the
				// verdict must name it too.
				if pkg := differingPackage(got.detail); pkg != "" && !namesPackage(v, pkg) {
					t.Errorf("step %d (%s): plugin.Open reports package %s, which the verdict does not name:\n%s", i+1, s.plugin, pkg, v.Error())
				}
			}
		})
	}
}

// openPrefix is the `plugin.Open("path"): ` that starts Open's errors.
var openPrefix = regexp.MustCompile(`plugin\.Open\("[^"]*"\): `)

var differentVersion = regexp.MustCompile(`different version of package (\S+)`)

func differingPackage(msg string) string {
	if m := differentVersion.FindStringSubmatch(msg); m != nil {
		return m[1]
	}
	return ""
}

func namesPackage(v preflight.Verdict, pkg string) bool {
	for _, p := range v.Problems {
		if p.Reason == preflight.PackageHashMismatch && (p.Package == pkg || slices.Contains(p.Packages, pkg)) {
			return true
		}
	}
	return false
}

func reasonSet(v preflight.Verdict) []string {
	var rs []string
	for _, p := range v.Problems {
		if !slices.Contains(rs, p.Reason) {
			rs = append(rs, p.Reason)
		}
	}
	slices.Sort(rs)
	return rs
}

func summarize(v preflight.Verdict) string {
	if v.OK {
		return "OK"
	}
	counts := map[string]int{}
	var order []string
	first := map[string]string{}
	for _, p := range v.Problems {
		if counts[p.Reason] == 0 {
			order = append(order, p.Reason)
			first[p.Reason] = p.Package
		}
		counts[p.Reason]++
	}
	var parts []string
	for _, r := range order {
		s := r
		if counts[r] > 1 {
			s += " x" + strconv.Itoa(counts[r])
		}
		if first[r] != "" && counts[r] == 1 {
			s += " (" + first[r] + ")"
		}
		parts = append(parts, s)
	}
	return "refused: " + strings.Join(parts, ", ")
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

// runChild runs the child host on the plugins and returns one outcome per
// plugin. The child may die; the steps it did not reach say so.
func runChild(t *testing.T, host string, plugins []string) []openResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, host, plugins...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("child host %s timed out (a hung plugin.Open?)\nstdout:\n%s\nstderr:\n%s", host, stdout.Bytes(), stderr.Bytes())
	}

	results := make([]openResult, len(plugins))
	seen := 0
	lines := strings.Split(stdout.String(), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "host ") {
		t.Fatalf("child host %s did not start: %v\nstdout:\n%s\nstderr:\n%s", host, runErr, stdout.Bytes(), stderr.Bytes())
	}
	for _, line := range lines[1:] {
		if line == "" {
			continue
		}
		var i int
		var kind string
		if _, err := fmt.Sscanf(line, "open %d %s", &i, &kind); err != nil || i != seen || i >= len(plugins) {
			t.Fatalf("child host printed %q, want \"open %d ...\"", line, seen)
		}
		r := openResult{kind: kind}
		if kind == openError {
			r.detail = strings.TrimPrefix(line, fmt.Sprintf("open %d error ", i))
		}
		results[i] = r
		seen++
	}
	if seen < len(plugins) {
		if runErr == nil {
			t.Fatalf("child host exited cleanly after %d of %d plugins", seen, len(plugins))
		}
		results[seen] = openResult{kind: openCrash, detail: crashLine(stderr.String(), runErr)}
		for i := seen + 1; i < len(plugins); i++ {
			results[i] = openResult{kind: openNotReached}
		}
	} else if runErr != nil {
		t.Fatalf("child host failed after opening every plugin: %v\n%s", runErr, stderr.Bytes())
	}
	return results
}

// crashLine picks the runtime's reason for dying out of the child's stderr.
func crashLine(stderr string, err error) string {
	for _, line := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(line, "fatal error:") || strings.HasPrefix(line, "panic:") || strings.HasPrefix(line, "SIG") {
			return line
		}
	}
	return err.Error()
}
