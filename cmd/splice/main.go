package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

// Exit statuses shared by every subcommand.
const (
	exitOK      = 0
	exitRefused = 1 // a check ran and said no; the answer is on stdout
	exitError   = 2 // usage or I/O error; the error is on stderr
)

// errRefused is returned by a command whose check refused, after it has
// printed the verdict; run maps it to exitRefused and prints nothing more.
var errRefused = errors.New("refused")

// usageError marks errors in the command line, so they are reported with a
// pointer to --help.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// subcommands builds the subcommands, one per file. Add new ones here.
var subcommands = []func() *cobra.Command{
	newPreflightCommand,
	newFactsCommand,
	newInitCommand,
	newRegistryCommand,
	newPushCommand,
	newKeygenCommand,
	newSignCommand,
	newVerifyCommand,
	newLoadCommand,
	newSwapCommand,
	newStatusCommand,
	newRollbackCommand,
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line and returns the process exit status.
func run(args []string, stdout, stderr io.Writer) int {
	root := newRootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteC()
	var usage usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errRefused):
		return exitRefused
	case errors.As(err, &usage):
		fmt.Fprintf(stderr, "splice: %v\nRun '%s --help' for usage.\n", err, cmd.CommandPath())
		return exitError
	default:
		fmt.Fprintf(stderr, "splice: %v\n", err)
		return exitError
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "splice",
		Short: "Splice hot-swaps Go plugins inside running pods",
		// Errors are printed once, by run, which also picks the exit status.
		SilenceErrors: true,
		SilenceUsage:  true,
		// Without a subcommand there is nothing to do: say so as a usage error.
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Errorf("unknown command %q", args[0])}
			}
			return usageError{errors.New("missing command")}
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	for _, newCmd := range subcommands {
		root.AddCommand(newCmd())
	}
	return root
}

// exactArgs and minimumArgs wrap cobra's validators so argument-count
// errors are usage errors.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

func minimumArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.MinimumNArgs(n)(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}
