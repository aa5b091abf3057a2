// Plugin v2 of the greeter example: a patch release of v1.
package main

import (
	"fmt"

	"github.com/splice-dev/splice/examples/greeter"
)

// APIVersion is the version of the greeter contract this plugin implements.
var APIVersion = "1.0.1"

type impl struct{}

func (impl) Greet(name string) (string, error) {
	return fmt.Sprintf("Hi, %s! (v2)", name), nil
}

func (impl) Release() string { return "v2" }

// Plugin is the constructor the host library looks up.
func Plugin() greeter.Greeter { return impl{} }

// main is never run in a plugin; it lets `go build ./...` and `go vet ./...` treat this
// package like any other main package.
func main() {}
