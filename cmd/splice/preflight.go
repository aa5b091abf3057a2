package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/splice-dev/splice/host/preflight"
)

// preflightResult is what `splice preflight -o json` prints.
type preflightResult struct {
	Host   string   `json:"host"`
	Plugin string   `json:"plugin"`
	Loaded []string `json:"loaded,omitempty"`
	preflight.Verdict
}

func newPreflightCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "preflight HOST PLUGIN.so [ALREADY-LOADED.so ...]",
		Short: "Predict whether a host can plugin.Open a plugin, without loading it",
		Long: `Predict whether plugin.Open of PLUGIN.so would succeed in a process running
HOST, and whether the result is a build Go supports. Nothing is loaded.

HOST is the host binary or its facts file (see 'splice facts'). List the
plugins the process already opened, in the order it opened them, including
those whose Open failed: their packages stay loaded.

Exit status: 0 when the load would succeed and is supported, 1 when it is
refused, 2 on usage or I/O errors.`,
		Args: minimumArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return usageError{fmt.Errorf("-o %q: want text or json", output)}
			}
			host, err := preflight.ReadFacts(args[0])
			if err != nil {
				return err
			}
			plugin, err := preflight.ReadFacts(args[1])
			if err != nil {
				return err
			}
			var loaded []*preflight.Facts
			for _, p := range args[2:] {
				l, err := preflight.ReadFacts(p)
				if err != nil {
					return err
				}
				loaded = append(loaded, l)
			}
			res := preflightResult{Host: args[0], Plugin: args[1], Loaded: args[2:], Verdict: preflight.Check(host, plugin, loaded)}
			if err := printVerdict(cmd.OutOrStdout(), output, res); err != nil {
				return fmt.Errorf("print verdict: %w", err)
			}
			if !res.OK {
				return errRefused
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func printVerdict(w io.Writer, format string, res preflightResult) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	if res.OK {
		_, err := fmt.Fprintf(w, "ok: %s can load %s\n", res.Host, res.Plugin)
		return err
	}
	noun := "problem"
	if len(res.Problems) != 1 {
		noun += "s"
	}
	if _, err := fmt.Fprintf(w, "refused: %s cannot load %s (%d %s)\n", res.Host, res.Plugin, len(res.Problems), noun); err != nil {
		return err
	}
	for _, p := range res.Problems {
		if _, err := fmt.Fprintf(w, "  %s: %s\n", p.Reason, p.Message); err != nil {
			return err
		}
	}
	return nil
}
