package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/splice-dev/splice/artifact"
	"github.com/splice-dev/splice/host/control"
	"github.com/splice-dev/splice/internal/localloop"
)

// hostFlags are the flags of the commands that drive a running host.
type hostFlags struct {
	socket, shared string
	insecure       bool
	allowMinor     bool
}

func (f *hostFlags) bind(cmd *cobra.Command, loads bool) {
	cmd.Flags().StringVar(&f.socket, "socket", "", "the host's control socket, SHARED/"+control.SocketName+" (required)")
	if !loads {
		return
	}
	cmd.Flags().StringVar(&f.shared, "shared", "", "the directory shared with the host, where plugin files go (default: the directory of --socket)")
	cmd.Flags().BoolVar(&f.insecure, "insecure", false, "pull over plain HTTP from any registry (without it, every registry gets TLS)")
	cmd.Flags().BoolVar(&f.allowMinor, "allow-minor-api-change", false, "consent to swapping to a plugin whose API minor version differs from the one serving")
}

// driver checks the flags and returns a driver whose progress lines go to stderr.
func (f *hostFlags) driver(cmd *cobra.Command) (*localloop.Driver, error) {
	if f.socket == "" {
		return nil, usageError{errors.New("--socket is required: the host's control socket, SHARED/" + control.SocketName)}
	}
	stderr := cmd.ErrOrStderr()
	d, err := localloop.New(localloop.Options{
		Socket: f.socket, SharedDir: f.shared, AllowMinor: f.allowMinor,
		Registry: []artifact.Option{artifact.WithInsecure(f.insecure)},
		Progress: func(format string, args ...any) {
			fmt.Fprintf(stderr, "splice %s: %s\n", cmd.Name(), fmt.Sprintf(format, args...))
		},
	})
	if err != nil {
		if f.shared == "" {
			return nil, usageError{fmt.Errorf("%w (the directory of --socket; give --shared if the host's shared directory is elsewhere here)", err)}
		}
		return nil, usageError{fmt.Errorf("--shared: %w", err)}
	}
	return d, nil
}

const hostLong = `
ARG is a reference pinned by digest (REPO@sha256:..., as 'splice push'
prints), a local plugin file (FILE.so), or the digest of a version the host
holds already. A pulled artifact is written to SHARED/<hex of its digest>.so;
a local file is copied to SHARED/<hex of its sha256>.so and named by that
digest. The host must see SHARED as its shared directory (the directory of
--socket unless --shared says otherwise).

Before anything reaches the host, the plugin API step is checked (a minor
step needs --allow-minor-api-change on a swap, a major step is refused) and
the preflight runs against the host's own build facts and every plugin it has
tried. Progress goes to standard error, the outcome to standard output.

Exit status: 0 on success, 1 when a check refused (the verdict is on standard
output), 2 on usage, registry and host errors.`

func newLoadCommand() *cobra.Command { return newBringCommand("load", false) }
func newSwapCommand() *cobra.Command { return newBringCommand("swap", true) }

// newBringCommand is load (swap false) or swap.
func newBringCommand(name string, swap bool) *cobra.Command {
	var f hostFlags
	short := "Load a plugin into a running host, without swapping to it"
	if swap {
		short = "Make a plugin the version a running host serves, loading it first if needed"
	}
	cmd := &cobra.Command{
		Use:   name + " --socket PATH [--shared DIR] ARG",
		Short: short,
		Long:  short + ",\nas the agent sidecar would, without Kubernetes.\n" + hostLong,
		Example: `  splice registry &                       # 127.0.0.1:5000
  ref=$(splice push v2.so 127.0.0.1:5000/greeter)
  splice ` + name + ` --socket /tmp/app/splice-host.sock "$ref"
  splice ` + name + ` --socket /tmp/app/splice-host.sock ./v3.so   # no registry`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := f.driver(cmd)
			if err != nil {
				return err
			}
			res, err := d.Load(context.Background(), args[0], swap)
			if err != nil {
				return refusedOrError(cmd.OutOrStdout(), f.socket, err)
			}
			return printResult(cmd.OutOrStdout(), args[0], res, swap)
		},
	}
	f.bind(cmd, true)
	return cmd
}

func newRollbackCommand() *cobra.Command {
	var f hostFlags
	cmd := &cobra.Command{
		Use:   "rollback --socket PATH",
		Short: "Make a running host drop its canary, or else serve its previous version again",
		Long: `Make a running host drop its canary, or else serve the version that served
before the current one. No API step is checked: that version served before.

Exit status: 0 on success, 2 when there is nothing to roll back to or on
usage and host errors.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := f.driver(cmd)
			if err != nil {
				return err
			}
			res, err := d.Rollback(context.Background())
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "rolled back (%s): serving %s, was %s\n", res.Swap.Op, orDash(res.Status.Current), orDash(res.Swap.From))
			return err
		},
	}
	f.bind(cmd, false)
	return cmd
}

// refusedOrError prints a refusal as a verdict and returns errRefused, or returns err.
func refusedOrError(w io.Writer, socket string, err error) error {
	var r *localloop.Refusal
	if !errors.As(err, &r) {
		return err
	}
	if r.Verdict != nil {
		res := preflightResult{Host: "the host on " + socket, Plugin: r.Ref, Verdict: *r.Verdict}
		if perr := printVerdict(w, "text", res); perr != nil {
			return perr
		}
		return errRefused
	}
	if _, perr := fmt.Fprintf(w, "refused: %s\n  %s: %v\n", r.Ref, r.Reason, r.Err); perr != nil {
		return perr
	}
	return errRefused
}

// printResult says what a load or swap did.
func printResult(w io.Writer, arg string, res *localloop.Result, swap bool) error {
	pw := &printer{w: w}
	if res.Verdict != nil {
		pw.printf("ok: the host can load %s (preflight)\n", arg)
	}
	switch {
	case res.Unchanged && swap:
		pw.printf("%s serves already; nothing changed\n", res.Digest)
	case res.Unchanged:
		pw.printf("%s is loaded already; nothing changed\n", res.Digest)
	}
	if v := res.Loaded; v != nil {
		pw.printf("loaded %s (plugin path %s, plugin API %s) in %.3fs\n", v.Digest, v.PluginPath, orDash(v.APIVersion), v.LoadSeconds)
	}
	if s := res.Swap; s != nil {
		pw.printf("serving %s (was %s), swapped in %.3fs\n", s.To, orDash(s.From), s.Seconds)
	}
	return pw.err
}

// printer keeps the first write error, so that a sequence of lines is checked once.
type printer struct {
	w   io.Writer
	err error
}

func (p *printer) printf(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
