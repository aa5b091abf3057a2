// Package preflighttest builds real Go hosts and plugins from the test
// modules in preflight/testdata, for tests (the preflight matrix, the
// splice CLI, and any other package that needs a real plugin): each
// distinct artifact once per test binary, from a private copy of the
// modules, with the go command and an environment pinned so the user's
// settings (GOFLAGS, GOAMD64, CGO_ENABLED, GOTOOLCHAIN, go.work) do not leak
// into what is compared.
//
// What it may not touch: only the standard library and the go command; it
// imports nothing from Splice, so what tests observe is Go's behaviour.
// Test support only: no production code may import it.
package preflighttest
