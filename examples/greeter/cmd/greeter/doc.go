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
// Its main is the wiring of a host application in one call: package host/serve creates the
// Handoff, then the Slot (which restores the serving versions after a re-exec), then the
// control socket, loads -plugin at a cold start, listens through the Handoff, serves, and
// handles the signals; serve.RegisterFlags defines the standard flags (-addr, -addr-file,
// -shared, -plugin, -digest, -max-versions, -max-extra-rss, -panic-threshold, -drain-timeout,
// -v) and the greeter adds -api-version. Errors from the slot are answered by serve.WriteError
// (503 before a version serves, 500 when the plugin panicked). It may import only the host
// library (host, host/serve) and the greeter contract; it never imports Kubernetes libraries.
package main
