package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/go-logr/logr"

	"github.com/splice-dev/splice/host/control"
	"github.com/splice-dev/splice/host/preflight"
)

// ControlTarget is what the control endpoint drives; *Slot[T] implements it for every T.
type ControlTarget interface {
	Facts() *preflight.Facts
	Status() control.Status
	LoadSource(ctx context.Context, src Source, digest string) (control.VersionStatus, error)
	LoadSourceAndSwap(ctx context.Context, src Source, digest string, opts SwapOptions) (control.VersionStatus, control.SwapResult, error)
	Swap(ctx context.Context, digest string, opts SwapOptions) (control.SwapResult, error)
	Rollback(ctx context.Context) (control.SwapResult, error)
	Route(ctx context.Context, canary string, percent int, opts SwapOptions) (control.SwapResult, error)
	CheckReexec(target ReexecTarget) (ReexecTarget, error)
	Reexec(ctx context.Context, target ReexecTarget, reason string) error
	SetLimits(l control.Limits) (control.Limits, error)
}

// ControlOptions configure the control endpoint.
type ControlOptions struct {
	// SharedDir is the directory shared with the agent; every plugin path in a request must
	// resolve inside it. Required.
	SharedDir string
	// Logger receives one line per refused request and V(1) lines for the others.
	Logger logr.Logger
}

// ListenControl creates (or, after a re-exec, inherits) the control socket
// SharedDir/control.SocketName, mode 0600. Serve it with h.Serve and NewControlHandler; give
// the http.Server a ReadHeaderTimeout, since a peer that connects and sends nothing holds a
// hand-off's drain until it times out.
func ListenControl(h *Handoff, sharedDir string) (net.Listener, error) {
	ln, err := h.Listen("unix", filepath.Join(sharedDir, control.SocketName))
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return ln, nil
}

type controlHandler struct {
	t       ControlTarget
	dir     string // SharedDir, cleaned and absolute
	realDir string // SharedDir with symlinks resolved
	log     logr.Logger
}

// NewControlHandler returns the HTTP handler of the control endpoint (see package control for
// the protocol). Every request is validated in full before anything is touched: malformed
// JSON, unknown fields, trailing data, bodies over control.MaxRequestBytes, bad digests,
// unknown digests and paths that resolve outside SharedDir (through "..", symlinks or
// absolute paths) get an ErrorResponse and change nothing.
func NewControlHandler(t ControlTarget, opts ControlOptions) (http.Handler, error) {
	if opts.SharedDir == "" {
		return nil, errors.New("control handler: ControlOptions.SharedDir is required")
	}
	dir, err := filepath.Abs(opts.SharedDir)
	if err != nil {
		return nil, fmt.Errorf("control handler: shared dir: %w", err)
	}
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, fmt.Errorf("control handler: shared dir %s: %w", dir, err)
	}
	log := opts.Logger
	if log.GetSink() == nil {
		log = logr.Discard()
	}
	return &controlHandler{t: t, dir: dir, realDir: realDir, log: log.WithName("control")}, nil
}

func (c *controlHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	get := map[string]func() (any, error){
		"/v1/facts":  func() (any, error) { return c.t.Facts(), nil },
		"/v1/status": func() (any, error) { return c.t.Status(), nil },
	}
	post := map[string]func(r *http.Request) (any, int, error){
		"/v1/load":     c.load,
		"/v1/swap":     c.swap,
		"/v1/rollback": c.rollback,
		"/v1/route":    c.route,
		"/v1/reexec":   c.reexec,
		"/v1/limits":   c.limits,
	}
	if fn, ok := get[r.URL.Path]; ok {
		if r.Method != http.MethodGet {
			c.fail(w, r, control.Errorf(control.CodeMethodNotAllowed, "%s takes GET, not %s", r.URL.Path, r.Method))
			return
		}
		v, err := fn()
		if err != nil {
			c.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, v)
		return
	}
	if fn, ok := post[r.URL.Path]; ok {
		if r.Method != http.MethodPost {
			c.fail(w, r, control.Errorf(control.CodeMethodNotAllowed, "%s takes POST with a JSON body, not %s", r.URL.Path, r.Method))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, control.MaxRequestBytes)
		v, status, err := fn(r)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		c.log.V(1).Info("control request", "path", r.URL.Path)
		writeJSON(w, status, v)
		return
	}
	c.fail(w, r, control.Errorf(control.CodeNotFound, "no endpoint %s; see package host/control for the protocol", r.URL.Path))
}

func (c *controlHandler) load(r *http.Request) (any, int, error) {
	var req control.LoadRequest
	if err := control.Decode(r.Body, &req); err != nil {
		return nil, 0, err
	}
	src, err := c.open(req)
	if err != nil {
		return nil, 0, err
	}
	if req.Swap {
		vs, res, err := c.t.LoadSourceAndSwap(r.Context(), src, req.Digest, SwapOptions{AllowMinor: req.AllowMinor})
		if err != nil {
			return nil, 0, err
		}
		return control.LoadResponse{Version: vs, Swap: &res}, http.StatusOK, nil
	}
	vs, err := c.t.LoadSource(r.Context(), src, req.Digest)
	if err != nil {
		return nil, 0, err
	}
	return control.LoadResponse{Version: vs}, http.StatusOK, nil
}

func (c *controlHandler) swap(r *http.Request) (any, int, error) {
	var req control.SwapRequest
	if err := control.Decode(r.Body, &req); err != nil {
		return nil, 0, err
	}
	res, err := c.t.Swap(r.Context(), req.Digest, SwapOptions{AllowMinor: req.AllowMinor})
	return res, http.StatusOK, err
}

func (c *controlHandler) rollback(r *http.Request) (any, int, error) {
	var req control.RollbackRequest
	if err := control.Decode(r.Body, &req); err != nil {
		return nil, 0, err
	}
	res, err := c.t.Rollback(r.Context())
	return res, http.StatusOK, err
}

func (c *controlHandler) route(r *http.Request) (any, int, error) {
	var req control.RouteRequest
	if err := control.Decode(r.Body, &req); err != nil {
		return nil, 0, err
	}
	res, err := c.t.Route(r.Context(), req.Canary, req.Percent, SwapOptions{AllowMinor: req.AllowMinor})
	return res, http.StatusOK, err
}

func (c *controlHandler) limits(r *http.Request) (any, int, error) {
	var req control.LimitsRequest
	if err := control.Decode(r.Body, &req); err != nil {
		return nil, 0, err
	}
	l, err := c.t.SetLimits(req.Limits)
	return l, http.StatusOK, err
}

func (c *controlHandler) reexec(r *http.Request) (any, int, error) {
	var req control.ReexecRequest
	if err := control.Decode(r.Body, &req); err != nil {
		return nil, 0, err
	}
	target := ReexecTarget{Digest: req.Digest}
	if req.Path != "" {
		p, err := c.resolve(req.Path)
		if err != nil {
			return nil, 0, err
		}
		target.Path = p
	}
	target, err := c.t.CheckReexec(target)
	if err != nil {
		return nil, 0, err
	}
	gen := 1
	if hs := c.t.Status().Handoff; hs != nil {
		if hs.InProgress {
			return nil, 0, fmt.Errorf("%w: a hand-off is already running", ErrNoHandoff)
		}
		gen = hs.Generation + 1
	}
	// After the answer: the drain waits for this very connection to close.
	go func() {
		err := c.t.Reexec(context.Background(), target, "control request")
		c.log.Error(err, "re-exec requested over the control socket did not happen")
	}()
	return control.ReexecResponse{Accepted: true, Generation: gen}, http.StatusAccepted, nil
}

// resolve confines a request's plugin path to the shared directory: relative paths are taken
// from it, and the path must lie inside it both as written (after Clean, so ".." cannot climb
// out) and after every symlink is resolved (so a link cannot point out).
func (c *controlHandler) resolve(p string) (string, error) {
	if !filepath.IsAbs(p) {
		p = filepath.Join(c.dir, p)
	}
	p = filepath.Clean(p)
	if !within(c.dir, p) && !within(c.realDir, p) {
		return "", fmt.Errorf("%w: %s is not inside %s", ErrPathOutside, p, c.dir)
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("%w: %s (write the artifact before asking for the load)", ErrPathNotFound, p)
		}
		return "", fmt.Errorf("%w: resolve %s: %v", ErrPathNotFound, p, err)
	}
	if !within(c.realDir, real) {
		return "", fmt.Errorf("%w: %s resolves to %s", ErrPathOutside, p, real)
	}
	return real, nil
}

// open opens the request's plugin file once, confined to the shared directory: resolve names
// it, then it is opened through an os.Root of the directory with its last element not
// followed, so that a directory or link swapped in between cannot lead outside (the host
// loads a private copy of what this reads; see LoadSource).
func (c *controlHandler) open(req control.LoadRequest) (Source, error) {
	path, err := c.resolve(req.Path)
	if err != nil {
		return Source{}, err
	}
	rel, err := filepath.Rel(c.realDir, path)
	if err != nil {
		return Source{}, fmt.Errorf("%w: %s: %v", ErrPathOutside, path, err)
	}
	root, err := os.OpenRoot(c.realDir)
	if err != nil {
		return Source{}, fmt.Errorf("%w: open the shared directory %s: %v", ErrPathNotFound, c.realDir, err)
	}
	defer root.Close()
	f, err := root.OpenFile(rel, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		if strings.Contains(err.Error(), "escapes") || errors.Is(err, syscall.ELOOP) {
			return Source{}, fmt.Errorf("%w: %s changed while it was opened (a symlink now leads out of %s): %v", ErrPathOutside, req.Path, c.dir, err)
		}
		return Source{}, fmt.Errorf("%w: %v", ErrPathNotFound, err)
	}
	return Source{Path: path, File: f, FileDigest: req.FileDigest}, nil
}

func within(dir, p string) bool {
	return strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

func (c *controlHandler) fail(w http.ResponseWriter, r *http.Request, err error) {
	ce := toControlError(err)
	c.log.Info("control request refused", "path", r.URL.Path, "method", r.Method, "code", ce.Code, "message", ce.Message)
	writeJSON(w, ce.Status, control.ErrorResponse{Error: control.ErrorBody{Code: ce.Code, Reason: ce.Reason, Message: ce.Message}})
}

func toControlError(err error) *control.Error {
	var ce *control.Error
	if errors.As(err, &ce) {
		return ce
	}
	codes := []struct {
		err  error
		code control.Code
	}{
		{ErrPathOutside, control.CodePathOutside},
		{ErrPathNotFound, control.CodePathNotFound},
		{ErrPathTried, control.CodePathTried},
		{ErrDigestInUse, control.CodeDigestInUse},
		{ErrFileDigestMismatch, control.CodeFileDigestMismatch},
		{ErrUnknownDigest, control.CodeUnknownDigest},
		{ErrPreflight, control.CodePreflight},
		{ErrAPIMajor, control.CodeAPIMajor},
		{ErrAPIMinor, control.CodeAPIMinor},
		{ErrLoad, control.CodeLoadFailed},
		{ErrNoPrevious, control.CodeNoPrevious},
		{ErrNotServable, control.CodeNotServable},
		{ErrNoHandoff, control.CodeHandoff},
	}
	for _, c := range codes {
		if errors.Is(err, c.err) {
			ce := control.Errorf(c.code, "%s", err.Error())
			ce.Reason = Reason(err)
			return ce
		}
	}
	return control.Errorf(control.CodeInternal, "%s", err.Error())
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
