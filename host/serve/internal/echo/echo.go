// Package echo is the plugin contract of package serve's tests.
package echo

// APIVersion is the contract's version.
const APIVersion = "1.0.0"

// Echoer is what the test plugin implements.
type Echoer interface {
	Echo(s string) string
}
