package localloop

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/splice-dev/splice/artifact"
	"github.com/splice-dev/splice/host/control"
	"github.com/splice-dev/splice/host/preflight"
)

// Source is a plugin placed in the shared directory, ready to be loaded.
type Source struct {
	// Arg is the plugin as given: a reference or a file.
	Arg string
	// Ref is the reference pinned by digest ("" for a local file).
	Ref string
	// Digest names the version: the manifest digest of Ref, or the sha256 of a local file.
	Digest string
	// Path is the file in the shared directory: <hex of Digest>.so.
	Path string
	// FileDigest is the sha256 of the file (for an artifact, its layer's digest): a host that
	// already runs a file with these bytes recognises it as the same build.
	FileDigest string
	// Facts are the build facts read from Path.
	Facts *preflight.Facts
	// APIVersion is the plugin API version it declares ("" when unknown).
	APIVersion string
	// Reused is set when Path held the content already and nothing was written.
	Reused bool
}

// fetch pulls a reference, or copies a local file, into the shared directory.
func (d *Driver) fetch(ctx context.Context, arg string) (*Source, error) {
	if isFile(arg) {
		return d.copyIn(arg)
	}
	d.o.Progress("pulling %s into %s", arg, d.o.SharedDir)
	start := time.Now()
	pctx, cancel := context.WithTimeout(ctx, d.o.PullTimeout)
	defer cancel()
	p, err := artifact.Pull(pctx, arg, d.o.SharedDir, d.o.Registry...)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", arg, err)
	}
	d.o.Progress("pulled %s (%d bytes%s) in %.3fs", filepath.Base(p.Path), p.LayerSize, reusedNote(p.Reused), time.Since(start).Seconds())
	return &Source{Arg: arg, Ref: p.Ref, Digest: p.Digest, Path: p.Path, FileDigest: p.LayerDigest, Facts: p.Facts, APIVersion: p.Config.APIVersion, Reused: p.Reused}, nil
}

func reusedNote(reused bool) string {
	if reused {
		return ", already in the shared directory"
	}
	return ""
}

// copyIn copies a local plugin file into the shared directory as <hex of its sha256>.so,
// which names the version sha256:<hex>. It writes a temporary file, hashes what it wrote and
// links it into place, so a host never sees a partial file and an existing file (which a host
// may have loaded) is never replaced.
func (d *Driver) copyIn(path string) (*Source, error) {
	if _, err := PluginFacts(path); err != nil {
		return nil, err
	}
	d.o.Progress("copying %s into %s", path, d.o.SharedDir)
	tmp, sum, err := copyTemp(path, d.o.SharedDir)
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp)
	final := filepath.Join(d.o.SharedDir, sum+".so")
	reused := false
	if err := os.Link(tmp, final); err != nil {
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("link %s into place: %w", final, err)
		}
		if got, err := control.FileDigest(final); err != nil || got != "sha256:"+sum {
			return nil, fmt.Errorf("%s exists with other content (%v); it is left alone because a host may have it loaded", final, errOr(err, got))
		}
		reused = true
	}
	facts, err := PluginFacts(final)
	if err != nil {
		return nil, err
	}
	api, err := ReadAPIVersion(final, facts.PluginPath)
	if err != nil {
		d.o.Progress("%v: the plugin API step is left to the host", err)
		api = ""
	}
	return &Source{Arg: path, Digest: "sha256:" + sum, FileDigest: "sha256:" + sum, Path: final, Facts: facts, APIVersion: api, Reused: reused}, nil
}

// copyTemp copies path to a temporary file in dir and returns its name and the hex sha256 of
// what was written.
func copyTemp(path, dir string) (string, string, error) {
	src, err := os.Open(path)
	if err != nil {
		return "", "", err
	}
	defer src.Close()
	tmp, err := os.CreateTemp(dir, ".local-*.so.partial")
	if err != nil {
		return "", "", fmt.Errorf("create a file in the shared directory %s: %w", dir, err)
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(tmp, h), src)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp.Name())
		return "", "", fmt.Errorf("copy %s into %s: %w", path, dir, err)
	}
	return tmp.Name(), hex.EncodeToString(h.Sum(nil)), nil
}

// preflight checks the plugin against the host's build and every plugin the host has handed
// to plugin.Open; it returns a *Refusal when plugin.Open would fail or load an unsupported
// build.
func (d *Driver) preflight(ctx context.Context, st *control.Status, src *Source) (*preflight.Verdict, error) {
	if v := st.SameBuild(src.FileDigest); v != nil {
		// The host runs these bytes already (a cold-start plugin named by its file's sha256,
		// say): loading makes src.Digest an alias of that version and opens nothing.
		d.o.Progress("the host already runs this build as %s; %s becomes its alias", v.Digest, src.Digest)
		return &preflight.Verdict{OK: true}, nil
	}
	d.o.Progress("preflight of %s against the host's build and %d plugin(s) it tried", src.Digest, len(st.Versions))
	hostFacts, err := callHost(ctx, d.o.HostTimeout, d.host.Facts)
	if err != nil {
		return nil, fmt.Errorf("read the host's build facts for the preflight: %w", err)
	}
	loaded, err := d.triedFacts(st)
	if err != nil {
		return nil, err
	}
	v := preflight.Check(hostFacts, src.Facts, loaded)
	if !v.OK {
		return &v, &Refusal{Ref: src.Arg, Reason: v.Problems[0].Reason, Verdict: &v,
			Err: fmt.Errorf("preflight: %s cannot be loaded into this host: %s", src.Arg, v.Error())}
	}
	return &v, nil
}

// triedFacts reads the build facts of every plugin the host has handed to plugin.Open, in
// order, failed ones included (their packages stay in the process), from the files in the
// shared directory.
func (d *Driver) triedFacts(st *control.Status) ([]*preflight.Facts, error) {
	var out []*preflight.Facts
	for _, v := range st.Versions {
		if v.State == control.StateFailed && (v.ErrorCode == control.CodePreflight || strings.Contains(v.Error, "preflight refused the plugin")) {
			continue // refused before plugin.Open: nothing of it is in the process
		}
		// The host reports its own path; this process may see the directory elsewhere.
		f, err := preflight.ReadFactsFirst(v.Path, filepath.Join(d.o.SharedDir, filepath.Base(v.Path)))
		if err != nil {
			return nil, fmt.Errorf("read the build facts of %s, which the host already opened, for the preflight: %w (plugin files must stay in the shared directory while the host runs; if this process sees it elsewhere, give --shared)",
				v.Digest, err)
		}
		out = append(out, f)
	}
	return out, nil
}
