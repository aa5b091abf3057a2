// Package greeterbuild builds the greeter example's host binary and plugins the way the tests
// and the benchmark need them: with one set of flags for both sides (so package hashes
// match), and every plugin build with a plugin path of its own.
//
// A plugin's identity in a process is its plugin path, and a rebuild of the same import path
// keeps that path, so loading it into a host that loaded an earlier build fails or returns the
// old plugin. Plugin therefore copies the plugin's sources into a fresh directory next to a
// file holding a nonce and builds them as a list of files: the go command then names the
// plugin "plugin/unnamed-<sha1 of build ID and sources>", different for every nonce. The
// operator's builder does the equivalent for real artifacts.
//
// It runs the go command found on PATH and writes only under Builder.Out; it never touches
// the module's sources.
package greeterbuild
