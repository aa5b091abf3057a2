package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/splice-dev/splice/builder"
	"github.com/splice-dev/splice/host/preflight"
)

const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

// usageError marks command-line mistakes (exit status 2).
type usageError struct{ error }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := &cobra.Command{
		Use:           "builder",
		Short:         "Build Go plugins into Splice artifacts",
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newBuildCommand(), newFactsCommand(), newInstallCommand())
	cmd, err := root.ExecuteC()
	var usage usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errReported):
		return exitFailed
	case errors.As(err, &usage):
		fmt.Fprintf(stderr, "builder: %v\nRun '%s --help' for usage.\n", err, cmd.CommandPath())
		return exitUsage
	default:
		fmt.Fprintf(stderr, "builder: %v\n", err)
		return exitFailed
	}
}

// errReported is returned after a build failure was printed and recorded.
var errReported = errors.New("build failed")

func newBuildCommand() *cobra.Command {
	o := builder.DefaultOptions()
	cmd := &cobra.Command{
		Use:   "build (--source DIR | --git-url URL --revision REV) --package PKG [--go-version 1.x.y] [--contract PKG.Iface] [--repository REPO]",
		Short: "Build a plugin with a unique plugin path, record its build facts and push it",
		Long: `Build a Go plugin with -buildmode=plugin -trimpath and cgo, after checking that the
go command is exactly --go-version (default: whatever release the go on PATH is;
the hosts must be built with the same one). The constructor --symbol is then
type-checked: a function without parameters returning an interface, exactly
func() of --contract when given. The package is copied into a directory named
after a hash of every build input, so the plugin path is the same for the same
inputs and new for any change. The build facts are read back from the .so (the
format 'splice preflight' reads) and, with --repository, the plugin is pushed as a
Splice OCI artifact.

Progress goes to standard error. The result (ref, digest, plugin path, ...) is
printed as JSON on standard output and written to --termination-message-path; a
failure writes {"reason": ..., "error": ...} there instead and exits 1.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			explicitPath := cmd.Flags().Changed(builder.FlagTerminationMessagePath)
			res, err := builder.Build(cmd.Context(), o, cmd.ErrOrStderr())
			if err != nil {
				f := builder.NewFailure(err, o.BuildKey)
				if werr := builder.WriteTermination(o.TerminationMessagePath, f, !explicitPath); werr != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "builder: %v\n", werr)
				}
				if f.Reason == builder.ReasonInvalidInput {
					return usageError{err}
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "builder: build failed (%s): %v\n", f.Reason, err)
				return errReported
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			if err := enc.Encode(res); err != nil {
				return fmt.Errorf("print result: %w", err)
			}
			// The controller gets the result without the local path and timings it has no
			// use for, keeping the message small.
			msg := *res
			msg.Path = ""
			if err := builder.WriteTermination(o.TerminationMessagePath, msg, !explicitPath); err != nil {
				return err
			}
			return nil
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// newFactsCommand records a host binary's build facts: the same functions and file format
// as `splice facts`, offered here so a host image's build stage that already has the builder
// needs nothing else.
func newFactsCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "facts BINARY [-o FILE]",
		Short: "Record the build facts of a host binary (for hosts shipped stripped)",
		Long: `Record a Go host binary's build facts (toolchain, platform, settings, modules and
the package hashes plugin.Open compares) as JSON, to FILE or standard output. Run
it on the unstripped binary at build time; the agent's preflight accepts the file
in place of a host whose symbols were stripped (-ldflags=-s -w).`,
		Args: func(cmd *cobra.Command, args []string) error {
			if err := cobra.ExactArgs(1)(cmd, args); err != nil {
				return usageError{err}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			facts, err := preflight.ReadFacts(args[0])
			if err != nil {
				return err
			}
			if output == "" || output == "-" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(facts)
			}
			return facts.WriteFile(output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "write the facts to this file instead of standard output")
	return cmd
}

// newInstallCommand copies the running executable to DEST. The build Job's init container
// runs it from the manager's image (which has no cp) to hand the builder to the golang image.
func newInstallCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "install DEST",
		Short: "Copy this executable to DEST (used by the build Job's init container)",
		Args: func(cmd *cobra.Command, args []string) error {
			if err := cobra.ExactArgs(1)(cmd, args); err != nil {
				return usageError{err}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("locate this executable: %w", err)
			}
			return install(self, args[0])
		},
	}
}

// install copies src to dst through a temporary file and a rename, so a reader never sees
// half an executable.
func install(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".*")
	if err != nil {
		return fmt.Errorf("install into %s (is the volume mounted and writable?): %w", filepath.Dir(dst), err)
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		return fmt.Errorf("install: copy to %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return fmt.Errorf("install: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	return nil
}
