package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/splice-dev/splice/internal/localloop"
)

func newRegistryCommand() *cobra.Command {
	var addr, dir string
	var verbose bool
	cmd := &cobra.Command{
		Use:   "registry [--addr 127.0.0.1:5000] [--dir DIR]",
		Short: "Serve a loopback OCI registry for the local loop",
		Long: `Serve an OCI registry (go-containerregistry's) on a loopback address until
SIGINT or SIGTERM, for 'splice push' and 'splice load' without a cluster. The
address is printed on standard output once it accepts connections
(--addr 127.0.0.1:0 picks a free port).

It has no authentication and no TLS, so it listens only on loopback
(127.0.0.1, [::1] or localhost): any other address is refused. Clients use
plain HTTP for loopback addresses without being told.

Without --dir everything is held in memory and lost when it stops. With
--dir, blobs (plugin layers and configs) are kept in DIR across restarts, but
manifests and tags are still held in memory: push again after a restart (the
blobs are not uploaded twice).`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := localloop.CheckLoopback(addr); err != nil {
				return usageError{fmt.Errorf("--addr: %w", err)}
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			o := localloop.RegistryOptions{Addr: addr, Dir: dir, Ready: func(a string) {
				fmt.Fprintln(cmd.OutOrStdout(), a)
				where := "in memory"
				if dir != "" {
					where = "blobs in " + dir + ", manifests in memory"
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "splice registry: serving on http://%s (%s); push with: splice push FILE.so %s/NAME; stop with Ctrl-C\n", a, where, a)
			}}
			if verbose {
				o.Log = cmd.ErrOrStderr()
			}
			return localloop.ServeRegistry(ctx, o)
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:5000", "loopback address to listen on (port 0: any free port)")
	cmd.Flags().StringVar(&dir, "dir", "", "keep blobs in this directory across restarts (default: everything in memory)")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "log every request on standard error")
	return cmd
}
