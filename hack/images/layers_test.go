package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
)

// TestWriteTree checks what a tree layer keeps of a directory: directories, files with their
// content, symlinks, a second link of a file as a hard link, and the skipped paths and
// sockets left out.
func TestWriteTree(t *testing.T) {
	root := t.TempDir()
	mustWrite := func(rel, content string) {
		t.Helper()
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	mustWrite("etc/config", "hello")
	mustWrite("skipped/inside", "never")
	mustWrite("skipped-file", "never")
	if err := os.Symlink("config", filepath.Join(root, "etc", "alias")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(root, "etc", "config"), filepath.Join(root, "etc", "hard")); err != nil {
		t.Fatal(err)
	}
	// A socket has no place in an image.
	sock := filepath.Join(root, "etc", "sock")
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: sock}); err != nil {
		t.Fatal(err)
	}

	var buf bytes.Buffer
	o := treeOptions{
		skip: func(rel string) bool { return rel == "skipped" || rel == "skipped-file" },
		mode: func(rel string, isDir bool) int64 {
			if isDir {
				return 0o755
			}
			return 0o644
		},
	}
	if err := writeTree(&buf, root, "/opt", o); err != nil {
		t.Fatal(err)
	}

	var got []string
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if !h.ModTime.Equal(epoch) || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: mtime %s, owner names %q %q: not reproducible", h.Name, h.ModTime, h.Uname, h.Gname)
		}
		got = append(got, fmt.Sprintf("%c %s %o %q %q", h.Typeflag, h.Name, h.Mode, h.Linkname, data))
	}
	// WalkDir visits in lexical order, so "config" is the first link of the file written.
	want := []string{
		fmt.Sprintf("%c opt/ 755 \"\" \"\"", tar.TypeDir),
		fmt.Sprintf("%c opt/etc/ 755 \"\" \"\"", tar.TypeDir),
		fmt.Sprintf("%c opt/etc/alias 777 \"config\" \"\"", tar.TypeSymlink),
		fmt.Sprintf("%c opt/etc/config 644 \"\" \"hello\"", tar.TypeReg),
		fmt.Sprintf("%c opt/etc/hard 644 \"opt/etc/config\" \"\"", tar.TypeLink),
	}
	if !slices.Equal(got, want) {
		t.Errorf("layer entries:\n%q\nwant:\n%q", got, want)
	}
}
