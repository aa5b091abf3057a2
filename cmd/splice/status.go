package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/splice-dev/splice/host/control"
)

func newStatusCommand() *cobra.Command {
	var f hostFlags
	var output string
	cmd := &cobra.Command{
		Use:   "status --socket PATH [-o text|json]",
		Short: "Print a running host's status: versions, what serves, hand-offs",
		Long: `Print a running host's status: its instance, PID and re-exec generation,
the version serving calls, the canary, the version a rollback would return to
(as far as the last swap tells), and every version it has tried, oldest
first. -o json prints the host's status object as it sends it.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return usageError{fmt.Errorf("-o %q: want text or json", output)}
			}
			d, err := f.driver(cmd)
			if err != nil {
				return err
			}
			st, err := d.Status(context.Background())
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			return printStatus(cmd.OutOrStdout(), st)
		},
	}
	f.bind(cmd, false)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// previous is the version a rollback would return to, when the status tells: the version the
// last successful swap replaced. The host does not report its rollback history, so after a
// rollback, a restore or an automatic rollback it is unknown.
func previous(st *control.Status) string {
	s := st.LastSwap
	if s == nil || s.Error != "" || s.Op != control.OpSwap || s.From == "" || s.From == st.Current {
		return ""
	}
	return s.From
}

func printStatus(w io.Writer, st *control.Status) error {
	pw := &printer{w: w}
	gen := 0
	if st.Handoff != nil {
		gen = st.Handoff.Generation
	}
	pw.printf("instance:    %s (pid %d, generation %d)\n", orDash(st.Instance), st.PID, gen)
	pw.printf("host:        %s, plugin API %s\n", st.HostGoVersion, orDash(st.APIVersion))
	pw.printf("serving:     %s\n", orDash(st.Current))
	if st.Canary != "" {
		pw.printf("canary:      %s (%d%% of calls)\n", st.Canary, st.CanaryPercent)
	}
	prev := previous(st)
	if prev == "" && st.LastSwap != nil && st.LastSwap.Op != control.OpSwap {
		prev = "unknown (the last change was a " + string(st.LastSwap.Op) + ")"
	}
	pw.printf("previous:    %s\n", orDash(prev))
	if s := st.LastSwap; s != nil {
		pw.printf("last swap:   %s %s -> %s at %s (%.3fs)%s\n", s.Op, orDash(s.From), orDash(s.To), s.StartedAt.UTC().Format(time.RFC3339), s.Seconds, swapError(s))
	}
	pw.printf("versions:    %d opened\n", st.LoadedVersions)
	if pw.err != nil || len(st.Versions) == 0 {
		return pw.err
	}
	pw.printf("\n")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	tp := &printer{w: tw}
	tp.printf("DIGEST\tSTATE\tAPI\tCALLS\tERRORS\tPANICS\tIN FLIGHT\tLOADED\tFILE\n")
	for _, v := range st.Versions {
		loaded := "-"
		if !v.LoadedAt.IsZero() {
			loaded = v.LoadedAt.UTC().Format(time.RFC3339)
		}
		tp.printf("%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", v.Digest, v.State, orDash(v.APIVersion), v.Calls, v.Errors, v.Panics, v.InFlight, loaded, filepath.Base(v.Path))
	}
	for _, v := range st.Versions {
		if v.Error != "" {
			tp.printf("%s failed: %s\n", v.Digest, v.Error)
		}
	}
	if tp.err != nil {
		return tp.err
	}
	return tw.Flush()
}

func swapError(s *control.SwapResult) string {
	if s.Error == "" {
		return ""
	}
	return ", failed: " + s.Error
}
