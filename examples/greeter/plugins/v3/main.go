// Plugin v3 of the greeter example: a minor API step from v1, so swapping to it needs
// consent.
package main

import (
	"fmt"

	"github.com/splice-dev/splice/examples/greeter"
)

// APIVersion is the version of the greeter contract this plugin implements.
var APIVersion = "1.1.0"

type impl struct{}

func (impl) Greet(name string) (string, error) {
	return fmt.Sprintf("Greetings, %s! (v3)", name), nil
}

func (impl) Release() string { return "v3" }

// Plugin is the constructor the host library looks up.
func Plugin() greeter.Greeter { return impl{} }

// main is never run in a plugin; it lets `go build ./...` and `go vet ./...` treat this
// package like any other main package.
func main() {}
