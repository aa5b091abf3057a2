// Plugin flaky of the greeter example: a drill. It answers like v2, but every fourth Greet
// returns an error. The host counts the errors against this version; a canary analysis with
// maxErrorRatePercent below 25 must roll it back, while requests to the stable version go on.
package main

import (
	"fmt"
	"sync/atomic"

	"github.com/splice-dev/splice/examples/greeter"
)

// APIVersion is the version of the greeter contract this plugin implements.
var APIVersion = "1.0.4"

type impl struct{ calls *atomic.Uint64 }

func (g impl) Greet(name string) (string, error) {
	if g.calls.Add(1)%4 == 0 {
		return "", fmt.Errorf("flaky: deliberate failure greeting %s (every fourth call)", name)
	}
	return fmt.Sprintf("Hi, %s! (flaky)", name), nil
}

func (impl) Release() string { return "flaky" }

// Plugin is the constructor the host library looks up.
func Plugin() greeter.Greeter { return impl{calls: new(atomic.Uint64)} }

// main is never run in a plugin; see plugins/v1.
func main() {}
