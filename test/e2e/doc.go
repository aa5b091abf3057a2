//go:build e2e

// Package e2e is Splice's end-to-end suite: real pods on the real single-node cluster of
// hack/cluster (make cluster-up), with the images of hack/images and the Helm chart installed by
// the real helm. It runs only with the build tag e2e, through `make e2e`, which builds and loads
// the images and passes KUBECONFIG and HELM:
//
//	make cluster-up e2e cluster-down
//
// The suite installs the chart into splice-system (replacing a previous release of the suite),
// creates two namespaces per run (the workloads', and one its trust policy covers, with a key
// made for the run) and deletes them at the end unless E2E_KEEP=1. Everything it
// creates talks only to the cluster's own addresses; every wait is bounded.
package e2e
