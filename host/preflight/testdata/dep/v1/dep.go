// Package dep is version v1.0.0 of a dependency shared by host and plugin.
package dep

// Version names this copy of the module.
func Version() string { return "v1.0.0" }
