package host

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"plugin"
	"slices"
	"time"

	"github.com/splice-dev/splice/host/control"
	"github.com/splice-dev/splice/host/preflight"
)

// Load opens a plugin file and verifies it, without routing any call to it. In order:
//   - the path is resolved (symlinks, cleaned) and must name a regular file;
//   - a file holding exactly the bytes of a loaded version (the same sha256) is that build:
//     digest is recorded as an alias of the version — unless it names another version — and
//     Load succeeds without opening anything (see the package doc on digests);
//   - a path presented before in this process is refused (ErrPathTried), whatever happened
//     to it: reopening a failed path can hang forever and a loaded one returns the old plugin;
//   - the digest must not name another version already (ErrDigestInUse);
//   - the preflight compares the file's build facts with the host's and with every file
//     opened so far, failed ones included (ErrPreflight);
//   - plugin.Open runs, its init panics recovered (ErrLoad; the path is dead from then on);
//   - the API version symbol must be a string variable holding a semantic version whose major
//     matches Options.APIVersion when set (ErrAPIMajor);
//   - the constructor symbol must be exactly func() T; it is called once, under recover.
//
// Loads are serialized. A failed load is listed in Status with its error.
func (s *Slot[T]) Load(ctx context.Context, path, digest string) (control.VersionStatus, error) {
	return s.LoadSource(ctx, Source{Path: path}, digest)
}

// Source is a plugin file to load.
type Source struct {
	// Path names the file: in status and errors, and as the path a load is tried once by.
	Path string
	// File, when set, is the file already opened (the control endpoint opens it confined to
	// the shared directory); LoadSource reads it once and closes it. Else Path is opened, its
	// symlinks resolved but for the last element.
	File *os.File
	// FileDigest, when set, is the sha256 the file must hold ("sha256:<hex>", an artifact's
	// layer digest): other bytes are refused with ErrFileDigestMismatch before anything is
	// opened. Splice's agent always names it.
	FileDigest string
}

// open checks the digests and returns the path the file is known by and the file, opening
// Path when no File was given.
func (src Source) open(digest string) (string, *os.File, error) {
	if !control.ValidDigest(digest) {
		return "", nil, fmt.Errorf("load %s: digest %q must match %s", src.Path, digest, control.DigestPattern)
	}
	if src.FileDigest != "" && !control.ValidDigest(src.FileDigest) {
		return "", nil, fmt.Errorf("load %s: file digest %q must match %s", src.Path, src.FileDigest, control.DigestPattern)
	}
	if src.File != nil {
		return src.Path, src.File, nil
	}
	real, err := regularFile(src.Path)
	if err != nil {
		return "", nil, fmt.Errorf("load %s: %w", src.Path, err)
	}
	f, err := openSource(real)
	if err != nil {
		return "", nil, fmt.Errorf("load %s: %w", real, err)
	}
	return real, f, nil
}

// LoadSource is Load of a Source: the file is read once, into a private copy that the build
// facts are read from and plugin.Open opens (see stage.go), so that nothing done to the file
// after the request reaches the process.
func (s *Slot[T]) LoadSource(ctx context.Context, src Source, digest string) (control.VersionStatus, error) {
	if src.File != nil {
		defer src.File.Close()
	}
	real, f, err := src.open(digest)
	if err != nil {
		return control.VersionStatus{}, err
	}
	if src.File == nil {
		defer f.Close()
	}
	if err := s.lockLoad(ctx); err != nil {
		return control.VersionStatus{}, fmt.Errorf("load %s: waiting for an earlier load: %w", real, err)
	}
	unlock := true
	defer func() {
		if unlock {
			s.loadMu.Unlock()
		}
	}()

	copyPath, fileDigest, err := s.stage(f, src.FileDigest)
	if err != nil {
		return control.VersionStatus{}, fmt.Errorf("load %s: %w", real, err)
	}
	kept := false
	defer func() {
		if !kept {
			os.Remove(copyPath) // a load that opens nothing keeps no copy
		}
	}()
	s.mu.Lock()
	if v := s.sameBuild(fileDigest, digest); v != nil {
		vs := s.alias(v, digest)
		s.mu.Unlock()
		s.log.Info("plugin already loaded: the digest names the same build", "digest", digest, "loadedAs", v.digest, "fileDigest", fileDigest, "path", real)
		return vs, nil
	}
	if d, ok := s.tried[real]; ok {
		s.mu.Unlock()
		return control.VersionStatus{}, fmt.Errorf("load %s: %w (under digest %s); write every version to a file of its own", real, ErrPathTried, d)
	}
	if v := s.byDigest[digest]; v != nil {
		s.mu.Unlock()
		return control.VersionStatus{}, fmt.Errorf("load %s: %w: %s was loaded from %s", real, ErrDigestInUse, digest, v.path)
	}
	s.tried[real] = digest
	v := newVersion(digest, real)
	v.fileDigest, v.openPath, kept = fileDigest, copyPath, true
	s.versions = append(s.versions, v)
	s.byDigest[digest] = v
	opened := slices.Clone(s.opened)
	s.mu.Unlock()

	start := time.Now()
	impl, stuck, err := s.open(ctx, v, opened)
	if stuck {
		// plugin.Open has not returned; it releases loadMu when it does.
		unlock = false
	}
	v.loadDur = time.Since(start)
	v.loadedAt = time.Now()

	s.mu.Lock()
	if err != nil {
		ce := toControlError(err)
		v.state, v.err, v.errCode, v.errReason = control.StateFailed, err.Error(), ce.Code, ce.Reason
	} else {
		s.entries[digest] = &entry[T]{v: v, impl: impl}
	}
	vs := v.status()
	s.mu.Unlock()

	if err != nil {
		s.log.Error(err, "plugin load failed", "digest", digest, "path", real)
		return vs, fmt.Errorf("load %s: %w", real, err)
	}
	s.log.Info("plugin loaded", "digest", digest, "path", real, "pluginPath", v.pluginPath, "apiVersion", v.apiVersion, "seconds", v.loadDur.Seconds())
	return vs, nil
}

// sameBuild returns the loaded version whose file held exactly the bytes of fileDigest, when
// digest may name it: digest is new, or names it already. s.mu held.
func (s *Slot[T]) sameBuild(fileDigest, digest string) *Version {
	if fileDigest == "" {
		return nil
	}
	for _, v := range s.versions {
		if v.fileDigest != fileDigest || s.entries[v.digest] == nil {
			continue
		}
		if other := s.byDigest[digest]; other != nil && other != v {
			return nil
		}
		return v
	}
	return nil
}

// alias makes digest name the loaded version v too, and returns v's status. s.mu held.
func (s *Slot[T]) alias(v *Version, digest string) control.VersionStatus {
	if s.byDigest[digest] == nil {
		s.byDigest[digest] = v
		s.entries[digest] = s.entries[v.digest]
		v.aliases = append(v.aliases, digest)
	}
	return v.status()
}

// lockLoad takes loadMu unless ctx ends first.
func (s *Slot[T]) lockLoad(ctx context.Context) error {
	if s.loadMu.TryLock() {
		return nil
	}
	got := make(chan struct{})
	go func() {
		s.loadMu.Lock()
		select {
		case got <- struct{}{}:
		case <-ctx.Done():
			s.loadMu.Unlock()
		}
	}()
	select {
	case <-got:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// open runs preflight, plugin.Open and the symbol checks for v. stuck reports that Open did
// not return within the timeout; loadMu then stays held until it does.
func (s *Slot[T]) open(ctx context.Context, v *Version, opened []*preflight.Facts) (impl T, stuck bool, err error) {
	facts, err := preflight.ReadFacts(v.openPath)
	if err != nil {
		return impl, false, withReason(ReasonPreflightRefused, fmt.Errorf("%w: read build facts of %s (is it a Go plugin built with -buildmode=plugin?): %v", ErrPreflight, v.path, err))
	}
	v.facts = facts
	v.pluginPath = facts.PluginPath
	if verdict := preflight.Check(s.hostFacts, facts, opened); !verdict.OK {
		return impl, false, withReason(verdict.Problems[0].Reason, fmt.Errorf("%w: %s", ErrPreflight, verdict.Error()))
	}

	// From here the file's packages may be in the process whatever the outcome, so every
	// later preflight must compare against it.
	s.mu.Lock()
	s.opened = append(s.opened, facts)
	s.mu.Unlock()

	type result struct {
		p   *plugin.Plugin
		err error
	}
	done := make(chan result, 1)
	go func() {
		p, err := openPlugin(v.openPath)
		done <- result{p, err}
	}()
	timer := time.NewTimer(s.opts.OpenTimeout)
	defer timer.Stop()
	var r result
	select {
	case r = <-done:
	case <-timer.C:
		go func() { <-done; s.loadMu.Unlock() }()
		return impl, true, withReason(ReasonLoadFailed, fmt.Errorf("%w: plugin.Open(%s) has not returned after %v (an init that blocks?); loads wait until it does", ErrLoad, v.path, s.opts.OpenTimeout))
	}
	if r.err != nil {
		return impl, false, r.err
	}

	apiv, err := lookupAPIVersion(r.p, s.opts.APIVersionSymbol)
	if err != nil {
		return impl, false, withReason(ReasonSymbolLookupFailed, err)
	}
	v.apiVersion = apiv
	if s.opts.APIVersion != "" {
		if err := checkAPIChange(s.opts.APIVersion, apiv, true); err != nil {
			return impl, false, fmt.Errorf("host API %s, plugin API %s: %w", s.opts.APIVersion, apiv, err)
		}
	}
	impl, err = lookupImpl[T](r.p, s.opts.Symbol, s.typ)
	if err != nil {
		return impl, false, withReason(ReasonSymbolLookupFailed, err)
	}
	return impl, false, nil
}

// openPlugin is plugin.Open with the plugin's init panics recovered: they surface here, on
// the goroutine that called Open.
func openPlugin(path string) (p *plugin.Plugin, err error) {
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, withReason(ReasonInitPanic, fmt.Errorf("%w: init of %s panicked: %v (the path is dead in this process: reopening it would hang)", ErrLoad, path, r))
		}
	}()
	p, err = plugin.Open(path)
	if err != nil {
		return nil, withReason(ReasonLoadFailed, fmt.Errorf("%w: %v", ErrLoad, err))
	}
	return p, nil
}

func lookupAPIVersion(p *plugin.Plugin, name string) (string, error) {
	sym, err := p.Lookup(name)
	if err != nil {
		return "", fmt.Errorf("%w: the plugin declares no API version: export `var %s = \"MAJOR.MINOR.PATCH\"`: %v", ErrLoad, name, err)
	}
	ptr, ok := sym.(*string)
	if !ok {
		return "", fmt.Errorf("%w: symbol %s has type %T; want a string variable (`var %s = \"1.0.0\"`; a constant is not a symbol)", ErrLoad, name, sym, name)
	}
	if _, err := parseAPIVersion(*ptr); err != nil {
		return "", fmt.Errorf("%w: symbol %s: %v", ErrLoad, name, err)
	}
	return *ptr, nil
}

func lookupImpl[T any](p *plugin.Plugin, name string, typ interface{ String() string }) (impl T, err error) {
	sym, err := p.Lookup(name)
	if err != nil {
		return impl, fmt.Errorf("%w: export `func %s() %s`: %v", ErrLoad, name, typ, err)
	}
	ctor, ok := sym.(func() T)
	if !ok {
		return impl, fmt.Errorf("%w: symbol %s has type %T; want func() %s", ErrLoad, name, sym, typ)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %s() panicked: %v", ErrLoad, name, r)
		}
	}()
	impl = ctor()
	if any(impl) == nil {
		return impl, fmt.Errorf("%w: %s() returned a nil %s", ErrLoad, name, typ)
	}
	return impl, nil
}

// regularFile resolves symlinks and requires a regular file.
func regularFile(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrPathNotFound, err)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("%w: %s", ErrPathNotFound, abs)
		}
		return "", fmt.Errorf("%w: resolve %s: %v", ErrPathNotFound, abs, err)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrPathNotFound, err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%w: %s is not a regular file (%v)", ErrPathNotFound, real, fi.Mode().Type())
	}
	return real, nil
}
