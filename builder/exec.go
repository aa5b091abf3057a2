package builder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
)

// runner runs the go and git commands with a fixed environment and streams their output to
// the progress writer while keeping its tail for error messages.
type runner struct {
	// env is added to the process environment for every command.
	env []string
	// progress receives the commands' output as it comes (nil: discarded).
	progress io.Writer
}

// goEnv are the variables every go command runs with. GOTOOLCHAIN=local keeps the go command
// from switching to another toolchain because a go.mod asks for one: the plugin must be built
// by exactly the release that was checked. Plugins need cgo on both sides. Everything else
// (GOFLAGS, GOPROXY, GOAMD64, ...) is the environment's: the host must be built the same way.
var goEnv = []string{"GOTOOLCHAIN=local", "CGO_ENABLED=1"}

// output runs a command and returns its standard output; on failure the error carries the
// tail of its standard error.
func (r *runner) output(ctx context.Context, dir string, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), r.env...)
	var stdout bytes.Buffer
	stderr := newTail(64 << 10)
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	if err := cmd.Run(); err != nil {
		return nil, cmdError(name, args, err, stderr.String())
	}
	return stdout.Bytes(), nil
}

// stream runs a command whose output (stdout and stderr) goes to the progress writer, and
// returns the tail of it in the error on failure.
func (r *runner) stream(ctx context.Context, dir string, prefix string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), r.env...)
	tail := newTail(64 << 10)
	var w io.Writer = tail
	if r.progress != nil {
		w = io.MultiWriter(tail, &prefixWriter{w: r.progress, prefix: prefix})
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Run(); err != nil {
		return cmdError(name, args, err, tail.String())
	}
	return nil
}

func cmdError(name string, args []string, err error, output string) error {
	var ee *exec.Error
	if errors.As(err, &ee) {
		return fmt.Errorf("%s not found on PATH (%v): the build image must provide it", name, ee.Err)
	}
	out := strings.TrimSpace(output)
	if out == "" {
		return fmt.Errorf("%s %s: %w", name, strings.Join(redact(args), " "), err)
	}
	return fmt.Errorf("%s %s: %w:\n%s", name, strings.Join(redact(args), " "), err, out)
}

// redact hides URL user info in command lines that end up in messages.
func redact(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = redactURL(a)
	}
	return out
}

// redactURL replaces the password in scheme://user:password@host with "xxxxx".
func redactURL(s string) string {
	i := strings.Index(s, "://")
	if i < 0 {
		return s
	}
	rest := s[i+3:]
	at := strings.IndexByte(rest, '@')
	slash := strings.IndexByte(rest, '/')
	if at < 0 || (slash >= 0 && slash < at) {
		return s
	}
	userinfo := rest[:at]
	if c := strings.IndexByte(userinfo, ':'); c >= 0 {
		userinfo = userinfo[:c] + ":xxxxx"
	}
	return s[:i+3] + userinfo + rest[at:]
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	buf []byte
	cut bool
}

func newTail(max int) *tail { return &tail{max: max} }

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
		t.cut = true
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cut {
		return "[...]" + string(t.buf)
	}
	return string(t.buf)
}

// prefixWriter indents a command's output inside the progress log.
type prefixWriter struct {
	mu      sync.Mutex
	w       io.Writer
	prefix  string
	midLine bool
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out bytes.Buffer
	for _, c := range b {
		if !p.midLine {
			out.WriteString(p.prefix)
			p.midLine = true
		}
		out.WriteByte(c)
		if c == '\n' {
			p.midLine = false
		}
	}
	if _, err := p.w.Write(out.Bytes()); err != nil {
		return 0, err
	}
	return len(b), nil
}
