//go:build e2e

// Package e2e holds the end-to-end suite that runs Splice on a real single-node cluster (built
// from the Go module proxy and Debian packages, see ../shared/LOCAL-CLUSTER.md) behind the e2e
// build tag and its own make target. It has no tests yet.
package e2e
