package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/splice-dev/splice/host/preflight"
)

func newFactsCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "facts BINARY [-o FILE]",
		Short: "Record the build facts of a host binary or plugin",
		Long: `Record the build facts of a Go host binary or plugin (toolchain, platform,
build settings, modules and the per-package hashes plugin.Open compares) as
JSON, to FILE or, without -o, to standard output.

'splice preflight' accepts the file in place of the binary. Record a host's
facts at build time when the shipped binary loses its symbols.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			facts, err := preflight.ReadFacts(args[0])
			if err != nil {
				return err
			}
			if output == "" || output == "-" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(facts); err != nil {
					return fmt.Errorf("print facts of %s: %w", args[0], err)
				}
				return nil
			}
			return facts.WriteFile(output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "write the facts to this file instead of standard output")
	return cmd
}
