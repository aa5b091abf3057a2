// Package pluginshared is linked by the ps* plugins and never by the host.
package pluginshared

// Value is called by every ps* plugin.
func Value() string { return "pluginshared" }
