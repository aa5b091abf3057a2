package localloop

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/splice-dev/splice/artifact"
	"github.com/splice-dev/splice/host/control"
	"github.com/splice-dev/splice/host/preflight"
)

// Refusal is a check that said no before anything changed in the host (or the host's own
// check, with the same meaning): the plugin API step, or the preflight. The command line
// prints it as a verdict and exits 1.
type Refusal struct {
	// Ref names the plugin as given (reference, file or digest).
	Ref string
	// Reason is CamelCase: the preflight's first reason, or an API step reason.
	Reason string
	// Verdict is the preflight's refusal, when it refused.
	Verdict *preflight.Verdict
	// Err says what was refused and what to do.
	Err error
}

func (r *Refusal) Error() string { return r.Err.Error() }
func (r *Refusal) Unwrap() error { return r.Err }

// Options configure a Driver.
type Options struct {
	// Socket is the host's control socket. Required.
	Socket string
	// SharedDir is the directory shared with the host, as this process sees it; plugin files
	// are placed in it. Default: the directory of Socket.
	SharedDir string
	// Registry are the options of pulls (credentials, plain HTTP, the layer bound).
	Registry []artifact.Option
	// AllowMinor consents to a minor plugin API step on a swap.
	AllowMinor bool
	// Progress, when set, is told what each long step is doing.
	Progress func(format string, args ...any)
	// PullTimeout bounds a pull (default 5m); LoadTimeout a load, swap or rollback (default
	// 3m, above the host library's 2m plugin.Open bound); HostTimeout every other request
	// (default 10s).
	PullTimeout, LoadTimeout, HostTimeout time.Duration
}

// Driver drives one host over its control socket, as the agent would.
type Driver struct {
	o    Options
	host *control.Client
}

// New checks the options and returns a Driver.
func New(o Options) (*Driver, error) {
	if o.Socket == "" {
		return nil, errors.New("the host's control socket is required")
	}
	if o.SharedDir == "" {
		o.SharedDir = filepath.Dir(o.Socket)
	}
	if fi, err := os.Stat(o.SharedDir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("shared directory %s is not a directory: %v", o.SharedDir, errOr(err, "not a directory"))
	}
	if o.PullTimeout <= 0 {
		o.PullTimeout = 5 * time.Minute
	}
	if o.LoadTimeout <= 0 {
		o.LoadTimeout = 3 * time.Minute
	}
	if o.HostTimeout <= 0 {
		o.HostTimeout = 10 * time.Second
	}
	if o.Progress == nil {
		o.Progress = func(string, ...any) {}
	}
	return &Driver{o: o, host: control.NewClient(o.Socket)}, nil
}

func errOr(err error, s string) any {
	if err != nil {
		return err
	}
	return s
}

// Status reads the host's status.
func (d *Driver) Status(ctx context.Context) (*control.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, d.o.HostTimeout)
	defer cancel()
	st, err := d.host.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the host's status: %w", err)
	}
	return st, nil
}

// Result is what Load, Swap or Rollback did.
type Result struct {
	// Source is the plugin brought in (nil for a rollback, or a version the host held).
	Source *Source
	// Digest names the version.
	Digest string
	// Verdict is the preflight's (nil when none ran: the host held the version already).
	Verdict *preflight.Verdict
	// Loaded is the host's record of the version it just loaded (nil: it held it already).
	Loaded *control.VersionStatus
	// Swap is the host's record of the routing change (nil: none).
	Swap *control.SwapResult
	// Unchanged is set when the host was already where it was asked to be.
	Unchanged bool
	// Status is the host's status afterwards.
	Status *control.Status
}

// Load brings the plugin named by arg — a reference pinned by digest, a local plugin file, or
// the digest of a version the host holds — into the host, and with swap makes it the version
// serving calls. It does only what is missing; a version the host holds is never fetched
// again. Before anything reaches the host, it refuses (*Refusal) a plugin API step the
// options do not consent to and a plugin the preflight says the host cannot open.
func (d *Driver) Load(ctx context.Context, arg string, swap bool) (*Result, error) {
	st, err := d.Status(ctx)
	if err != nil {
		return nil, err
	}
	digest, err := d.digestOf(arg)
	if err != nil {
		return nil, err
	}
	if v := st.Version(digest); v != nil {
		return d.reuse(ctx, st, arg, *v, swap)
	}
	if control.ValidDigest(arg) {
		return nil, fmt.Errorf("the host holds no version %s: give a reference REPO@sha256:... or a plugin file to load", arg)
	}
	src, err := d.fetch(ctx, arg)
	if err != nil {
		return nil, err
	}
	if r := apiStep(arg, st.APIVersion, servingAPI(st), src.APIVersion, swap, d.o.AllowMinor); r != nil {
		d.discard(src)
		return nil, r
	}
	verdict, err := d.preflight(ctx, st, src)
	if err != nil {
		d.discard(src)
		return nil, err
	}
	res := &Result{Source: src, Digest: src.Digest, Verdict: verdict}
	if err := d.load(ctx, res, swap); err != nil {
		return nil, err
	}
	return d.finish(ctx, res)
}

// discard removes a file this call placed in the shared directory and then refused: the host
// never saw it. A file that was there before is left alone (a host may have it loaded).
func (d *Driver) discard(src *Source) {
	if !src.Reused {
		if err := os.Remove(src.Path); err == nil {
			d.o.Progress("removed %s: refused before the host saw it", filepath.Base(src.Path))
		}
	}
}

// finish reads the status after a change.
func (d *Driver) finish(ctx context.Context, res *Result) (*Result, error) {
	st, err := d.Status(ctx)
	if err != nil {
		return nil, err
	}
	res.Status = st
	return res, nil
}

func servingAPI(st *control.Status) string {
	if cur := st.Version(st.Current); cur != nil {
		return cur.APIVersion
	}
	return ""
}

// digestOf names the version arg stands for without fetching it: a reference's manifest
// digest, a file's sha256, or the digest itself.
func (d *Driver) digestOf(arg string) (string, error) {
	if control.ValidDigest(arg) {
		return arg, nil
	}
	if isFile(arg) {
		return control.FileDigest(arg)
	}
	if strings.HasSuffix(arg, ".so") && !strings.Contains(arg, "@") {
		_, err := os.Stat(arg)
		return "", fmt.Errorf("plugin file %s: %v", arg, errOr(err, "not a regular file"))
	}
	ref, err := artifact.ParseRef(arg, d.o.Registry...)
	if err != nil {
		return "", fmt.Errorf("%q is neither a plugin file nor a reference: %w", arg, err)
	}
	return ref.DigestStr(), nil
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// reuse makes a version the host holds current (with swap), or says why it cannot.
func (d *Driver) reuse(ctx context.Context, st *control.Status, arg string, v control.VersionStatus, swap bool) (*Result, error) {
	res := &Result{Digest: v.Digest, Status: st}
	switch {
	case v.State == control.StateFailed:
		return nil, fmt.Errorf("the host already tried %s (%s) and it failed; a version is tried once per host process (restart the host to try it again): %s", arg, v.Digest, v.Error)
	case v.LoadedAt.IsZero():
		return nil, fmt.Errorf("the host is still loading %s; try again when it has", v.Digest)
	case !swap || (st.IsCurrent(v.Digest) && st.Canary == ""):
		res.Unchanged = true
		return res, nil
	}
	if r := apiStep(arg, st.APIVersion, servingAPI(st), v.APIVersion, true, d.o.AllowMinor); r != nil {
		return nil, r
	}
	d.o.Progress("swapping to %s (loaded already)", v.Digest)
	sr, err := callHost(ctx, d.o.LoadTimeout, func(ctx context.Context) (*control.SwapResult, error) {
		return d.host.Swap(ctx, control.SwapRequest{Digest: v.Digest, AllowMinor: d.o.AllowMinor})
	})
	if err != nil {
		return nil, hostRefusal(arg, "swap to "+v.Digest, err)
	}
	res.Swap = sr
	return d.finish(ctx, res)
}

// load asks the host to open the file (and swap to it).
func (d *Driver) load(ctx context.Context, res *Result, swap bool) error {
	src := res.Source
	// Relative to the shared directory: the host resolves it against its own view of the
	// directory, which may sit elsewhere (a container's mount).
	req := control.LoadRequest{Path: filepath.Base(src.Path), Digest: src.Digest, FileDigest: src.FileDigest, Swap: swap, AllowMinor: swap && d.o.AllowMinor}
	what := "load"
	if swap {
		what = "load and swap to"
	}
	d.o.Progress("asking the host to %s %s", what, src.Digest)
	start := time.Now()
	resp, err := callHost(ctx, d.o.LoadTimeout, func(ctx context.Context) (*control.LoadResponse, error) { return d.host.Load(ctx, req) })
	if err != nil {
		return hostRefusal(src.Arg, "host "+what+" "+src.Digest, err)
	}
	d.o.Progress("host loaded %s in %.3fs (plugin.Open and checks %.3fs)", src.Digest, time.Since(start).Seconds(), resp.Version.LoadSeconds)
	res.Loaded, res.Swap = &resp.Version, resp.Swap
	return nil
}

// Rollback asks the host to drop its canary, or else to return to the previous version.
func (d *Driver) Rollback(ctx context.Context) (*Result, error) {
	sr, err := callHost(ctx, d.o.LoadTimeout, d.host.Rollback)
	if err != nil {
		if control.IsCode(err, control.CodeNoPrevious) {
			return nil, fmt.Errorf("nothing to roll back to: %w", err)
		}
		return nil, fmt.Errorf("rollback: %w", err)
	}
	return d.finish(ctx, &Result{Digest: sr.To, Swap: sr})
}

// hostRefusal turns the host's refusal of an API step or of its own preflight into a
// Refusal, with what to do; other errors are returned as they are.
func hostRefusal(ref, what string, err error) error {
	var ce *control.Error
	if !errors.As(err, &ce) {
		return fmt.Errorf("%s: %w", what, err)
	}
	switch ce.Code {
	case control.CodeAPIMinor:
		return &Refusal{Ref: ref, Reason: ReasonMinorAPIChangeNotAllowed, Err: fmt.Errorf("%s: %w; pass %s to consent", what, err, FlagAllowMinor)}
	case control.CodeAPIMajor:
		return &Refusal{Ref: ref, Reason: ReasonMajorAPIChange, Err: fmt.Errorf("%s: %w; a major plugin API change cannot be swapped in place", what, err)}
	case control.CodePreflight:
		return &Refusal{Ref: ref, Reason: orNone(ce.Reason), Err: fmt.Errorf("%s: %w", what, err)}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// callHost runs one control request with a deadline.
func callHost[T any](ctx context.Context, timeout time.Duration, fn func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return fn(ctx)
}
