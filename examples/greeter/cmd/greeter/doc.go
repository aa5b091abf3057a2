// Command greeter is the example application: an HTTP service whose greeting logic is a Go
// plugin, hot-swapped through the host library. It serves
//
//	POST /greet   body: a name (at most 1 KiB)  -> 200 greeting
//	GET  /greet?name=...                         -> the same
//	GET  /healthz                                -> 200 once a plugin serves, else 503
//
// Every answer carries X-Plugin-Version (the plugin's release), X-Plugin-Digest, X-Host-PID
// and X-Host-Generation (re-execs so far). Requests are routed between current and canary by
// X-Request-Key, or the name when absent. It also serves the control socket in -shared.
//
// Signals: SIGHUP re-execs in place (same PID) keeping the current version; SIGTERM and
// SIGINT drain and exit.
//
// It is the reference for wiring the host library: create the Handoff first, then the Slot
// (which restores the serving versions after a re-exec), then listeners, then serve. It may
// import only the host library, its control package and the greeter contract; it never
// imports Kubernetes libraries.
package main
