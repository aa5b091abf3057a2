// Package greeter is the example application's plugin contract: the interface shared, byte
// for byte, by the greeter host (cmd/greeter) and its plugins (plugins/...). Anything in this
// package is linked into both sides, so any change to it changes its package hash and makes
// every plugin built before the change unloadable — which the preflight reports.
//
// Layout: cmd/greeter is the host (an HTTP service linking the host library); plugins/v1..v3
// are good versions (v2 a patch, v3 a minor API step from v1); plugins/initpanic, callpanic,
// gopanic (a goroutine of its own panics: the host dies), major, badsymbol and flaky are
// deliberately broken for the drills; greeterbuild builds them all
// with unique plugin paths; greeterproc runs the host as a child process and greets it; e2e
// holds the tests that run them.
//
// It may import nothing but the standard library: every import would be shared with plugins.
package greeter
