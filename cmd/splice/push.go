package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/splice-dev/splice/artifact"
	"github.com/splice-dev/splice/internal/localloop"
)

func newPushCommand() *cobra.Command {
	var (
		tags                                  []string
		version, apiVersion, source, revision string
		insecure                              bool
	)
	cmd := &cobra.Command{
		Use:   "push FILE.so REPO [--tag T] [--version V] [--api-version A] [--insecure]",
		Short: "Push a Go plugin built without the builder as a Splice artifact",
		Long: `Push FILE.so, a plugin built with go build -buildmode=plugin by any means, to
REPO (registry/path/name) as a Splice plugin artifact, and print its
reference pinned by digest, REPO@sha256:..., on standard output.

The artifact's config records the plugin's build facts, read from the file
(what 'splice facts' prints), and its plugin API version: by default the
value of the plugin's own exported variable, var APIVersion = "x.y.z", read
from the file without loading it; --api-version overrides it.

A file that is not a Go plugin (a host binary, another file) is refused.
Credentials come from the Docker config ($DOCKER_CONFIG or ~/.docker);
every registry is spoken to over TLS, unless --insecure allows plain HTTP
(a local registry without a certificate).`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := []artifact.Option{artifact.WithInsecure(insecure), artifact.WithVersion(version),
				artifact.WithSource(source), artifact.WithRevision(revision)}
			for _, t := range tags {
				opts = append(opts, artifact.WithTag(t))
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "splice push: pushing %s to %s\n", args[0], args[1])
			ref, cfg, err := localloop.Push(context.Background(), args[0], args[1], localloop.PushOptions{APIVersion: apiVersion, Registry: opts})
			if errors.Is(err, localloop.ErrNotAPlugin) {
				return err
			}
			if err != nil {
				return fmt.Errorf("push %s: %w", args[0], err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "splice push: plugin path %s, plugin API %s, %s\n", cfg.PluginPath, cfg.APIVersion, cfg.GoVersion)
			fmt.Fprintln(cmd.OutOrStdout(), ref)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&tags, "tag", nil, "also tag the artifact (repeatable); the printed reference stays pinned by digest")
	f.StringVar(&version, "version", "", "release name, recorded as org.opencontainers.image.version")
	f.StringVar(&apiVersion, "api-version", "", "plugin API version to declare (default: the plugin's own APIVersion variable)")
	f.StringVar(&source, "source", "", "source URL, recorded as org.opencontainers.image.source")
	f.StringVar(&revision, "revision", "", "source revision, recorded as org.opencontainers.image.revision")
	f.BoolVar(&insecure, "insecure", false, "use plain HTTP for any registry (without it, every registry gets TLS)")
	return cmd
}
