package localloop

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/splice-dev/splice/artifact"
	"github.com/splice-dev/splice/host/control"
	"github.com/splice-dev/splice/host/preflight"
)

// ErrNotAPlugin: a file given as a plugin is not a Go plugin built with -buildmode=plugin.
var ErrNotAPlugin = errors.New("not a Go plugin")

// PluginFacts reads the build facts of a plugin file and refuses anything but a Go plugin (a
// host binary, another ELF file, a facts file, anything else).
func PluginFacts(path string) (*preflight.Facts, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	magic := make([]byte, len(elf.ELFMAG))
	_, err = io.ReadFull(f, magic)
	f.Close()
	if err != nil || string(magic) != elf.ELFMAG {
		return nil, fmt.Errorf("%w: %s is not an ELF file; build the plugin with go build -buildmode=plugin", ErrNotAPlugin, path)
	}
	facts, err := preflight.ReadFacts(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotAPlugin, err)
	}
	if facts.Kind != preflight.KindPlugin {
		return nil, fmt.Errorf("%w: %s is a Go %s binary (-buildmode=%s); build the plugin with go build -buildmode=plugin",
			ErrNotAPlugin, path, facts.Kind, orNone(facts.BuildMode))
	}
	return facts, nil
}

// PushOptions say how to push a plugin file.
type PushOptions struct {
	// APIVersion is the plugin API version to declare; "" reads the plugin's own
	// `var APIVersion = "x.y.z"` from the file (ReadAPIVersion).
	APIVersion string
	// Registry are the registry options (credentials, plain HTTP, tags, annotations).
	Registry []artifact.Option
}

// Push pushes a plugin file built by anything (go build -buildmode=plugin, a Makefile) as a
// Splice artifact to repo, and returns its reference pinned by digest.
func Push(ctx context.Context, path, repo string, o PushOptions) (ref string, cfg artifact.Config, err error) {
	facts, err := PluginFacts(path)
	if err != nil {
		return "", cfg, err
	}
	api := o.APIVersion
	if api == "" {
		if api, err = ReadAPIVersion(path, facts.PluginPath); err != nil {
			return "", cfg, fmt.Errorf("%w; give the plugin API version with --api-version", err)
		}
	}
	if !control.ValidAPIVersion(api) {
		return "", cfg, fmt.Errorf("plugin API version %q is not a semantic version such as 1.0.0", control.Truncate(api, 80))
	}
	cfg = artifact.Config{Facts: *facts, APIVersion: api}
	ref, _, err = artifact.Push(ctx, repo, path, cfg, o.Registry...)
	return ref, cfg, err
}

// apiVersionSymbol is the variable every plugin declares its API version in (the host
// library's default host.Options.APIVersionSymbol).
const apiVersionSymbol = "APIVersion"

// ReadAPIVersion reads the value of the plugin's exported `var APIVersion = "x.y.z"` from the
// file, without opening it: the string header the linker initialized in the data section
// (resolving its pointer through the dynamic relocations when it is not written in place),
// then the bytes it points to.
func ReadAPIVersion(path, pluginPath string) (string, error) {
	ef, err := elf.Open(path)
	if err != nil {
		return "", fmt.Errorf("read the plugin API version of %s: %w", path, err)
	}
	defer ef.Close()
	syms, err := ef.DynamicSymbols()
	if err != nil {
		return "", fmt.Errorf("read the plugin API version of %s: %w", path, err)
	}
	want := pluginPath + "." + apiVersionSymbol
	for _, s := range syms {
		if s.Name == want && s.Section != elf.SHN_UNDEF {
			v, err := readGoString(ef, s)
			if err != nil {
				return "", fmt.Errorf("read %s from %s: %w", want, path, err)
			}
			return v, nil
		}
	}
	return "", fmt.Errorf("%s exports no %s variable (a string such as \"1.0.0\")", path, apiVersionSymbol)
}

// readGoString reads the Go string variable s: a {pointer, length} header.
func readGoString(ef *elf.File, s elf.Symbol) (string, error) {
	if ef.Class != elf.ELFCLASS64 || s.Size != 16 {
		return "", fmt.Errorf("symbol is %d bytes in a %v file, not a 64-bit string header", s.Size, ef.Class)
	}
	hdr, err := readAt(ef, s.Value, 16)
	if err != nil {
		return "", err
	}
	ptr, n := ef.ByteOrder.Uint64(hdr[:8]), ef.ByteOrder.Uint64(hdr[8:])
	if n == 0 || n > control.MaxAPIVersionBytes {
		return "", fmt.Errorf("string of %d bytes; an API version has 1 to %d", n, control.MaxAPIVersionBytes)
	}
	if ptr == 0 {
		if ptr, err = relocated(ef, s.Value); err != nil {
			return "", err
		}
	}
	b, err := readAt(ef, ptr, n)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// readAt reads n bytes at virtual address addr from the section holding them.
func readAt(ef *elf.File, addr, n uint64) ([]byte, error) {
	for _, sec := range ef.Sections {
		if sec.Type != elf.SHT_PROGBITS || addr < sec.Addr || addr-sec.Addr >= sec.Size || n > sec.Size-(addr-sec.Addr) {
			continue
		}
		b := make([]byte, n)
		if _, err := sec.ReadAt(b, int64(addr-sec.Addr)); err != nil {
			return nil, fmt.Errorf("read %d bytes at %#x in %s: %w", n, addr, sec.Name, err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("address %#x is in no section with file contents", addr)
}

// relocated returns the addend of the dynamic relocation (RELA) that fills in the word at addr.
func relocated(ef *elf.File, addr uint64) (uint64, error) {
	sec := ef.Section(".rela.dyn")
	if sec == nil {
		return 0, fmt.Errorf("no pointer at %#x and no .rela.dyn to resolve it", addr)
	}
	data, err := sec.Data()
	if err != nil {
		return 0, fmt.Errorf("read .rela.dyn: %w", err)
	}
	var r elf.Rela64
	rd := bytes.NewReader(data)
	for binary.Read(rd, ef.ByteOrder, &r) == nil {
		if r.Off == addr {
			return uint64(r.Addend), nil
		}
	}
	return 0, fmt.Errorf("no dynamic relocation fills in the pointer at %#x", addr)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
