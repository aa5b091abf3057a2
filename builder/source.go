package builder

import (
	"context"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// checkout is the source a build works on.
type checkout struct {
	// root is the repository root Options.Package is relative to.
	root string
	// commit is the full SHA checked out (git builds only).
	commit string
	// commitTime is the commit's committer date (git builds only).
	commitTime time.Time
}

// gitEnv are set for every git command: never prompt (a Job has no terminal), and keep the
// user's and the system's configuration out of a reproducible build.
var gitEnv = []string{"GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_NOSYSTEM=1", "GIT_ASKPASS=/bin/false", "SSH_ASKPASS=/bin/false"}

// clone fetches o.Revision of o.GitURL into dir and checks it out. It fetches only that
// revision when the server allows it, and falls back to a full fetch (a server that refuses
// to serve an arbitrary commit SHA).
func clone(ctx context.Context, o *Options, dir, tmp string, p *progress) (*checkout, error) {
	env, err := credentialEnv(o.GitCredentials, o.GitURL, tmp, o.names())
	if err != nil {
		return nil, err
	}
	r := &runner{env: append(append([]string{}, gitEnv...), env...), progress: p.w}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, failf(ReasonInternal, "create clone directory: %v", err)
	}
	git := func(args ...string) error { return r.stream(ctx, dir, "    git: ", "git", args...) }
	if err := git("init", "--quiet"); err != nil {
		return nil, failf(ReasonSourceUnavailable, "%v", err)
	}
	if err := git("remote", "add", "origin", o.GitURL); err != nil {
		return nil, failf(ReasonSourceUnavailable, "%v", err)
	}
	var rev string
	if err := git("fetch", "--quiet", "--depth=1", "origin", o.Revision); err == nil {
		rev = "FETCH_HEAD"
	} else {
		p.note("shallow fetch of %s refused (%s); fetching the whole history", o.Revision, lastLine(err.Error()))
		if err := git("fetch", "--quiet", "--tags", "origin", "+refs/heads/*:refs/remotes/origin/*"); err != nil {
			return nil, failf(ReasonSourceUnavailable, "fetch %s: %v; check the URL, the credentials (%s) and the network", redactURL(o.GitURL), err, o.names().name(fieldGitSecret))
		}
		for _, cand := range []string{o.Revision, "origin/" + o.Revision} {
			if _, err := r.output(ctx, dir, "git", "rev-parse", "--verify", "--quiet", cand+"^{commit}"); err == nil {
				rev = cand
				break
			}
		}
		if rev == "" {
			return nil, failf(ReasonSourceUnavailable, "revision %q is neither a commit, a tag nor a branch of %s", o.Revision, redactURL(o.GitURL))
		}
	}
	if err := git("-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", rev); err != nil {
		return nil, failf(ReasonSourceUnavailable, "check out %s: %v", o.Revision, err)
	}
	if _, err := os.Stat(filepath.Join(dir, ".gitmodules")); err == nil {
		if err := git("submodule", "update", "--quiet", "--init", "--recursive", "--depth=1"); err != nil {
			return nil, failf(ReasonSourceUnavailable, "update submodules: %v", err)
		}
	}
	out, err := r.output(ctx, dir, "git", "show", "--no-patch", "--format=%H %ct", "HEAD")
	if err != nil {
		return nil, failf(ReasonSourceUnavailable, "read the checked-out commit: %v", err)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		return nil, failf(ReasonInternal, "git show printed %q, want \"<sha> <unix time>\"", out)
	}
	secs, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return nil, failf(ReasonInternal, "commit time %q: %v", f[1], err)
	}
	return &checkout{root: dir, commit: f[0], commitTime: time.Unix(secs, 0).UTC()}, nil
}

// credentialEnv turns a mounted git credentials Secret into environment variables for git.
// HTTPS credentials travel in an Authorization header set through GIT_CONFIG_* variables, so
// they appear neither on a command line nor in a file, and the header is scoped to the clone
// URL (http.<url>.extraHeader): a submodule on another server, or another path, never receives
// it. Credentials go only over https:// or SSH, never http:// or git://. An SSH key needs the
// server's key in the Secret's known_hosts (no first key is trusted blindly), and is copied to
// a private file because ssh refuses keys other users may read (Secret volumes are
// group-readable).
func credentialEnv(dir, url, tmp string, names FieldNames) ([]string, error) {
	if dir == "" {
		return nil, nil
	}
	read := func(name string) (string, bool, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			return "", false, nil
		}
		if err != nil {
			return "", false, failf(ReasonSourceUnavailable, "read git credentials: %v", err)
		}
		return string(b), true, nil
	}
	if scheme, _, ok := strings.Cut(url, "://"); ok && (scheme == "http" || scheme == "git") {
		return nil, failf(ReasonInvalidInput, "%s names git credentials, which are never sent over %s:// (%s): use an https:// or ssh:// URL for a repository that needs them",
			names.name(fieldGitSecret), scheme, redactURL(url))
	}
	key, hasKey, err := read("ssh-privatekey")
	if err != nil {
		return nil, err
	}
	if hasKey {
		return sshEnv(dir, tmp, key, names)
	}
	user, hasUser, err := read("username")
	if err != nil {
		return nil, err
	}
	pass, hasPass, err := read("password")
	if err != nil {
		return nil, err
	}
	if !hasUser && !hasPass {
		return nil, failf(ReasonInvalidInput, "git credentials in %s hold neither ssh-privatekey nor username/password", dir)
	}
	auth := base64.StdEncoding.EncodeToString([]byte(strings.TrimSpace(user) + ":" + strings.TrimSpace(pass)))
	return []string{
		"GIT_CONFIG_COUNT=1",
		"GIT_CONFIG_KEY_0=http." + url + ".extraHeader",
		"GIT_CONFIG_VALUE_0=Authorization: Basic " + auth,
	}, nil
}

// sshEnv is the GIT_SSH_COMMAND for an SSH key, with the Secret's known_hosts required.
func sshEnv(dir, tmp, key string, names FieldNames) ([]string, error) {
	knownHosts := filepath.Join(dir, "known_hosts")
	if _, err := os.Stat(knownHosts); err != nil {
		return nil, failf(ReasonInvalidInput, "the git credentials (%s) hold an ssh-privatekey but no known_hosts: add the server's host key under known_hosts (from ssh-keyscan, checked against the server's published fingerprint); no first key is trusted blindly",
			names.name(fieldGitSecret))
	}
	keyFile := filepath.Join(tmp, "git-ssh-key")
	if err := os.WriteFile(keyFile, []byte(key), 0o600); err != nil {
		return nil, failf(ReasonInternal, "write the SSH key to a private file: %v", err)
	}
	sshCmd := "ssh -i " + shellQuote(keyFile) + " -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=" + shellQuote(knownHosts)
	return []string{"GIT_SSH_COMMAND=" + sshCmd}, nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// lastLine is the last non-empty line of s: git's own complaint after our context.
func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return strings.TrimSpace(s[i+1:])
	}
	return s
}

// localCheckout uses a directory as it is.
func localCheckout(dir string) (*checkout, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, failf(ReasonSourceUnavailable, "source %s: %v", dir, err)
	}
	fi, err := os.Stat(abs)
	if err != nil || !fi.IsDir() {
		return nil, failf(ReasonSourceUnavailable, "source %s is not a directory: %v", dir, err)
	}
	return &checkout{root: abs}, nil
}
