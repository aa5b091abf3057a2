// Package controllers holds Splice's reconcilers.
//
// The CompilerVersion reconciler resolves a CompilerVersion's selector to the pods it targets,
// aggregates what each pod's agent reports (the pod protocol in api/v1alpha1) into status, and
// writes status once per reconcile through the status subresource, skipping no-op writes.
// Decisions are pure functions (compilerversion_status.go) tested without an API server; the
// reconciler only reads, decides and applies.
//
// Building plugins and rolling them out land in their own files and controllers; until then
// this package never writes a desired artifact onto a pod and never claims a build happened.
package controllers
