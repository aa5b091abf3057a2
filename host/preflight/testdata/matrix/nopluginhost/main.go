// Command nopluginhost is a cgo-enabled binary that does not import package
// plugin, so its linker emits no package hashes: ReadFacts must refuse it
// with advice instead of returning empty facts.
package main

import (
	"fmt"

	"example.test/matrix/shared"
)

func main() { fmt.Println(shared.Hello()) }
