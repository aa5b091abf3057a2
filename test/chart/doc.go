// Package chart holds the test that keeps the Helm chart (charts/splice) in step with config/:
// it renders the chart with the real helm (hack/helm.sh builds it from the Go module proxy into
// bin/, or $HELM) and compares what controller-gen generates and config/ declares — the CRD,
// the manager's and the agent's RBAC rules, the webhook configurations, the webhook Service and
// the admission policies of config/policy — with what the chart installs, and every manager
// flag the chart passes with the flags cmd/manager defines; it also checks the manager's
// availability defaults (replicas, anti-affinity, PodDisruptionBudget). When it fails, change
// the chart (its CRD is a symbolic link into config/crd/bases; a new CRD needs a new link).
package chart
