// Plugin a shares package shared and module dep with the host.
package main

import (
	"example.test/dep"
	"example.test/matrix/shared"
)

// Greet uses both shared packages so they are linked in.
func Greet() string { return shared.Hello() + " " + dep.Version() }
