// Plugin ps3 shares package pluginshared with the other ps* plugins (and
// package shared with the host).
package main

import (
	"example.test/matrix/pluginshared"
	"example.test/matrix/shared"
)

// Name uses both shared packages so they are linked in.
func Name() string { return "ps3 " + pluginshared.Value() + " " + shared.Hello() }
