//go:build splicetag

package shared

// Tagged exists only with -tags splicetag: a build tag that adds a file.
func Tagged() string { return "tagged" }
