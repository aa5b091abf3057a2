// Package e2e tests the host library the way applications use it: the greeter host is built
// as a separate binary and run as a child process, its plugins are built with
// -buildmode=plugin and opened with the real plugin.Open, and traffic goes over loopback TCP
// and the real control socket. (The test binary itself would be a poor host: test variants
// and coverage instrumentation change package hashes.)
//
// The package has only tests. TestMain builds the host and every plugin once per run into a
// temporary directory; each test starts its own host with its own shared directory. With
// SPLICE_E2E_RACE=1 the host and plugins are built with -race, so the race detector watches
// the library inside the real host process (any report makes that process exit non-zero).
package e2e
