package builder

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/splice-dev/splice/artifact"
)

// writeVulnDB writes a vulnerability database in govulncheck's format (index/db.json,
// index/modules.json, ID/<id>.json) holding osv, and returns its file:// URL. Each entry is
// {id, package, symbol} of the standard library, affected in every release before 1.99.0.
func writeVulnDB(t *testing.T, entries ...[3]string) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"index", "ID"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const modified = "2026-11-01T00:00:00Z"
	write := func(rel, body string) {
		if err := os.WriteFile(filepath.Join(dir, rel), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("index/db.json", `{"modified":"`+modified+`"}`)
	var index []string
	for _, e := range entries {
		id, pkg, symbol := e[0], e[1], e[2]
		index = append(index, `{"id":"`+id+`","modified":"`+modified+`","fixed":"1.99.0"}`)
		write("ID/"+id+".json", `{"schema_version":"1.3.1","id":"`+id+`","modified":"`+modified+`","published":"`+modified+`",`+
			`"summary":"A vulnerability the tests made up in `+pkg+`.`+symbol+`","details":"Test data.",`+
			`"affected":[{"package":{"name":"stdlib","ecosystem":"Go"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"1.99.0"}]}],`+
			`"ecosystem_specific":{"imports":[{"path":"`+pkg+`","symbols":["`+symbol+`"]}]}}]}`)
	}
	write("index/modules.json", `[{"path":"stdlib","vulns":[`+strings.Join(index, ",")+`]}]`)
	return "file://" + dir
}

// The vulnerability gate with real govulncheck (binary mode, in process) on a real plugin, against
// a database the test writes: greeter v1 calls fmt.Sprintf and never net/url.Parse.
func TestVulnerabilityGate(t *testing.T) {
	fx := getFixture(t)
	reg := startRegistry(t)
	db := writeVulnDB(t, [3]string{"GO-2099-0001", "fmt", "Sprintf"}, [3]string{"GO-2099-0002", "net/url", "Parse"})
	base := Options{GitURL: fx.url, Revision: fx.revA, Package: "./examples/greeter/plugins/v1", BuildKey: "k1", VulnDB: db}

	// Warn: recorded in the result and the artifact's config, and pushed.
	warn := base
	warn.Repository = reg + "/team/warned"
	res, err := build(t, warn)
	if err != nil {
		t.Fatalf("build under Warn: %v", err)
	}
	want := &artifact.Vulnerabilities{Database: db, Found: 1, IDs: []string{"GO-2099-0001"}}
	if v := res.Vulnerabilities; v == nil || v.Database != want.Database || v.Found != want.Found || !slices.Equal(v.IDs, want.IDs) {
		t.Fatalf("result vulnerabilities %+v, want %+v (the called Sprintf only, not the uncalled url.Parse)", v, want)
	}
	pulled, err := artifact.Pull(testContext(t), res.Ref, t.TempDir(), artifact.WithInsecure(true))
	if err != nil {
		t.Fatal(err)
	}
	if v := pulled.Config.Vulnerabilities; v == nil || v.Found != 1 || !slices.Equal(v.IDs, want.IDs) {
		t.Fatalf("artifact config vulnerabilities %+v, want %+v", v, want)
	}

	// Block: the build fails with the finding, and nothing is pushed.
	block := base
	block.Repository, block.VulnPolicy = reg+"/team/blocked", VulnPolicyBlock
	_, err = build(t, block)
	var be *Error
	if !errors.As(err, &be) || be.Reason != ReasonVulnerable || !strings.Contains(err.Error(), "GO-2099-0001") ||
		!strings.Contains(err.Error(), "spec.plugin.vulnerabilityPolicy") {
		t.Fatalf("build under Block: %v; want %s naming GO-2099-0001 and the policy field", err, ReasonVulnerable)
	}
	repo, err := name.NewRepository(block.Repository)
	if err != nil {
		t.Fatal(err)
	}
	if tags, err := remote.List(repo); err == nil && len(tags) > 0 {
		t.Fatalf("a blocked build pushed %v", tags)
	}

	// A database with nothing the plugin calls: found 0, and Block builds.
	clean := base
	clean.VulnDB, clean.VulnPolicy = writeVulnDB(t, [3]string{"GO-2099-0002", "net/url", "Parse"}), VulnPolicyBlock
	if res, err := build(t, clean); err != nil || res.Vulnerabilities == nil || res.Vulnerabilities.Found != 0 {
		t.Fatalf("build against a database the plugin calls nothing of: %+v, %v", res, err)
	}

	// A database that cannot be read fails the build rather than skipping the scan.
	missing := base
	missing.VulnDB = "file://" + filepath.Join(t.TempDir(), "none")
	if _, err := build(t, missing); !errors.As(err, &be) || be.Reason != ReasonVulnScanFailed {
		t.Fatalf("build against a missing database: %v; want %s", err, ReasonVulnScanFailed)
	}
}

func TestVulnOptionsAreChecked(t *testing.T) {
	for _, c := range []struct{ db, policy, want string }{
		{"http://vuln.example.com", "", "must be an https:// URL"},
		{"vuln.go.dev", "", "must be an https:// URL"},
		{"https://vuln.go.dev", "Ignore", "must be Warn or Block"},
	} {
		o := Options{Source: t.TempDir(), Package: "./p", Symbol: "Plugin", GoVersion: "1.26.8", VulnDB: c.db, VulnPolicy: c.policy}
		err := o.Validate()
		if ReasonOf(err) != ReasonInvalidInput || !strings.Contains(fmtErr(err), c.want) {
			t.Errorf("--vuln-db %q --vuln-policy %q: %v; want InvalidInput saying %q", c.db, c.policy, err, c.want)
		}
	}
	o := Options{Source: t.TempDir(), Package: "./p", Symbol: "Plugin", GoVersion: "1.26.8", VulnDB: "https://vuln.go.dev"}
	if err := o.Validate(); err != nil || o.VulnPolicy != VulnPolicyWarn {
		t.Fatalf("defaults: %v, policy %q; want Warn", err, o.VulnPolicy)
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
