package localloop

import (
	"context"
	"encoding/json"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The local loop must never link Kubernetes or the API types: applications' developers run it
// without a cluster, and the package exists so that they can.
func TestNoKubernetesDependencies(t *testing.T) {
	for _, pkg := range []string{"github.com/splice-dev/splice/internal/localloop", "github.com/splice-dev/splice/cmd/splice"} {
		out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			if strings.HasPrefix(dep, "k8s.io/") || strings.HasPrefix(dep, "sigs.k8s.io/") ||
				strings.HasPrefix(dep, "github.com/splice-dev/splice/api/") || dep == "github.com/splice-dev/splice/sidecar" {
				t.Errorf("%s depends on %s", pkg, dep)
			}
		}
	}
}

func TestAPIStep(t *testing.T) {
	tests := []struct {
		name                    string
		host, serving, plugin   string
		swap, consent           bool
		wantReason, wantMessage string
	}{
		{name: "patch", host: "1.0.0", serving: "1.0.0", plugin: "1.0.1", swap: true},
		{name: "minor without consent", host: "1.0.0", serving: "1.0.0", plugin: "1.1.0", swap: true,
			wantReason: ReasonMinorAPIChangeNotAllowed, wantMessage: "pass --allow-minor-api-change"},
		{name: "minor with consent", host: "1.0.0", serving: "1.0.0", plugin: "1.1.0", swap: true, consent: true},
		{name: "minor, load only", host: "1.0.0", serving: "1.0.0", plugin: "1.1.0"},
		{name: "minor from the host when nothing serves", host: "1.0.0", plugin: "v1.2.0-rc.1", swap: true, wantReason: ReasonMinorAPIChangeNotAllowed},
		{name: "back to the serving minor", host: "1.0.0", serving: "1.1.0", plugin: "1.1.3", swap: true},
		{name: "major", host: "1.0.0", serving: "1.0.0", plugin: "2.0.0", swap: true, consent: true,
			wantReason: ReasonMajorAPIChange, wantMessage: "built against API 2.x"},
		{name: "major, load only", host: "1.0.0", plugin: "2.0.0", wantReason: ReasonMajorAPIChange},
		{name: "major from what serves", host: "", serving: "2.1.0", plugin: "1.1.0", swap: true, consent: true, wantReason: ReasonMajorAPIChange},
		{name: "undeclared: the host decides", host: "1.0.0", serving: "1.0.0", plugin: "", swap: true},
		{name: "not semver: the host decides", host: "1.0.0", plugin: "1.0", swap: true},
		{name: "leading zero is not semver", host: "1.0.0", plugin: "1.01.0", swap: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := apiStep("ref", tt.host, tt.serving, tt.plugin, tt.swap, tt.consent)
			switch {
			case tt.wantReason == "" && r != nil:
				t.Fatalf("refused: %v", r)
			case tt.wantReason == "":
				return
			case r == nil:
				t.Fatalf("let through; want %s", tt.wantReason)
			case r.Reason != tt.wantReason || !strings.Contains(r.Error(), tt.wantMessage):
				t.Errorf("refusal %s: %v; want %s mentioning %q", r.Reason, r, tt.wantReason, tt.wantMessage)
			}
		})
	}
}

func TestCheckLoopback(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:5000": true, "127.0.0.2:0": true, "[::1]:5000": true, "localhost:5000": true,
		"0.0.0.0:5000": false, ":5000": false, "[::]:5000": false, "192.168.1.2:5000": false, "example.com:5000": false, "127.0.0.1": false,
	} {
		err := CheckLoopback(addr)
		if (err == nil) != ok {
			t.Errorf("CheckLoopback(%q) = %v, want ok=%v", addr, err, ok)
		}
		if err != nil && !ok && !strings.Contains(err.Error(), addr) {
			t.Errorf("CheckLoopback(%q): %v does not name the address", addr, err)
		}
	}
}

func TestServeRegistry(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- ServeRegistry(ctx, RegistryOptions{Addr: "127.0.0.1:0", Dir: t.TempDir(), Ready: func(a string) { ready <- a }})
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("ServeRegistry returned before serving: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("ServeRegistry never became ready")
	}
	resp, err := http.Get("http://" + addr + "/v2/_catalog")
	if err != nil {
		t.Fatal(err)
	}
	var cat struct{ Repositories []string }
	err = json.NewDecoder(resp.Body).Decode(&cat)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v2/_catalog: %d, %v", resp.StatusCode, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("ServeRegistry after cancel: %v", err)
	}
	if err := ServeRegistry(context.Background(), RegistryOptions{Addr: "0.0.0.0:0"}); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("ServeRegistry on 0.0.0.0: %v; want a refusal naming loopback", err)
	}
}
