// Plugin initpanic of the greeter example: a drill. Its init panics, so plugin.Open fails;
// the host must recover that, and never open the path again (reopening it would hang).
package main

import (
	"fmt"

	"github.com/splice-dev/splice/examples/greeter"
)

// APIVersion is the version of the greeter contract this plugin implements.
var APIVersion = "1.0.2"

type impl struct{}

func (impl) Greet(name string) (string, error) {
	return fmt.Sprintf("unreachable %s", name), nil
}

func (impl) Release() string { return "initpanic" }

// Plugin is the constructor the host library looks up.
func Plugin() greeter.Greeter { return impl{} }

// main is never run in a plugin; it lets `go build ./...` and `go vet ./...` treat this
// package like any other main package.
func main() {}

func init() { panic("initpanic: deliberate panic in plugin init") }
