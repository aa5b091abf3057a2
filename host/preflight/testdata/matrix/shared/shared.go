// Package shared is linked into the host and into plugin a.
package shared

// Hello is called by both sides so the package is linked into both.
func Hello() string { return "hello" }
