package sidecar

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/splice-dev/splice/host/control"
	"github.com/splice-dev/splice/host/preflight"
)

// The build facts of the plugins a host opened are read once per digest: a later swap finds
// them even after the file is gone (the preflight no longer rereads every tried version).
func TestTriedFactsAreCachedByDigest(t *testing.T) {
	dir := t.TempDir()
	// A facts file stands in for the plugin: ReadFacts takes either.
	path := filepath.Join(dir, "tried.so")
	plugin := &preflight.Facts{Kind: preflight.KindPlugin, PluginPath: "example.com/p", GoVersion: "go1.26.8", GOOS: "linux", GOARCH: "amd64"}
	if err := plugin.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	s, err := NewSwapper(SwapperOptions{SharedDir: dir, Host: &control.Client{}})
	if err != nil {
		t.Fatal(err)
	}
	st := &control.Status{Versions: []control.VersionStatus{{Digest: dA, Path: "/elsewhere/tried.so"}}}
	first, err := s.triedFacts(st)
	if err != nil || len(first) != 1 {
		t.Fatalf("first read: %v, %v", first, err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	second, err := s.triedFacts(st)
	if err != nil || len(second) != 1 || second[0] != first[0] {
		t.Fatalf("second read, file gone: %v, %v; want the cached facts", second, err)
	}
	// Another digest is not in the cache: its missing file is an error naming the fix.
	st.Versions = append(st.Versions, control.VersionStatus{Digest: dB, Path: path})
	if _, err := s.triedFacts(st); err == nil {
		t.Fatal("a missing plugin file of an uncached digest was accepted")
	}
}
