//go:build pstag

package pluginshared

// Tagged exists only with -tags pstag: a build tag that adds a file.
func Tagged() string { return "tagged" }
