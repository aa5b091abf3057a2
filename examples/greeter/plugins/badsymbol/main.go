// Plugin badsymbol of the greeter example: a drill. Its Plugin symbol is a variable of the
// interface type instead of a constructor, so the host's type check must refuse it.
package main

import (
	"fmt"

	"github.com/splice-dev/splice/examples/greeter"
)

// APIVersion is the version of the greeter contract this plugin implements.
var APIVersion = "1.0.4"

type impl struct{}

func (impl) Greet(name string) (string, error) { return fmt.Sprintf("Hey, %s! (badsymbol)", name), nil }
func (impl) Release() string                   { return "badsymbol" }

// Plugin has the wrong shape on purpose: the convention is `func Plugin() greeter.Greeter`.
var Plugin greeter.Greeter = impl{}

// main is never run in a plugin; see plugins/v1.
func main() {}
