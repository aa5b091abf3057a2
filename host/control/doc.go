// Package control is the wire contract of the host library's control endpoint, and a client
// for it.
//
// The endpoint is HTTP/1.1 carrying JSON over a unix socket that the host creates in the
// directory it shares with the agent sidecar (SocketName inside that directory, mode 0600, so
// only the host's own user — the agent runs as the same user — can connect). The types in this
// package are that contract: the agent sidecar, the benchmark command and the tests speak it,
// and the host library serves it. Change them only in ways an older peer still decodes (add
// optional fields; never rename, retype or repurpose one) — the server rejects unknown fields,
// so a newer client talking to an older host fails loudly instead of being half understood.
//
// Endpoints (all under /v1/; bodies are single JSON objects; errors are ErrorResponse with an
// HTTP status >= 400):
//
//	GET  /v1/facts     -> preflight.Facts   build facts of the running host binary
//	GET  /v1/status    -> Status            versions, counters, last swap, hand-off
//	POST /v1/load      LoadRequest     -> LoadResponse   open + verify (and optionally swap)
//	POST /v1/swap      SwapRequest     -> SwapResult     make a loaded version current
//	POST /v1/rollback  RollbackRequest -> SwapResult     back to the previous version
//	POST /v1/route     RouteRequest    -> SwapResult     request-level canary split
//	POST /v1/reexec    ReexecRequest   -> ReexecResponse re-exec the host (same PID)
//
// This package may import only the standard library and preflight (for the Facts type): the
// agent links it, and so may anything else that wants to drive a host, without pulling in the
// host library's plugin machinery.
package control
