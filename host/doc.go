// Package host is the library an application links to run its business logic as Go plugins
// (`go build -buildmode=plugin`) and swap them without restarting.
//
// A Slot[T] holds the versions of one plugin interface T. Load opens and verifies a plugin
// file (serialized; each path tried at most once; the preflight checked against the host and
// every file opened before; symbols type-checked; plugin API semver enforced). Swap makes a
// loaded version current with one atomic store; Call reads it with one atomic load, recovers
// the plugin's panics, counts calls, errors and panics per version, and rolls back past a
// threshold. Route splits calls between the current version and a canary by a stable hash of
// a key. Every routing change records runtime/metrics snapshots around it.
//
// Nothing loaded is ever unloaded (Go cannot), so memory grows with every version. A Handoff
// bounds it: past Options.MaxVersions or Options.MaxExtraRSSBytes the host re-execs itself in
// place — same PID — hands its listening sockets to the new image with a drain that fails no
// request, and the new image loads only what it must keep: first the version Rollback and the
// automatic rollback would return to (loaded, serving nothing), then the current version and
// the canary. Rollback works after a re-exec exactly as before it, one level deep: a version
// that panics past the threshold in the new image is rolled back as it would have been in the
// old one. The bounds count those versions: an image holding only what it must keep never
// re-execs (the new image would be the same), so a bound of 2 holds the current version and
// the one to roll back to. A re-exec into a named version (ReexecTarget) is a swap across the
// exec: the version serving before becomes the one to roll back to, and serves on if the
// target fails to load. When the version to roll back to fails to load in the new image, the
// current one serves all the same; the log and Status().LastSwap.Reason say so, and Rollback
// answers ErrNoPrevious. See Handoff for the sequence.
//
// Digests name builds. A version is named by the digest it was loaded under: a plugin file
// loaded by hand (an image starting its plugin with -plugin) is named by its file's sha256,
// "sha256:<hex>" as control.FileDigest computes it, unless the caller names it by its
// artifact's manifest digest (-digest, or a PluginDigest option); the agent names what it
// pulls by the artifact's manifest digest. An artifact's manifest digest and its layer's
// sha256 name the same build, so when Load is given a file holding exactly the bytes of a
// version already loaded (equal sha256), it opens nothing: the new digest becomes an alias of
// that version (VersionStatus.Aliases; every request accepts it) and Load succeeds, so rolling
// out the artifact a host already runs is a no-op swap rather than a DuplicatePluginPath
// refusal. A digest names one build: naming another file by an alias is ErrDigestInUse.
//
// A plugin file is read once: Load opens it a single time (through the control endpoint,
// confined to the shared directory by an os.Root, its last element never followed), copies it
// into Options.PrivateDir while hashing it, refuses bytes other than the request's fileDigest
// (ErrFileDigestMismatch), and reads build facts from and plugin.Open opens only that copy.
// A directory swapped for a symlink, or the shared file overwritten in place, after the
// request cannot reach what the host loads.
//
// NewControlHandler serves the control endpoint (HTTP+JSON on a 0600 unix socket in the
// directory shared with the agent sidecar); package host/control holds its wire types and a
// client.
//
// What this package may not touch: it imports only the standard library, preflight, logr and
// host/control — applications link it, and must not pull in Kubernetes libraries (the agent
// converts Snapshot to api/v1alpha1.RuntimeSnapshot). It never casts plugin symbols through
// unsafe (its one use of unsafe hashes a local variable's address to pick a counter stripe,
// and never turns an integer back into a pointer), never re-opens a path, never opens a file the preflight refuses, and never
// closes a connection it accepted during a hand-off before it is answered.
package host
