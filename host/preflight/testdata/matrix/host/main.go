// Command host is the child process of the preflight matrix. It calls
// plugin.Open on each path on its command line, in order, and prints one
// line per outcome on stdout:
//
//	open <i> ok
//	open <i> error <message>
//
// A mismatch can also kill it ("fatal error: ..." on stderr): the test
// reads that as an outcome too. It links package shared and module dep so
// that the plugins' copies are compared with its own.
package main

import (
	"fmt"
	"os"
	"plugin"
	"strings"

	"example.test/dep"
	"example.test/matrix/shared"
)

func main() {
	// os.Stdout is unbuffered: every line is out before a later crash.
	fmt.Printf("host %s %s\n", shared.Hello(), dep.Version())
	for i, path := range os.Args[1:] {
		if _, err := plugin.Open(path); err != nil {
			fmt.Printf("open %d error %s\n", i, strings.ReplaceAll(err.Error(), "\n", " "))
			continue
		}
		fmt.Printf("open %d ok\n", i)
	}
}
