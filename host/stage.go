package host

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
)

// A plugin file is read once and opened from a copy of the host's own: the host opens the
// file it is given a single time (the last path element never followed if it is a symlink;
// through the control socket, an already-opened file confined to the shared directory, see
// ControlOptions), copies what it reads into its private directory while hashing it, checks
// the hash against the digest the caller expects, and from then on reads build facts from and
// calls plugin.Open on that copy alone. So nothing another process does to the shared file
// after the request — swapping a directory for a symlink, or overwriting the file in place,
// which would crash a process that had it mapped — reaches what the host loads.

// ErrFileDigestMismatch: the bytes read are not the ones the request named.
var ErrFileDigestMismatch = errors.New("plugin file's sha256 is not the one named")

// stageSeq numbers the private copies of this image, so that no two loads share a file name
// (a failed load's file is never reopened).
var stageSeq atomic.Int64

// privateDir returns the slot's private directory, creating it (0700) on first use.
func (s *Slot[T]) privateDir() (string, error) {
	dir := s.opts.PrivateDir
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "splice-host-"+instance)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("%w: the host's private copy directory: %v (set Options.PrivateDir, or TMPDIR, to a writable directory only the host can write)", ErrLoad, err)
	}
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() || fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%w: the host's private copy directory %s must be a directory of mode 0700 (found %v, %v)", ErrLoad, dir, fi.Mode(), err)
	}
	return dir, nil
}

// openSource opens a plugin file for reading once, refusing a symlink as its last element and
// anything but a regular file.
func openSource(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("%w: %s is a symlink; name the file itself", ErrPathNotFound, path)
		}
		return nil, fmt.Errorf("%w: %v", ErrPathNotFound, err)
	}
	return f, nil
}

// stage copies the open file f into the private directory while hashing it and returns the
// copy's path and the sha256 ("sha256:<hex>"). want, when not empty, must be that sha256.
func (s *Slot[T]) stage(f *os.File, want string) (copyPath, fileDigest string, err error) {
	fi, err := f.Stat()
	if err != nil {
		return "", "", fmt.Errorf("%w: %v", ErrPathNotFound, err)
	}
	if !fi.Mode().IsRegular() {
		return "", "", fmt.Errorf("%w: %s is not a regular file (%v)", ErrPathNotFound, f.Name(), fi.Mode().Type())
	}
	dir, err := s.privateDir()
	if err != nil {
		return "", "", err
	}
	tmp, err := os.CreateTemp(dir, ".stage-*")
	if err != nil {
		return "", "", fmt.Errorf("%w: copy into %s: %v", ErrLoad, dir, err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(tmp, h), f)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", "", fmt.Errorf("%w: copy %s into %s: %v", ErrLoad, f.Name(), dir, err)
	}
	fileDigest = "sha256:" + hex.EncodeToString(h.Sum(nil))
	if want != "" && want != fileDigest {
		return "", "", fmt.Errorf("%w: %s holds %s, the request named %s (was it changed after it was written?)", ErrFileDigestMismatch, f.Name(), fileDigest, want)
	}
	copyPath = filepath.Join(dir, strconv.FormatInt(stageSeq.Add(1), 10)+"-"+fileDigest[len("sha256:"):][:16]+".so")
	if err := os.Rename(tmp.Name(), copyPath); err != nil {
		return "", "", fmt.Errorf("%w: %v", ErrLoad, err)
	}
	return copyPath, fileDigest, nil
}
