package e2e

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/splice-dev/splice/host/control"
)

// TestControlSocketRejectsHostileInput sends malformed and hostile requests to the real
// control socket. Each must get the documented status and error code, and none may change
// anything: not routing, not the versions, not the set of paths tried.
func TestControlSocketRejectsHostileInput(t *testing.T) {
	h := startHost(t)
	ctx := h.ctx(t)
	if _, err := h.client.Load(ctx, control.LoadRequest{Path: h.pluginPath("v3"), Digest: h.digest("v3")}); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(filepath.Join(h.shared, control.SocketName))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("control socket mode %v, %v; want 0600", info.Mode(), err)
	}

	// A perfectly good plugin outside the shared dir, and ways to reach it from inside.
	outside := t.TempDir()
	evil := filepath.Join(outside, "v2.so")
	data, err := os.ReadFile(h.pluginPath("v2"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(evil, data, 0o644); err != nil {
		t.Fatal(err)
	}
	must(t, os.Symlink(evil, filepath.Join(h.shared, "link-out.so")))
	must(t, os.Symlink(outside, filepath.Join(h.shared, "dir-out")))
	must(t, os.Mkdir(filepath.Join(h.shared, "sub"), 0o755))
	rel, err := filepath.Rel(h.shared, evil)
	if err != nil {
		t.Fatal(err)
	}

	d2 := h.digest("v2")
	unknown := "sha256:" + strings.Repeat("e", 64)
	load := func(path, digest string) string {
		return `{"path":"` + path + `","digest":"` + digest + `"}`
	}
	tests := []struct {
		name     string
		method   string
		path     string
		body     string
		wantCode control.Code
	}{
		{"bad JSON", "POST", "/v1/load", `{"path":`, control.CodeBadRequest},
		{"not an object", "POST", "/v1/swap", `["` + d2 + `"]`, control.CodeBadRequest},
		{"null", "POST", "/v1/rollback", `null`, control.CodeBadRequest},
		{"empty body", "POST", "/v1/rollback", ``, control.CodeBadRequest},
		{"unknown field", "POST", "/v1/load", `{"path":"v2.so","digest":"` + d2 + `","force":true}`, control.CodeBadRequest},
		{"unknown field on rollback", "POST", "/v1/rollback", `{"to":"` + d2 + `"}`, control.CodeBadRequest},
		{"trailing data", "POST", "/v1/swap", `{"digest":"` + h.digest("v3") + `"} {"digest":"x"}`, control.CodeBadRequest},
		{"malformed digest", "POST", "/v1/load", load(h.pluginPath("v2"), "sha256:1234"), control.CodeBadRequest},
		{"digest of another algorithm", "POST", "/v1/swap", `{"digest":"md5:` + strings.Repeat("a", 32) + `"}`, control.CodeBadRequest},
		{"huge body", "POST", "/v1/load", `{"path":"` + strings.Repeat("A", 1<<20) + `"}`, control.CodeTooLarge},
		{"unknown digest (swap)", "POST", "/v1/swap", `{"digest":"` + unknown + `"}`, control.CodeUnknownDigest},
		{"unknown digest (route)", "POST", "/v1/route", `{"canary":"` + unknown + `","percent":50}`, control.CodeUnknownDigest},
		{"percent over 100", "POST", "/v1/route", `{"canary":"` + h.digest("v3") + `","percent":101}`, control.CodeBadRequest},
		{"digest already names v1", "POST", "/v1/load", load(h.pluginPath("v2"), h.digest("v1")), control.CodeDigestInUse},
		{"absolute path outside", "POST", "/v1/load", load(evil, d2), control.CodePathOutside},
		{"system file", "POST", "/v1/load", load("/etc/passwd", d2), control.CodePathOutside},
		{"dot-dot relative", "POST", "/v1/load", load(rel, d2), control.CodePathOutside},
		{"dot-dot from inside", "POST", "/v1/load", load(filepath.Join(h.shared, "sub", "..", "..", filepath.Base(filepath.Dir(evil)), "v2.so"), d2), control.CodePathOutside},
		{"symlink out", "POST", "/v1/load", load("link-out.so", d2), control.CodePathOutside},
		{"symlinked dir out", "POST", "/v1/load", load("dir-out/v2.so", d2), control.CodePathOutside},
		{"the shared dir itself", "POST", "/v1/load", load(h.shared, d2), control.CodePathOutside},
		{"a directory inside", "POST", "/v1/load", load("sub", d2), control.CodePathNotFound},
		{"missing file", "POST", "/v1/load", load("nope.so", d2), control.CodePathNotFound},
		{"the control socket", "POST", "/v1/load", load(control.SocketName, d2), control.CodeBadRequest},
		{"reexec into a path outside", "POST", "/v1/reexec", load(evil, d2), control.CodePathOutside},
		{"wrong method", "GET", "/v1/load", ``, control.CodeMethodNotAllowed},
		{"wrong method on status", "POST", "/v1/status", `{}`, control.CodeMethodNotAllowed},
		{"unknown endpoint", "POST", "/v1/unload", `{}`, control.CodeNotFound},
	}
	before := snapshotOf(h.status(t))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, er := h.rawControl(t, tt.method, tt.path, bytes.NewReader([]byte(tt.body)))
			if status != control.CodeStatus(tt.wantCode) || er.Error.Code != tt.wantCode || er.Error.Message == "" {
				t.Fatalf("%s %s: status %d, %+v; want %d %s with a message", tt.method, tt.path, status, er.Error, control.CodeStatus(tt.wantCode), tt.wantCode)
			}
			if after := snapshotOf(h.status(t)); !reflect.DeepEqual(before, after) {
				t.Fatalf("a refused request changed the host:\nbefore %+v\nafter  %+v", before, after)
			}
			h.requireAlive()
		})
	}
	// Nothing was burned: the good file still loads, under its own digest.
	if _, err := h.client.Load(ctx, control.LoadRequest{Path: "v2-" + strings.TrimPrefix(filepath.Base(h.pluginPath("v2")), "v2-"), Digest: d2, Swap: true}); err != nil {
		t.Fatalf("loading v2 after the hostile requests: %v", err)
	}
	if a := h.greet(t, "n", ""); a.Version != "v2" || a.Status != http.StatusOK {
		t.Fatalf("after the swap: %+v; want v2", a)
	}
}

// hostView is what a refused request must not change.
type hostView struct {
	Current, Canary string
	Loaded          int
	Versions        []string
	LastSwap        string
}

func snapshotOf(st *control.Status) hostView {
	v := hostView{Current: st.Current, Canary: st.Canary, Loaded: st.LoadedVersions}
	for _, vs := range st.Versions {
		v.Versions = append(v.Versions, vs.Digest+" "+vs.Path+" "+string(vs.State))
	}
	if st.LastSwap != nil {
		v.LastSwap = string(st.LastSwap.Op) + " " + st.LastSwap.StartedAt.String() + " " + st.LastSwap.Error
	}
	return v
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
