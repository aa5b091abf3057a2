// Plugin callpanic of the greeter example: a drill. Every Greet panics; the host must
// recover it on the calling goroutine, count it, and roll back past its threshold.
package main

import (
	"github.com/splice-dev/splice/examples/greeter"
)

// APIVersion is the version of the greeter contract this plugin implements.
var APIVersion = "1.0.3"

type impl struct{}

func (impl) Greet(name string) (string, error) {
	panic("callpanic: deliberate panic in Greet for " + name)
}

func (impl) Release() string { return "callpanic" }

// Plugin is the constructor the host library looks up.
func Plugin() greeter.Greeter { return impl{} }

// main is never run in a plugin; see plugins/v1.
func main() {}
