// Package artifact is the Splice plugin artifact: how a Go plugin (a `.so` built with
// `go build -buildmode=plugin`) and its build facts travel through an OCI registry. The builder
// pushes it (Push), the agent sidecar pulls it into the pod's shared volume (Pull), and the
// controller reads its facts without downloading the plugin (FetchConfig).
//
// # Format (version 1)
//
// One OCI image manifest (application/vnd.oci.image.manifest.v1+json, schemaVersion 2):
//
//	artifactType  application/vnd.splice.plugin.v1
//	config        application/vnd.splice.plugin.config.v1+json   the Config JSON below
//	layers[0]     application/vnd.splice.plugin.layer.v1+so      the .so, byte for byte
//	              annotation org.opencontainers.image.title = the .so's file name at build
//	annotations   org.opencontainers.image.created   builtAt, RFC 3339
//	              org.opencontainers.image.source    source repository URL   (when given)
//	              org.opencontainers.image.revision  source revision         (when given)
//	              org.opencontainers.image.version   release name            (when given)
//	              splice.dev/go-version              the toolchain, e.g. go1.26.8
//	              splice.dev/api-version             the plugin API semver the plugin declares
//
// The config blob is a preflight.Facts object (the plugin's build facts, exactly as
// preflight.ReadFacts reads them from the .so, minus the local path) with two more top-level
// fields, "apiVersion" and "builtAt". Because the facts are not nested, the config blob saved to
// a file is itself a facts file: `splice preflight HOST config.json` works on it.
//
// The layer is stored uncompressed, on purpose: its digest is then the sha256 of the very file
// the host opens (the host reports the same value as the version's fileDigest), its size bound
// is exact (no decompression bomb), and nothing has to be unpacked in the pod. The price is
// registry bytes: a plugin gzips to roughly a third.
//
// # Pulling
//
// Pull accepts only references pinned by digest (registry/repo@sha256:<64 hex>) and trusts
// nothing the registry says: it checks the manifest's bytes against that digest, checks media
// types, refuses layers over a size bound before downloading them, counts and hashes the layer
// while writing it, and checks that the config's facts describe the file it got. The file is
// named after the manifest digest, <destDir>/<hex>.so, and appears atomically: it is written to
// a temporary file and hard-linked into place, and link never replaces an existing file. A
// plugin file that a host has loaded must never change (an in-place overwrite kills the host
// with SIGSEGV, see DESIGN.md), so an existing file is reused when its content is right and
// refused otherwise; it is never written to.
//
// # What it may not touch
//
// It imports go-containerregistry (name, authn, remote, transport), preflight and the standard
// library — nothing from Kubernetes, the host library or the agent, so the builder, the
// controller and the benchmark can all link it. It never loads, maps or executes a plugin, and
// writes only inside the destination directory it is given.
package artifact
