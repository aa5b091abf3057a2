package builder

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"

	"golang.org/x/vuln/scan"

	"github.com/splice-dev/splice/artifact"
)

// Vulnerability policies (--vuln-policy, spec.plugin.vulnerabilityPolicy).
const (
	// VulnPolicyWarn records what the scan found and pushes the plugin.
	VulnPolicyWarn = "Warn"
	// VulnPolicyBlock fails a build whose plugin calls a known vulnerability, and pushes
	// nothing.
	VulnPolicyBlock = "Block"
)

// maxVulnIDs bounds the identifiers a scan records (in the result, the artifact and status).
const maxVulnIDs = 16

// ValidVulnDB checks --vuln-db: a vulnerability database in govulncheck's format, at an https://
// mirror (vuln.go.dev or a copy of it) or a file:// directory.
func ValidVulnDB(db string) error {
	u, err := url.Parse(db)
	if err != nil {
		return fmt.Errorf("--%s %q: %v", FlagVulnDB, db, err)
	}
	switch {
	case u.Scheme == "https" && u.Host != "":
	case u.Scheme == "file" && u.Path != "":
	default:
		return fmt.Errorf("--%s %q must be an https:// URL of a vulnerability database (such as https://vuln.go.dev or a mirror of it) or a file:// directory holding one", FlagVulnDB, db)
	}
	return nil
}

// scanMessage is the part of a govulncheck -format json message the gate reads.
type scanMessage struct {
	Finding *struct {
		OSV   string `json:"osv"`
		Trace []struct {
			Function string `json:"function"`
		} `json:"trace"`
	} `json:"finding"`
}

// scanVulns runs govulncheck in binary mode on the built plugin soPath against the database
// db, in this process (golang.org/x/vuln/scan), and returns the known vulnerabilities whose
// symbols the plugin calls. A vulnerability only in a module or package the plugin contains
// but whose vulnerable functions it does not call is not counted, as govulncheck does by
// default. Its progress goes to w.
func scanVulns(ctx context.Context, db, soPath string, w io.Writer) (*artifact.Vulnerabilities, error) {
	var out bytes.Buffer
	errTail := newTail(1000)
	cmd := scan.Command(ctx, "-mode=binary", "-db", db, "-format", "json", soPath)
	cmd.Stdout, cmd.Stderr = &out, io.MultiWriter(errTail, w)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start govulncheck: %w", err)
	}
	if err := cmd.Wait(); err != nil {
		return nil, fmt.Errorf("govulncheck -mode=binary -db %s: %w: %s", db, err, strings.TrimSpace(errTail.String()))
	}
	ids := map[string]bool{}
	dec := json.NewDecoder(&out)
	for {
		var m scanMessage
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read govulncheck's output: %w", err)
		}
		if f := m.Finding; f != nil && len(f.Trace) > 0 && f.Trace[0].Function != "" {
			ids[f.OSV] = true
		}
	}
	v := &artifact.Vulnerabilities{Database: db, Found: len(ids)}
	for id := range ids {
		v.IDs = append(v.IDs, id)
	}
	slices.Sort(v.IDs)
	if len(v.IDs) > maxVulnIDs {
		v.IDs = v.IDs[:maxVulnIDs]
	}
	return v, nil
}

// vulnGate scans the plugin when a database is configured, records the findings, and fails the
// build under the Block policy when the plugin calls a known vulnerability.
func (b *pluginBuild) vulnGate(ctx context.Context, soPath string) error {
	if b.o.VulnDB == "" {
		return nil
	}
	b.p.begin("vulnerabilities", "scanning the plugin for known vulnerabilities (govulncheck -mode=binary, %s)", b.o.VulnDB)
	v, err := scanVulns(ctx, b.o.VulnDB, soPath, b.p.w)
	if err != nil {
		return failf(ReasonVulnScanFailed, "%v; check %s (the database must be reachable from the build)", err, b.o.names().name(fieldVulnDB))
	}
	b.vulns = v
	if v.Found == 0 {
		b.p.note("no known vulnerability is called")
		return nil
	}
	b.p.note("the plugin calls %d known vulnerabilities: %s", v.Found, strings.Join(v.IDs, ", "))
	if b.o.VulnPolicy == VulnPolicyBlock {
		return failf(ReasonVulnerable, "the plugin calls %d known vulnerabilities (%s, in %s): update the modules or the Go release that fix them (govulncheck -mode=binary on the plugin shows the call paths), or set %s to %s to build anyway",
			v.Found, strings.Join(v.IDs, ", "), v.Database, b.o.names().name(fieldVulnPolicy), VulnPolicyWarn)
	}
	return nil
}
