// Package sidecar is the Splice agent: the container the admission webhook adds next to an
// application that links the host library. It makes the host run what the pod's annotations
// say, and tells the API what happened.
//
// Two layers:
//
//   - Swapper is the pipeline, usable without Kubernetes (the benchmark drives hot swaps with
//     it): pull the artifact by digest into the shared volume (package artifact verifies
//     digests and bounds and never overwrites a file), ask the host for its build facts and
//     its status, run preflight.Check against the host and every plugin the host has tried,
//     failed ones included, and only then ask the host to load and swap — or, for a
//     request-level canary, make the stable version current, load the new one and route a
//     share of calls to it. It does only what is missing, and never asks the host to try a
//     version again after the host failed it.
//   - Agent watches its own Pod (GET, then a WATCH of that one pod by field selector), decides
//     from three observations — the target in the annotations, the host's status and the last
//     report — what to do (decide is a pure function, which is what makes restarts safe: a
//     swap already done is observed, not redone), runs the Swapper, and writes the outcome:
//     the splice.dev/report annotation (a PodReport) and the splice.dev/plugin-ready condition
//     through the status subresource, each only when it changed. Transient failures (network,
//     registry 5xx, a host that does not answer) are retried with backoff; outcomes the host
//     or the preflight decided are final for that target. Handler serves /readyz, /livez and
//     /metrics.
//
// What it may not touch: its own Pod only (get, watch, patch; patch on pods/status) — no
// list, no other object, which is what the agent's Role grants (config/rbac/agent_role.yaml).
// It talks to the host only through package host/control, never links the host library (that
// would put package plugin in the sidecar), and never loads, maps or executes a plugin. It
// writes files only inside the shared directory, and only through package artifact.
package sidecar
