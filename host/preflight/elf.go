package preflight

import (
	"bytes"
	"cmp"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Where the hashes live, and why .dynsym.
//
// For every package it links, a plugin-capable Go binary (a plugin, or a
// host that imports package plugin) carries two read-only symbols:
//
//	"go:link.pkghashbytes.<pkg>"  8 bytes, the package's fingerprint
//	"go:link.pkghash.<pkg>"       a string header {&pkghashbytes.<pkg>, 8}
//
// Both are exported in the dynamic symbol table. A plugin's module data
// lists, per package, its own fingerprint and a reference to
// "go:link.pkghash.<pkg>"; the dynamic linker binds that reference to the
// first definition in the process's global scope — the host executable,
// then every library opened RTLD_GLOBAL in order (plugin.Open uses
// RTLD_GLOBAL, and never closes a library, even one whose Open failed) —
// and the runtime refuses the plugin when the two differ. So .dynsym is
// exactly the input plugin.Open uses: it survives `-ldflags=-s -w` and
// strip(1), because dynamic linking needs it. .symtab is not consulted for
// hashes. The 8 bytes are plain .rodata contents (no relocation), read at
// the symbol's offset inside its section.

// elfSymbol is one symbol table entry; name aliases the string table.
type elfSymbol struct {
	name  []byte
	shndx elf.SectionIndex
	value uint64
	size  uint64
}

// walkSymbols calls fn for every entry of the first section of type typ
// (SHT_DYNSYM or SHT_SYMTAB) until fn returns false. It decodes entries in place instead of using
// (*elf.File).Symbols, which allocates a string and a struct for each of
// the thousands of symbols when only a few dozen are wanted.
func walkSymbols(f *elf.File, typ elf.SectionType, fn func(elfSymbol) bool) (found bool, err error) {
	symtab := f.SectionByType(typ)
	if symtab == nil {
		return false, nil
	}
	if int(symtab.Link) >= len(f.Sections) {
		return false, fmt.Errorf("%s links to string table section %d of %d", symtab.Name, symtab.Link, len(f.Sections))
	}
	data, err := sectionData(symtab)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", symtab.Name, err)
	}
	strs, err := sectionData(f.Sections[symtab.Link])
	if err != nil {
		return false, fmt.Errorf("read string table of %s: %w", symtab.Name, err)
	}
	bo := f.ByteOrder
	name := func(off uint32) []byte {
		if int(off) >= len(strs) {
			return nil
		}
		s := strs[off:]
		if i := bytes.IndexByte(s, 0); i >= 0 {
			s = s[:i]
		}
		return s
	}
	switch f.Class {
	case elf.ELFCLASS64:
		for i := elf.Sym64Size; i+elf.Sym64Size <= len(data); i += elf.Sym64Size {
			e := data[i : i+elf.Sym64Size]
			if !fn(elfSymbol{
				name:  name(bo.Uint32(e[0:4])),
				shndx: elf.SectionIndex(bo.Uint16(e[6:8])),
				value: bo.Uint64(e[8:16]),
				size:  bo.Uint64(e[16:24]),
			}) {
				break
			}
		}
	case elf.ELFCLASS32:
		for i := elf.Sym32Size; i+elf.Sym32Size <= len(data); i += elf.Sym32Size {
			e := data[i : i+elf.Sym32Size]
			if !fn(elfSymbol{
				name:  name(bo.Uint32(e[0:4])),
				value: uint64(bo.Uint32(e[4:8])),
				size:  uint64(bo.Uint32(e[8:12])),
				shndx: elf.SectionIndex(bo.Uint16(e[14:16])),
			}) {
				break
			}
		}
	default:
		return false, fmt.Errorf("unsupported ELF class %v", f.Class)
	}
	return true, nil
}

// packageHashes returns import path -> hex fingerprint for every "go:link.pkghashbytes.<pkg>"
// symbol in .dynsym; empty when there is none.
func packageHashes(f *elf.File) (map[string]string, error) {
	type hashSym struct {
		pkg string
		off uint64 // offset inside the section
	}
	bySection := map[elf.SectionIndex][]hashSym{}
	var bad error
	if _, err := walkSymbols(f, elf.SHT_DYNSYM, func(s elfSymbol) bool {
		// An undefined entry is a reference to another module's hash,
		// not a definition: only definitions are this binary's packages.
		if s.shndx == elf.SHN_UNDEF || !bytes.HasPrefix(s.name, []byte(pkghashBytesPrefix)) {
			return true
		}
		pkg := string(s.name[len(pkghashBytesPrefix):])
		if pkg == "" || !utf8.ValidString(pkg) {
			bad = fmt.Errorf("symbol %q names no package (import paths are UTF-8)", s.name)
			return false
		}
		if s.size != 8 {
			bad = fmt.Errorf("symbol %s has size %d, want 8", s.name, s.size)
			return false
		}
		sec, err := dataSection(f, s)
		if err != nil {
			bad = err
			return false
		}
		bySection[s.shndx] = append(bySection[s.shndx], hashSym{pkg, s.value - sec.Addr})
		return true
	}); err != nil {
		return nil, err
	}
	if bad != nil {
		return nil, bad
	}

	hashes := make(map[string]string)
	for shndx, syms := range bySection {
		sec := f.Sections[shndx]
		// The linker lays the hashes out next to each other: read runs of
		// nearby ones at once instead of one system call per package.
		slices.SortFunc(syms, func(a, b hashSym) int { return cmp.Compare(a.off, b.off) })
		for start := 0; start < len(syms); {
			end := start + 1
			for end < len(syms) && syms[end].off+8-syms[start].off <= maxHashRead {
				end++
			}
			lo, hi := syms[start].off, syms[end-1].off+8
			buf := make([]byte, hi-lo)
			if _, err := sec.ReadAt(buf, int64(lo)); err != nil {
				return nil, fmt.Errorf("read package hashes from %s: %w", sec.Name, err)
			}
			for _, s := range syms[start:end] {
				hashes[s.pkg] = hex.EncodeToString(buf[s.off-lo : s.off-lo+8])
			}
			start = end
		}
	}
	return hashes, nil
}

// maxHashRead bounds one read of neighbouring hashes.
const maxHashRead = 64 << 10

// sectionData reads a whole symbol or string table. The linker never compresses them: a
// compressed one would be inflated to whatever size its header claims, so it is refused.
func sectionData(sec *elf.Section) ([]byte, error) {
	if sec.Flags&elf.SHF_COMPRESSED != 0 {
		return nil, fmt.Errorf("section %s is compressed", sec.Name)
	}
	return sec.Data()
}

// dataSection returns the section holding a symbol's bytes in the file. The section's header
// and the symbol are untrusted: the symbol must lie inside the section (without the sum
// overflowing), and the section must have its bytes in the file as they are (debug/elf gives a
// compressed section no ReaderAt).
func dataSection(f *elf.File, s elfSymbol) (*elf.Section, error) {
	if s.shndx == elf.SHN_UNDEF || int(s.shndx) >= len(f.Sections) {
		return nil, fmt.Errorf("symbol %s is not defined in a section (index %d)", s.name, s.shndx)
	}
	sec := f.Sections[s.shndx]
	if sec.Type == elf.SHT_NOBITS {
		return nil, fmt.Errorf("symbol %s lies in %s, which has no file contents", s.name, sec.Name)
	}
	if sec.Flags&elf.SHF_COMPRESSED != 0 || sec.ReaderAt == nil {
		return nil, fmt.Errorf("symbol %s lies in %s, which is compressed", s.name, sec.Name)
	}
	if s.value < sec.Addr || s.size > sec.Size || s.value-sec.Addr > sec.Size-s.size {
		return nil, fmt.Errorf("symbol %s at %#x lies outside its section %s", s.name, s.value, sec.Name)
	}
	return sec, nil
}

// maxPluginPathBytes bounds go:link.thispluginpath: an import path, with %-escapes. A larger
// symbol is a malformed or hostile file, and its size must not become an allocation.
const maxPluginPathBytes = 64 << 10

// symtabPluginPath reads the plugin path the linker recorded in the local
// symbol go:link.thispluginpath (the same string the runtime compares
// against every loaded plugin). found is false when there is no .symtab.
func symtabPluginPath(f *elf.File) (path string, found bool, err error) {
	// A local symbol: ELF puts those first, so the walk stops early.
	var sym elfSymbol
	hasSymtab, err := walkSymbols(f, elf.SHT_SYMTAB, func(s elfSymbol) bool {
		if string(s.name) == "go:link.thispluginpath" {
			sym = s
			return false
		}
		return true
	})
	if err != nil || !hasSymtab || sym.name == nil {
		return "", false, err
	}
	sec, err := dataSection(f, sym)
	if err != nil {
		return "", false, err
	}
	if sym.size > maxPluginPathBytes {
		return "", false, fmt.Errorf("go:link.thispluginpath is %d bytes; a plugin path is at most %d", sym.size, maxPluginPathBytes)
	}
	buf := make([]byte, sym.size)
	if _, err := sec.ReadAt(buf, int64(sym.value-sec.Addr)); err != nil {
		return "", false, fmt.Errorf("read go:link.thispluginpath: %w", err)
	}
	p, err := unescapePathPrefix(string(buf))
	if err != nil {
		return "", false, fmt.Errorf("decode go:link.thispluginpath %q: %w", buf, err)
	}
	return p, true, nil
}

// unescapePathPrefix undoes cmd/internal/objabi.PathToPrefix, which the
// linker applies to the plugin path (%xx for control characters, space,
// '%', '"', non-ASCII bytes, and dots in the last path element).
func unescapePathPrefix(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			out = append(out, s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", errors.New("truncated %-escape")
		}
		b, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", fmt.Errorf("bad %%-escape: %w", err)
		}
		out = append(out, byte(b))
		i += 2
	}
	return string(out), nil
}
