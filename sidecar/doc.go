// Package sidecar is the Splice agent: the container the admission webhook adds next to an
// application that links the host library. It makes the host run what the pod's annotations
// say, and tells the API what happened.
//
// Two layers:
//
//   - Swapper is the pipeline, usable without Kubernetes (the benchmark drives hot swaps with
//     it): hand the target's memory bound to the host (its splice.dev/max-loaded-versions,
//     before anything is loaded), pull the artifact by digest into the shared volume (package
//     artifact verifies digests and bounds and never overwrites a file), check the plugin API
//     step its config declares against what the host serves, ask the host for its build facts
//     and its status, run preflight.Check against the host and every plugin the host has
//     tried, failed ones included, and only then ask the host to load and swap — or, for a
//     request-level canary, make the stable version current, load the new one and route a
//     share of calls to it. It does only what is missing, and never asks the host to try a
//     version again after the host failed it, or after it crashed the host.
//   - Agent watches its own Pod (GET, then a WATCH of that one pod by field selector), decides
//     from what it observes — the target in the annotations, the host's status, the last
//     report, and the crashed list — what to do (decide is a pure function, which is what makes
//     restarts safe: a swap already done is observed, not redone), runs the Swapper, and
//     writes the outcome: the splice.dev/report annotation (a PodReport) and the
//     splice.dev/plugin-ready condition through the status subresource, each only when it
//     changed. Transient failures (network, registry 5xx, a host that does not answer or
//     refuses the memory bound) are retried with backoff; outcomes the host or the agent's
//     checks decided are final for that target. Handler serves /readyz, /livez and /metrics.
//
// Readiness means "the host serves correctly": the plugin-ready condition and /readyz are True
// while the host serves a plugin version, whatever became of a newer desired artifact (still
// being brought in, Incompatible, Failed, refused consent, RolledBack or Crashed); the refusal
// shows in the report and in the condition's reason and message, never as a hole in a Service.
// They are False only when the host serves no plugin — including a first rollout into a host
// that started without one, whose first artifact is refused: it has nothing to serve. A host
// built with another Go release than the pod's splice.dev/go-version stays ready (it serves its
// version correctly; Strict's eviction deals with the mismatch); /readyz names the mismatch.
//
// Consent to a plugin API step is per target: a patch step needs none; a minor one needs the
// pod's splice.dev/allow-minor-api-change ("true", from the CompilerVersion's
// spec.plugin.allowMinorAPIChange) and is otherwise Incompatible, reason
// MinorAPIChangeNotAllowed; a major one is always Incompatible, reason MajorAPIChange (the pod
// must be recreated from an image whose host is built against that major version). The agent
// decides from the artifact's declared API version (its config blob, or the host's record of a
// version it holds) against what the host serves (the current version's API, else the host's
// own contract version) before anything is loaded; the host's own check backs it up with the
// same states and reasons. A refusal for the lack of consent is undone when consent comes.
//
// Crash loops: before asking the host to load, swap to or route calls to the desired version
// (never the stable one, nor one that served in this host process already), the agent writes
// an attempt marker, .splice-agent/attempt.json in the shared directory (the digest and the
// host's instance name, control.Status.Instance, which a re-exec keeps and a container restart
// renews). A host whose instance differs from the marker's and that does not have the version
// means the version crashed it: the digest goes into .splice-agent/crashed.json (at most 64),
// the report says Crashed (reason HostCrashed, with the app containers' restart count and last
// termination from the pod's status), and the Swapper refuses the digest before pulling it
// from then on. The volume is an emptyDir: it outlives container restarts but not the pod, so
// "never again" holds for the pod. A marker retires once its version has served
// SwapperOptions.CrashWindow (10 minutes) in the same host process: a later crash is not blamed
// on it. See crash.go.
//
// What it may not touch: its own Pod only (get, watch, patch; patch on pods/status) — no
// list, no other object, which is what the agent's Role grants (config/rbac/agent_role.yaml).
// It talks to the host only through package host/control, never links the host library (that
// would put package plugin in the sidecar), and never loads, maps or executes a plugin. It
// writes files only inside the shared directory: plugin files only through package artifact,
// and its own small state files only under .splice-agent (mode 0700, files 0600, each replaced
// atomically, read back strictly and bounded: the app container can write the volume too).
package sidecar
