// Package internal holds code shared by Splice's binaries and tests that is not part of its
// public API.
package internal
