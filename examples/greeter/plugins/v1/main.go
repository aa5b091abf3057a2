// Plugin v1 of the greeter example.
package main

import (
	"fmt"

	"github.com/splice-dev/splice/examples/greeter"
)

// APIVersion is the version of the greeter contract this plugin implements.
var APIVersion = "1.0.0"

type impl struct{}

func (impl) Greet(name string) (string, error) {
	return fmt.Sprintf("Hello, %s! (v1)", name), nil
}

func (impl) Release() string { return "v1" }

// Plugin is the constructor the host library looks up.
func Plugin() greeter.Greeter { return impl{} }

// main is never run in a plugin; it lets `go build ./...` and `go vet ./...` treat this
// package like any other main package.
func main() {}
