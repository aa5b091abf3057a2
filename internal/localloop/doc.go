// Package localloop drives a running Splice host outside Kubernetes: the local loop behind
// `splice registry`, `splice push` and `splice load|swap|status|rollback`.
//
// It does what the agent sidecar does for one host, without a pod: pull an artifact pinned by
// digest (or take a local plugin file), place it in the directory shared with the host under a
// name derived from its digest, check the plugin API step and run the preflight against the
// host's own build facts, and only then ask the host, over its control socket, to load, swap or
// roll back. It also serves a loopback OCI registry and pushes plugin files that the builder
// did not build.
//
// What it may import: artifact, host/control, host/preflight, go-containerregistry and the
// standard library — never the API types (api/v1alpha1), the sidecar or k8s.io, so that the
// local loop links no Kubernetes (a test holds it to that).
//
// Files in the shared directory: a pulled artifact is <hex of the manifest digest>.so (what
// artifact.Pull writes, and what the agent loads); a local file is copied to <hex of the
// file's sha256>.so and loaded under the digest sha256:<that hex> (what the examples and the
// greeter's -digest default use). A name is never reused for other content: a host may have
// the file loaded, and it tries each path once per process.
package localloop
