package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// usageError marks errors in the command line, so they are reported with a pointer to --help.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func main() {
	// controller-runtime's client and cache log through this logger; a CLI says what matters
	// itself and must not complain that no logger was set.
	ctrllog.SetLogger(logr.Discard())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the command line and returns the process exit status: 0 on success, 1 on any
// error (printed on stderr as kubectl prints its own).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	var usage usageError
	if errors.As(err, &usage) {
		// CommandPath says "kubectl splice get", thanks to the root's display name.
		fmt.Fprintf(stderr, "error: %v\nSee '%s --help' for usage.\n", err, cmd.CommandPath())
	} else {
		fmt.Fprintf(stderr, "error: %v\n", err)
	}
	return 1
}

func newRootCommand() *cobra.Command {
	flags := genericclioptions.NewConfigFlags(true)
	root := &cobra.Command{
		Use:   "kubectl-splice",
		Short: "Show and steer Splice rollouts of Go plugins into running pods",
		Long: `Show and steer Splice rollouts of Go plugins into running pods.

Controls are annotations on the CompilerVersion, never spec changes, so GitOps tools
that own the spec do not revert them.`,
		Annotations: map[string]string{
			// Cobra prints "kubectl splice" in usage when run as a kubectl plugin.
			cobra.CommandDisplayNameAnnotation: "kubectl splice",
		},
		// Errors are printed once, by run.
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	flags.AddFlags(root.PersistentFlags())
	root.AddCommand(
		newGetCommand(flags),
		newPromoteCommand(flags),
		newPauseCommand(flags),
		newResumeCommand(flags),
		newAbortCommand(flags),
		newRetryCommand(flags),
	)
	return root
}

// exactlyOneName is the argument rule of the control commands.
func exactlyOneName(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return usageError{fmt.Errorf("%s takes exactly one argument, the CompilerVersion's name (got %d)", cmd.Name(), len(args))}
	}
	return nil
}
