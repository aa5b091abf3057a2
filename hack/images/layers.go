package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// epoch is every file's modification time: layers are reproducible, so an unchanged binary
// gives an unchanged layer digest.
var epoch = time.Unix(0, 0).UTC()

// entry is one file of a layer built from a list.
type entry struct {
	// Path inside the image, absolute.
	Path string
	// Mode is the permission bits (and fs.ModeDir, fs.ModeSymlink).
	Mode fs.FileMode
	// Data is a regular file's content; Link a symlink's target.
	Data []byte
	Link string
	// UID and GID own the entry.
	UID, GID int
}

func file(p string, mode fs.FileMode, data []byte) entry {
	return entry{Path: p, Mode: mode, Data: data}
}

// hostFile reads a file of this machine into an entry at p in the image.
func hostFile(p, src string, mode fs.FileMode) (entry, error) {
	b, err := os.ReadFile(src)
	if err != nil {
		return entry{}, err
	}
	return file(p, mode, b), nil
}

// listLayer is a layer holding exactly entries, with their parent directories.
func listLayer(entries []entry) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	seen := map[string]bool{}
	var mkparents func(p string) error
	mkparents = func(p string) error {
		d := path.Dir(p)
		if d == "/" || d == "." || seen[d] {
			return nil
		}
		if err := mkparents(d); err != nil {
			return err
		}
		seen[d] = true
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX})
	}
	sorted := append([]entry(nil), entries...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	for _, e := range sorted {
		if !path.IsAbs(e.Path) {
			return nil, fmt.Errorf("layer entry %q: path must be absolute", e.Path)
		}
		if err := mkparents(e.Path); err != nil {
			return nil, err
		}
		name := strings.TrimPrefix(path.Clean(e.Path), "/")
		h := &tar.Header{Name: name, Mode: int64(e.Mode.Perm()), Uid: e.UID, Gid: e.GID, ModTime: epoch, Format: tar.FormatPAX}
		if e.Mode&fs.ModeSticky != 0 {
			h.Mode |= 0o1000
		}
		switch {
		case e.Mode.IsDir():
			if seen[e.Path] {
				continue
			}
			seen[e.Path] = true
			h.Typeflag, h.Name = tar.TypeDir, name+"/"
		case e.Mode&fs.ModeSymlink != 0:
			h.Typeflag, h.Linkname = tar.TypeSymlink, e.Link
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.Data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(e.Data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
}

// treeOptions adjust how a tree on this machine becomes a layer.
type treeOptions struct {
	// skip leaves out the paths (relative to the tree, slash-separated) for which it returns
	// true; a directory with its contents.
	skip func(rel string) bool
	// mode, if set, gives the permission bits of each entry instead of the file's own.
	mode func(rel string, isDir bool) int64
}

// dirLayer is a layer holding the tree at root on this machine, placed at prefix in the image
// ("/" for a root filesystem). Owners, modes, symlinks and hard links are kept (modes unless
// o.mode says otherwise). Device nodes, sockets and FIFOs are left out: the runtime provides /dev.
func dirLayer(root, prefix string, o treeOptions) (v1.Layer, error) {
	opener := func() (io.ReadCloser, error) {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(writeTree(pw, root, prefix, o)) }()
		return pr, nil
	}
	// The compressed bytes are kept in memory once computed: the digest, the diff ID and the
	// tarball writer would otherwise each walk and compress the tree again.
	return tarball.LayerFromOpener(opener, tarball.WithCompressedCaching, tarball.WithCompressionLevel(gzip.BestSpeed))
}

func writeTree(w io.Writer, root, prefix string, o treeOptions) error {
	tw := tar.NewWriter(w)
	links := map[uint64]string{} // inode -> first path, for hard links
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel != "." && o.skip != nil && o.skip(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		name := strings.TrimPrefix(path.Join(prefix, rel), "/")
		if name == "" {
			return nil
		}
		h, err := treeHeader(p, rel, name, o, links)
		if h == nil || err != nil {
			return err
		}
		return writeEntry(tw, p, h)
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// treeHeader is the tar header of the file p, at name in the layer, or nil for a file that
// has no place in an image (devices, FIFOs, sockets). A regular file with another link already
// written becomes a hard link to it.
func treeHeader(p, rel, name string, o treeOptions, links map[uint64]string) (*tar.Header, error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return nil, err
	}
	h, err := tar.FileInfoHeader(fi, "")
	if err != nil {
		return nil, nil // sockets and the like: not in an image
	}
	h.Name, h.ModTime, h.AccessTime, h.ChangeTime, h.Format = name, epoch, time.Time{}, time.Time{}, tar.FormatPAX
	h.Uname, h.Gname = "", ""
	if o.mode != nil && fi.Mode()&fs.ModeSymlink == 0 {
		h.Mode = o.mode(rel, fi.IsDir())
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		h.Uid, h.Gid = int(st.Uid), int(st.Gid)
		if fi.Mode().IsRegular() && st.Nlink > 1 {
			if first, ok := links[st.Ino]; ok {
				h.Typeflag, h.Linkname, h.Size = tar.TypeLink, first, 0
			} else {
				links[st.Ino] = name
			}
		}
	}
	switch {
	case fi.IsDir():
		h.Name += "/"
	case fi.Mode()&fs.ModeSymlink != 0:
		if h.Linkname, err = os.Readlink(p); err != nil {
			return nil, err
		}
	case fi.Mode().IsRegular():
	default:
		return nil, nil // devices, FIFOs, sockets
	}
	return h, nil
}

// writeEntry writes h and, for a regular file, the content of p.
func writeEntry(tw *tar.Writer, p string, h *tar.Header) error {
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	if h.Typeflag != tar.TypeReg {
		return nil
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	f.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	return nil
}
