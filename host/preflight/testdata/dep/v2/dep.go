// Package dep is version v1.1.0 of a dependency shared by host and plugin.
package dep

// Version names this copy of the module.
func Version() string { return "v1.1.0" }

// Added exists only in v1.1.0, so the package's export data differs.
func Added() int { return 42 }
