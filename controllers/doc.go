// Package controllers holds Splice's reconcilers.
//
// The CompilerVersion reconciler resolves a CompilerVersion's selector to the pods it targets,
// aggregates what each pod's agent reports (the pod protocol in api/v1alpha1) into status, and
// writes status once per reconcile through the status subresource, skipping no-op writes.
// Decisions are pure functions (compilerversion_status.go, rollout_plan.go) tested without an
// API server; the reconciler only reads, decides and applies.
//
// # Rollouts
//
// The rollout engine is plan(observed) -> plan (rollout_plan.go, one file per policy:
// rollout_strict.go, rollout_rollingpatch.go, rollout_canary.go). The observed state is
// status.artifact (once Built is True at the current generation), status.stableArtifact, the
// rollout state recorded in status (phase, step, times, rolloutDigest), every targeted pod's
// annotations and report, the control annotations and the time. The plan says what every
// pod's rollout annotations must be, which pods to evict, and the rollout state to record.
// The reconciler records the decision in status first and only then patches pods (only where
// their annotations differ) and evicts (rollout_apply.go): a decision is never acted on
// without being recorded, so a manager restarted at any point resumes from status and pod
// annotations without asking any pod to swap twice. Canary membership is a stable hash of
// the CompilerVersion's UID and the pod name, and pods already told to run the artifact keep
// it while the rollout holds. Every target that names an artifact carries the
// CompilerVersion's consent to a minor plugin API change and its bound on loaded versions
// (withHostPolicy, the one place for both).
//
// A failed swap is a report of Failed, RolledBack or Crashed (the host died opening or routing
// to the artifact; SwapState.Failure) about the artifact, and, except under Strict, an
// Incompatible one. Strict rolls every pod back on one; RollingPatch and Canary roll back or
// halt as their onFailure says (Rollback by default). Under Strict an incompatible pod is
// evicted with recreateIncompatible, at most once per pod template and artifact
// (rollout_evictions.go, remembered in status.incompatibleEvictions), never in a loop.
//
// The first rollout of a CompilerVersion (no stable artifact yet) moves every pod at once,
// whatever the policy: there is nothing to keep serving or to roll back to. For the same reason
// a failed swap stops it, whatever the policy: every pod keeps what it was told and what its
// host serves, no pod not yet told is told the artifact, the phase is Degraded (Progressing
// reason RolloutStopped), and it stays so until splice.dev/retry or a new artifact (planFirst).
//
// # Which CompilerVersion owns a pod
//
// A pod belongs to one CompilerVersion: of those whose selectors match it, the oldest by
// creation time, then the first by name (compilerversion_owners.go). The admission webhook
// refuses overlapping selectors, but racing creates and later label changes get past it; the
// rule needs nothing but the CompilerVersions, so every reconcile agrees on it. Only the owner
// counts the pod, writes its desired state (and splice.dev/compiler-version, which names it)
// or evicts it; another that matches it leaves it alone and is Degraded, reason
// OverlappingSelector.
//
// # Builds
//
// The build reconciler (build_controller.go) gives a CompilerVersion an artifact for its
// current spec. For a git source it runs a Job (build_job.go builds it, a pure function): an
// init container copies the builder (cmd/builder) from the manager's image into a shared
// volume, and the build container runs it in golang:<spec.goVersion>. The Job's name is the
// CompilerVersion's name plus a hash of the build inputs (goVersion, url, revision, package,
// tags, repository, symbol, apiVersion), so an unchanged spec finds its Job again and any
// change gets a new one; a running Job of superseded inputs is deleted. The builder's result
// (or failure) arrives in the build container's termination message; the reconciler
// validates it against the spec, records it once on the Job (annotation
// splice.dev/build-record, with an optimistic lock, so metrics and Events happen exactly once)
// and sets status from that record. The Job, never garbage-collected by a TTL, is the durable
// record of its build; Built=True at the current generation is the fast path that keeps an
// unchanged spec from building again even after its Job is gone. For an artifact source there
// is no Job: the artifact's config is read from the registry (artifact.FetchConfig) and
// refused when its Go or API version differs from the spec.
//
// # Who writes which part of status
//
// Every status field has exactly one owner. Two reconcilers patch the same status object, each
// only its own fields, starting from the status it read, once per reconcile, with a JSON merge
// patch carrying the resourceVersion (optimistic lock). The merge patch replaces the whole
// conditions list, which is why the lock is required: a concurrent write by the other makes the
// patch fail with a conflict, which the reconciler returns like any error, so the workqueue
// retries it with controller-runtime's rate-limited backoff on fresh data, and no one
// overwrites what it did not see.
//
//   - The build reconciler (build_controller.go, its decisions in build_decision.go) owns
//     status.artifact and the Built condition, and nothing else. It clears status.artifact as
//     soon as the spec's build inputs change, so status.artifact always belongs to the current
//     spec, and Built's observedGeneration says for which generation.
//   - The CompilerVersion reconciler (compilerversion_controller.go) owns every other field:
//     observedGeneration; phase; stableArtifact, rolloutDigest, currentStepIndex,
//     stepStartTime, pauseStartTime, observedControls and incompatibleEvictions (the rollout
//     state, from the plan);
//     targeted, updated, ready, failed, incompatible and progress (the pod counts);
//     recentFailures and pods; and the Ready, Available, Progressing, Paused and Degraded
//     conditions. It reads status.artifact and Built, never writes them.
//   - status.phase is derived in one place, computeStatus (compilerversion_status.go): from the
//     Built condition while the spec has no artifact to roll out (buildPhase: Building while
//     its build runs, BuildFailed when it failed for good), and from the plan otherwise. The
//     rollout acts on status.artifact only while Built is True at the current generation
//     (rolloutArtifact), so a stale artifact is never rolled out.
//
// # Files, in the order a reconcile runs
//
// compilerversion_controller.go (Reconcile and the watches), compilerversion_observe.go (the
// targeted pods and what their agents report) with compilerversion_owners.go (which
// CompilerVersion owns a pod), rollout_input.go (the plan's input: the artifact, the controls,
// the recorded rollout state), rollout_plan.go and one file per policy (rollout_strict.go with
// its bounded evictions in rollout_evictions.go, rollout_rollingpatch.go, rollout_canary.go with
// its gates in rollout_canary_gates.go; rollout_prometheus.go runs a step's query),
// compilerversion_status.go (the status to record, written before anything is applied),
// rollout_apply.go (pod annotations and evictions). The build reconciler:
// build_controller.go, build_decision.go (what a Job's outcome means for status), build_job.go
// (the Job, a pure function), build_logs.go, build_metrics.go.
package controllers
