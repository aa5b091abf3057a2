package host

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
)

func TestResolveConfinesToSharedDir(t *testing.T) {
	root := t.TempDir()
	shared := filepath.Join(root, "shared")
	outside := filepath.Join(root, "outside")
	for _, d := range []string{shared, outside, filepath.Join(shared, "sub")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p string) {
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(shared, "v1.so"))
	write(filepath.Join(shared, "sub", "v2.so"))
	write(filepath.Join(outside, "evil.so"))
	links := map[string]string{
		"escape.so":  filepath.Join(outside, "evil.so"), // absolute link out
		"rel-out.so": "../outside/evil.so",              // relative link out
		"inside.so":  "sub/v2.so",                       // link that stays in
		"dirlink":    outside,                           // directory link out
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(shared, name)); err != nil {
			t.Fatal(err)
		}
	}
	// The shared dir itself reached through a symlink must still work.
	viaLink := filepath.Join(root, "shared-link")
	if err := os.Symlink(shared, viaLink); err != nil {
		t.Fatal(err)
	}

	h, err := NewControlHandler(nil, ControlOptions{SharedDir: viaLink})
	if err != nil {
		t.Fatal(err)
	}
	c := h.(*controlHandler)
	tests := []struct {
		path    string
		want    string // resolved path on success
		wantErr error
	}{
		{"v1.so", filepath.Join(shared, "v1.so"), nil},
		{filepath.Join(viaLink, "v1.so"), filepath.Join(shared, "v1.so"), nil},
		{filepath.Join(shared, "sub", "v2.so"), filepath.Join(shared, "sub", "v2.so"), nil},
		{"sub/../v1.so", filepath.Join(shared, "v1.so"), nil},
		{"inside.so", filepath.Join(shared, "sub", "v2.so"), nil},
		{"../outside/evil.so", "", ErrPathOutside},
		{"sub/../../outside/evil.so", "", ErrPathOutside},
		{filepath.Join(outside, "evil.so"), "", ErrPathOutside},
		{"/etc/passwd", "", ErrPathOutside},
		{"escape.so", "", ErrPathOutside},
		{"rel-out.so", "", ErrPathOutside},
		{"dirlink/evil.so", "", ErrPathOutside},
		{".", "", ErrPathOutside},
		{"", "", ErrPathOutside},
		{"missing.so", "", ErrPathNotFound},
		{"../outside/missing.so", "", ErrPathOutside}, // outside wins over missing: say the real problem
	}
	for _, tt := range tests {
		got, err := c.resolve(tt.path)
		if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && got != tt.want) {
			t.Errorf("resolve(%q) = %q, %v; want %q, %v", tt.path, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestListenUnixPrivate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.sock")
	ln, err := listenUnixPrivate(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v; want a socket with 0600", fi.Mode())
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial the renamed socket: %v", err)
	}
	c.Close()
	if _, err := listenUnixPrivate(path); err == nil {
		t.Fatal("a second listener replaced a live socket")
	}
	// A process that dies leaves its socket file behind (listeners here never unlink).
	ln.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("closing the listener removed the file; hand-off needs it to stay: %v", err)
	}
	ln2, err := listenUnixPrivate(path)
	if err != nil {
		t.Fatalf("a stale socket was not replaced: %v", err)
	}
	ln2.Close()
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("staging directories left behind: %v", entries)
	}
	if err := os.WriteFile(filepath.Join(dir, "plain"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := listenUnixPrivate(filepath.Join(dir, "plain")); err == nil {
		t.Fatal("a regular file was replaced by a socket")
	}
}
