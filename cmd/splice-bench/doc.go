// Command splice-bench measures, in one run and side by side, the three ways a Splice host can
// move to a new plugin version while serving:
//
//	hot-swap  load and swap through the host's control socket (later: through the agent)
//	re-exec   the host re-executes itself in place (same PID) into the new version, handing
//	          its listeners over
//	cold      the process is stopped (SIGTERM, drained) and a new one started on the version
//
// For each it starts a fresh greeter host (examples/greeter) on 127.0.0.1, drives it with
// concurrent clients sending POST /greet (each on a connection of its own unless -keepalive),
// performs a bounded number of transitions spaced over a bounded duration, and prints:
// requests, failed requests, p50/p99/max latency, time from the signal to the first answer
// from the new version, and the host's RSS before and after.
//
// Every transition goes to a build with a plugin path of its own (greeterbuild), alternating
// the v1 and v2 sources; answers are attributed by their X-Plugin-Digest header.
//
// It only listens on and connects to loopback, writes only under its work directory (a new
// temporary directory unless -work), stops by itself, and kills every process it started.
// Run it from inside the splice checkout (it builds the example with the go command).
package main
