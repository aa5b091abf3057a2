// Command splice-bench measures, in one run and side by side, the three ways a Splice host can
// move to a new plugin version while serving:
//
//	hot-swap  through the agent sidecar's pipeline (sidecar.Swapper), as in a pod: every build
//	          is pushed to go-containerregistry's in-process registry on 127.0.0.1, and each
//	          swap pulls the artifact by its digest-pinned reference into the shared
//	          directory, verifies it, preflights it against the host and every plugin the host
//	          tried, then asks the host to load and swap over the control socket
//	re-exec   the host re-executes itself in place (same PID) into the new version, handing
//	          its listeners over
//	cold      the process is stopped (SIGTERM, drained) and a new one started on the version
//
// A fourth mode, hot-swap-socket (-modes hot-swap,hot-swap-socket,...), swaps with one bare
// load+swap request on the control socket, the builds already in the shared directory: run
// with hot-swap, it shows what the agent's pull and preflight add.
//
// For each it starts a fresh greeter host (examples/greeter) on 127.0.0.1, drives it with
// concurrent clients sending POST /greet (each on a connection of its own unless -keepalive),
// performs a bounded number of transitions spaced over a bounded duration, and prints:
// requests, failed requests, p50/p99/max latency, time from the signal to the first answer
// from the new version, and the host's RSS before and after. For the swaps through the agent
// it also prints, per transition, the agent's own timings: pull, preflight, load+swap, and
// the host's record of the swap.
//
// Every transition goes to a build with a plugin path of its own (greeterbuild), alternating
// the v1 and v2 sources; answers are attributed by their X-Plugin-Digest header (the file's
// sha256, or the artifact's manifest digest for versions the agent loaded).
//
// It only listens on and connects to loopback, writes only under its work directory (a new
// temporary directory unless -work), stops by itself, and kills every process it started.
// Run it from inside the splice checkout (it builds the example with the go command).
package main
