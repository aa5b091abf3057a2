// Plugin major of the greeter example: a drill. It declares API 2.0.0; a 1.x host must
// refuse it.
package main

import (
	"fmt"

	"github.com/splice-dev/splice/examples/greeter"
)

// APIVersion is the version of the greeter contract this plugin implements.
var APIVersion = "2.0.0"

type impl struct{}

func (impl) Greet(name string) (string, error) {
	return fmt.Sprintf("Yo, %s! (major)", name), nil
}

func (impl) Release() string { return "major" }

// Plugin is the constructor the host library looks up.
func Plugin() greeter.Greeter { return impl{} }

// main is never run in a plugin; it lets `go build ./...` and `go vet ./...` treat this
// package like any other main package.
func main() {}
