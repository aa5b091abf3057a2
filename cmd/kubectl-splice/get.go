package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"k8s.io/cli-runtime/pkg/genericclioptions"
)

// resourceNames are the names `get` accepts before NAME, as kubectl does (`get cv NAME`).
var resourceNames = map[string]bool{
	"cv": true, "compilerversion": true, "compilerversions": true,
	"compilerversion.splice.dev": true, "compilerversions.splice.dev": true,
}

func newGetCommand(flags *genericclioptions.ConfigFlags) *cobra.Command {
	var watch bool
	cmd := &cobra.Command{
		Use:   "get [cv] NAME",
		Short: "Show a rollout: its state, step and artifacts, and one line per targeted pod",
		Long: `Show a CompilerVersion's rollout as a tree: phase, step, stable and canary artifacts and
counts, then one line per targeted pod with what it is told to run (desired artifact, traffic
share) and what its agent reports (state, running artifact, swap latency, GC cycles during the
swap, change of the globals every GC scans) and its plugin-ready condition.

With --watch the tree is redrawn on every change of the CompilerVersion or its pods until
Ctrl-C: in place on a terminal, otherwise as successive frames separated by a blank line.`,
		Example: `  kubectl splice get greeter
  kubectl splice get cv greeter --watch -n shop`,
		Args: func(cmd *cobra.Command, args []string) error {
			_, err := getName(args)
			return err
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			name, _ := getName(args)
			s, err := newSession(flags)
			if err != nil {
				return err
			}
			if watch {
				return watchRollout(cmd.Context(), s, name, cmd.OutOrStdout(), time.Now)
			}
			cv, err := s.getCV(cmd.Context(), name)
			if err != nil {
				return err
			}
			pods, err := s.targetPods(cmd.Context(), cv)
			if err != nil {
				return err
			}
			_, err = io.WriteString(cmd.OutOrStdout(), render(cv, pods, time.Now()))
			return err
		},
	}
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "Redraw on every change of the CompilerVersion or its pods, until Ctrl-C.")
	return cmd
}

// getName accepts NAME, cv NAME and cv/NAME.
func getName(args []string) (string, error) {
	switch {
	case len(args) == 1 && strings.Contains(args[0], "/"):
		kind, name, _ := strings.Cut(args[0], "/")
		if !resourceNames[strings.ToLower(kind)] {
			return "", usageError{fmt.Errorf("unknown resource type %q: kubectl splice get shows CompilerVersions (cv) only", kind)}
		}
		if name == "" {
			return "", usageError{errors.New("missing the CompilerVersion's name after " + kind + "/")}
		}
		return name, nil
	case len(args) == 1:
		return args[0], nil
	case len(args) == 2:
		if !resourceNames[strings.ToLower(args[0])] {
			return "", usageError{fmt.Errorf("unknown resource type %q: kubectl splice get shows CompilerVersions (cv) only", args[0])}
		}
		return args[1], nil
	case len(args) == 0:
		return "", usageError{errors.New("missing the CompilerVersion's name: kubectl splice get NAME")}
	}
	return "", usageError{fmt.Errorf("too many arguments %q: kubectl splice get [cv] NAME", args)}
}

// isTerminal reports whether w is a terminal, where --watch redraws in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
