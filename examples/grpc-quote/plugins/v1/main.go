// Plugin v1 of the quote example.
package main

import (
	"fmt"

	"github.com/splice-dev/splice/examples/grpc-quote/quote"
)

// APIVersion is the version of the quote contract this plugin implements.
var APIVersion = "1.0.0"

type impl struct{}

func (impl) Quote(topic string) (string, error) {
	return fmt.Sprintf("On %s: simplicity is prerequisite for reliability. (v1)", topic), nil
}

func (impl) Release() string { return "v1" }

// Plugin is the constructor the host library looks up.
func Plugin() quote.Quoter { return impl{} }

// main is never run in a plugin; it lets `go build ./...` and `go vet ./...` treat this
// package like any other main package.
func main() {}
