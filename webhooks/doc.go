// Package webhooks will hold Splice's admission webhooks: the one Pod mutator that injects the
// agent sidecar, the shared volume, the readiness gate and the version-checking probes into
// opted-in pods, and the CompilerVersion validator/defaulter for what the CRD schema cannot
// check (overlapping selectors, changes during a rollout, incoherent strategies).
//
// Webhooks live here, outside api/, one file per resource. Nothing is registered yet: the CRD
// schema in api/v1alpha1 is the only admission check in force.
package webhooks
