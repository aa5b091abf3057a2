package builder

import (
	"context"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// gitServer is a real git smart-HTTP server over TLS (git http-backend behind net/http/cgi)
// serving the bare repositories under its root, recording the Authorization header of every
// request.
type gitServer struct {
	*httptest.Server
	root string
	mu   sync.Mutex
	auth []string
}

func startGitServer(t *testing.T) *gitServer {
	t.Helper()
	out, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Skipf("no git: %v", err)
	}
	backend := filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
	if _, err := os.Stat(backend); err != nil {
		t.Skipf("no git http-backend: %v", err)
	}
	g := &gitServer{root: t.TempDir()}
	h := &cgi.Handler{Path: backend, Env: []string{"GIT_PROJECT_ROOT=" + g.root, "GIT_HTTP_EXPORT_ALL=1"}}
	g.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		g.auth = append(g.auth, r.Header.Get("Authorization"))
		g.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(g.Close)
	return g
}

func (g *gitServer) authorizations() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.auth...)
}

func gitRun(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// bareRepo commits files to a new repository (plus a submodule gitlink when sub is set) and
// publishes it as name.git under the server's root.
func (g *gitServer) bareRepo(t *testing.T, name string, files map[string]string, sub, subURL, subCommit string) string {
	t.Helper()
	work := t.TempDir()
	gitRun(t, work, "init", "--quiet", "-b", "main")
	for f, content := range files {
		if err := os.WriteFile(filepath.Join(work, f), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gitRun(t, work, "add", ".")
	if sub != "" {
		gitmodules := "[submodule \"" + sub + "\"]\n\tpath = " + sub + "\n\turl = " + subURL + "\n"
		if err := os.WriteFile(filepath.Join(work, ".gitmodules"), []byte(gitmodules), 0o644); err != nil {
			t.Fatal(err)
		}
		gitRun(t, work, "add", ".gitmodules")
		gitRun(t, work, "update-index", "--add", "--cacheinfo", "160000,"+subCommit+","+sub)
	}
	gitRun(t, work, "commit", "--quiet", "-m", name)
	bare := filepath.Join(g.root, name+".git")
	gitRun(t, g.root, "clone", "--quiet", "--bare", work, bare)
	gitRun(t, bare, "config", "http.receivepack", "false")
	gitRun(t, bare, "config", "uploadpack.allowAnySHA1InWant", "true")
	return gitRun(t, work, "rev-parse", "HEAD")
}

// TestGitCredentialsStayWithTheCloneURL: the credentials of a CompilerVersion's repository go
// to its server only; a submodule on a second server gets none of them (a global
// http.extraHeader sent them to both).
func TestGitCredentialsStayWithTheCloneURL(t *testing.T) {
	a, b := startGitServer(t), startGitServer(t)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GIT_SSL_CAINFO", ca) // httptest's servers share one certificate

	subCommit := b.bareRepo(t, "sub", map[string]string{"lib.txt": "from the second server\n"}, "", "", "")
	a.bareRepo(t, "main", map[string]string{"go.mod": "module example.test/m\n"}, "sub", b.URL+"/sub.git", subCommit)

	creds := t.TempDir()
	for name, v := range map[string]string{"username": "bot", "password": "s3cret"} {
		if err := os.WriteFile(filepath.Join(creds, name), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	o := &Options{GitURL: a.URL + "/main.git", Revision: "main", GitCredentials: creds}
	co, err := clone(context.Background(), o, filepath.Join(t.TempDir(), "src"), t.TempDir(), newProgress(io.Discard, 1))
	if err != nil {
		t.Fatalf("clone: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(co.root, "sub", "lib.txt")); err != nil || string(b) != "from the second server\n" {
		t.Fatalf("the submodule was not checked out: %q, %v", b, err)
	}
	sent := false
	for _, h := range a.authorizations() {
		sent = sent || h == "Basic Ym90OnMzY3JldA==" // bot:s3cret
	}
	if !sent {
		t.Errorf("the repository's server never got the credentials: %q", a.authorizations())
	}
	for _, h := range b.authorizations() {
		if h != "" {
			t.Fatalf("the submodule's server got an Authorization header %q: credentials leaked to a second server", h)
		}
	}
	t.Logf("requests: %d to the repository's server, %d to the submodule's, none of the latter with credentials", len(a.authorizations()), len(b.authorizations()))
}
