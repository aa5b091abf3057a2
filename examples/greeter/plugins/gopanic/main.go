// Plugin gopanic of the greeter example: a drill. Its constructor starts a goroutine that
// panics at the plugin's first call, or PanicAfter after the host loaded it if no call comes
// first. A panic on a goroutine the plugin started cannot be recovered by the host library
// (recover works only on the panicking goroutine), so it kills the host process: the agent
// must see that the host died while it was bringing this version in, report it Crashed, and
// never have the restarted host load it again.
package main

import (
	"fmt"
	"sync"
	"time"

	"github.com/splice-dev/splice/examples/greeter"
)

// APIVersion is the version of the greeter contract this plugin implements.
var APIVersion = "1.0.5"

// PanicAfter is the latest the goroutine panics after the constructor ran, with no call.
const PanicAfter = 2 * time.Second

type impl struct {
	first func()
}

func (g impl) Greet(name string) (string, error) {
	g.first()
	return fmt.Sprintf("Hello, %s! (gopanic, not for long)", name), nil
}

func (impl) Release() string { return "gopanic" }

// Plugin is the constructor the host library looks up. The host calls it once, at load.
func Plugin() greeter.Greeter {
	called := make(chan struct{})
	var once sync.Once
	go func() {
		select {
		case <-called:
		case <-time.After(PanicAfter):
		}
		panic("gopanic: deliberate panic in a goroutine the plugin started")
	}()
	return impl{first: func() { once.Do(func() { close(called) }) }}
}

// main is never run in a plugin; see plugins/v1.
func main() {}
