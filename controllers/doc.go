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
// it while the rollout holds. The first rollout of a CompilerVersion (no stable artifact yet)
// moves every pod at once, whatever the policy: there is nothing to keep serving or to roll
// back to.
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
// Several reconcilers patch the same status object. Each writes only its own fields, starting
// from the status it read, once per reconcile, with a JSON merge patch carrying the
// resourceVersion (optimistic lock): a concurrent write by another makes the patch fail with a
// conflict, which is returned and retried on fresh data, so no one overwrites what it did not
// see. The merge patch replaces the whole conditions list, which is why the lock is required.
//
//   - The build reconciler owns status.artifact, the Built condition, and the phases Building
//     and BuildFailed: it sets them while a build runs or after it failed, and returns them to
//     Pending once it has an artifact (any other phase it leaves alone). It clears
//     status.artifact as soon as the spec's build inputs change: status.artifact always
//     belongs to the current spec, and Built's observedGeneration says for which generation.
//   - The status reconciler (compilerversion_status.go) owns the pod counts, progress,
//     recentFailures, the Ready condition and observedGeneration, and reads status.artifact
//     and Built without writing them.
//   - The rollout state it also computes (stableArtifact, the step, the rollout phases and
//     their conditions) acts on status.artifact only while Built is True at the current
//     generation; while there is none it keeps the phase as it is, so Building and
//     BuildFailed stay visible.
package controllers
