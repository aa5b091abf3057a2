package preflight

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The host reads the build facts of every plugin file before it opens it, and the agent, the
// builder and `splice preflight` read them from files someone else built: ReadFacts reads input
// from another party, and a malformed file must give an error — never a panic, a hang or an
// allocation the file does not back, any of which would take down the process that reads it.

// synthELF describes a small Go-like ELF file: the parts ReadFacts reads (build information in
// .go.buildinfo, package hashes in .dynsym, the plugin path in .symtab) and nothing else. A real
// plugin is megabytes; this is about 1.5 KB, so that the fuzzer mutates what matters.
type synthELF struct {
	class32    bool
	plugin     bool   // -buildmode=plugin
	symtab     bool   // a .symtab holding go:link.thispluginpath
	cgo        bool   // CGO_ENABLED=1
	pluginPath string // for a plugin
	mainPath   string // the main package's import path
	packages   map[string]uint64
}

// sentinels framing the module information (cmd/go/internal/modload infoStart and infoEnd).
const (
	infoStart = "0w\xaf\x0c\x92t\b\x02A\xe1\xc1\x07\xe6\xd6\x18\xe6"
	infoEnd   = "\xf92C1\x86\x18 r\x00\x82B\x10A\x16\xd8\xf2"
)

func (s synthELF) buildInfo() *debug.BuildInfo {
	mode := "exe"
	if s.plugin {
		mode = "plugin"
	}
	cgo := "0"
	if s.cgo {
		cgo = "1"
	}
	return &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Path:      s.mainPath,
		Main:      debug.Module{Path: "example.test/matrix", Version: "(devel)"},
		Deps: []*debug.Module{
			{Path: "example.test/dep", Version: "v1.0.0", Replace: &debug.Module{Path: "example.test/dep", Version: "v1.1.0", Sum: "h1:" + strings.Repeat("A", 43) + "="}},
			{Path: "example.test/other", Version: "v0.2.0", Sum: "h1:" + strings.Repeat("B", 43) + "="},
		},
		Settings: []debug.BuildSetting{
			{Key: "-buildmode", Value: mode}, {Key: "-compiler", Value: "gc"}, {Key: "-ldflags", Value: "-X main.v=1"},
			{Key: "-tags", Value: "splicetag,netgo"}, {Key: "-trimpath", Value: "true"}, {Key: "CGO_ENABLED", Value: cgo},
			{Key: "GOARCH", Value: "amd64"}, {Key: "GOOS", Value: "linux"}, {Key: "GOAMD64", Value: "v1"},
		},
	}
}

// facts are what ReadFacts must read from the file.
func (s synthELF) facts(path string) *Facts {
	f := factsFromBuildInfo(s.buildInfo())
	f.Path = path
	for pkg, h := range s.packages {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], h)
		f.Packages[pkg] = hex.EncodeToString(b[:])
	}
	if s.plugin {
		f.PluginPath = s.pluginPath
	}
	return f
}

type synthSection struct {
	name       string
	typ        elf.SectionType
	flags      elf.SectionFlag
	data       []byte
	link, info uint32
	entsize    uint64
}

// bytes lays the file out: the ELF header, one PT_LOAD program header mapping the whole file
// at address 0 (so an address is a file offset), the sections' contents, 16-aligned, and the
// section headers.
func (s synthELF) bytes() []byte {
	bo := binary.LittleEndian
	ptr := 8
	if s.class32 {
		ptr = 4
	}
	// .rodata: the 8-byte hashes, then the plugin path.
	pkgs := make([]string, 0, len(s.packages))
	for p := range s.packages {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	var rodata []byte
	for _, p := range pkgs {
		rodata = binary.BigEndian.AppendUint64(rodata, s.packages[p])
	}
	pathOff := len(rodata)
	rodata = append(rodata, s.pluginPath...)

	mod := infoStart + s.buildInfo().String() + infoEnd
	bi := append([]byte("\xff Go buildinf:"), byte(ptr), 2)
	bi = append(bi, make([]byte, 16)...)
	bi = binary.AppendUvarint(bi, uint64(len("go1.26.8")))
	bi = append(bi, "go1.26.8"...)
	bi = binary.AppendUvarint(bi, uint64(len(mod)))
	bi = append(bi, mod...)

	ehsize, phsize, shsize, symsize := 64, 56, 64, elf.Sym64Size
	if s.class32 {
		ehsize, phsize, shsize, symsize = 52, 32, 40, elf.Sym32Size
	}
	align := func(n int) int { return (n + 15) &^ 15 }

	// Addresses are file offsets; sections are placed in order from here.
	secs := []synthSection{{}}
	off := align(ehsize + phsize)
	addrs := []int{0}
	add := func(sec synthSection) int {
		secs = append(secs, sec)
		addrs = append(addrs, off)
		off = align(off + len(sec.data))
		return len(secs) - 1
	}
	rodataIdx := add(synthSection{name: ".rodata", typ: elf.SHT_PROGBITS, flags: elf.SHF_ALLOC, data: rodata})
	add(synthSection{name: ".go.buildinfo", typ: elf.SHT_PROGBITS, flags: elf.SHF_ALLOC | elf.SHF_WRITE, data: bi})
	sym := func(name uint32, info byte, shndx uint16, value, size uint64) []byte {
		b := make([]byte, symsize)
		if s.class32 {
			bo.PutUint32(b[0:], name)
			bo.PutUint32(b[4:], uint32(value))
			bo.PutUint32(b[8:], uint32(size))
			b[12] = info
			bo.PutUint16(b[14:], shndx)
		} else {
			bo.PutUint32(b[0:], name)
			b[4] = info
			bo.PutUint16(b[6:], shndx)
			bo.PutUint64(b[8:], value)
			bo.PutUint64(b[16:], size)
		}
		return b
	}
	rodataAddr := uint64(addrs[rodataIdx])
	if len(pkgs) > 0 {
		dynstr := []byte{0}
		dynsym := make([]byte, symsize)
		for i, p := range pkgs {
			name := uint32(len(dynstr))
			dynstr = append(append(dynstr, pkghashBytesPrefix+p...), 0)
			dynsym = append(dynsym, sym(name, byte(elf.STB_GLOBAL)<<4|byte(elf.STT_OBJECT), uint16(rodataIdx), rodataAddr+uint64(8*i), 8)...)
		}
		// A reference to another module's hash: not this binary's package.
		name := uint32(len(dynstr))
		dynstr = append(append(dynstr, pkghashBytesPrefix+"example.test/elsewhere"...), 0)
		dynsym = append(dynsym, sym(name, byte(elf.STB_GLOBAL)<<4|byte(elf.STT_OBJECT), uint16(elf.SHN_UNDEF), 0, 8)...)
		strIdx := len(secs) + 1
		add(synthSection{name: ".dynsym", typ: elf.SHT_DYNSYM, flags: elf.SHF_ALLOC, data: dynsym, link: uint32(strIdx), info: 1, entsize: uint64(symsize)})
		add(synthSection{name: ".dynstr", typ: elf.SHT_STRTAB, flags: elf.SHF_ALLOC, data: dynstr})
	}
	if s.symtab {
		strtab := append([]byte{0}, "go:link.thispluginpath\x00"...)
		symtab := append(make([]byte, symsize), sym(1, byte(elf.STB_LOCAL)<<4|byte(elf.STT_OBJECT), uint16(rodataIdx), rodataAddr+uint64(pathOff), uint64(len(s.pluginPath)))...)
		strIdx := len(secs) + 1
		add(synthSection{name: ".symtab", typ: elf.SHT_SYMTAB, data: symtab, link: uint32(strIdx), info: 2, entsize: uint64(symsize)})
		add(synthSection{name: ".strtab", typ: elf.SHT_STRTAB, data: strtab})
	}
	shstrtab := []byte{0}
	names := make([]uint32, len(secs)+1)
	for i := 1; i < len(secs); i++ {
		names[i] = uint32(len(shstrtab))
		shstrtab = append(append(shstrtab, secs[i].name...), 0)
	}
	names[len(secs)] = uint32(len(shstrtab))
	shstrtab = append(shstrtab, ".shstrtab\x00"...)
	shstrIdx := add(synthSection{name: ".shstrtab", typ: elf.SHT_STRTAB, data: shstrtab})
	shoff := off
	loadSize := shoff

	out := make([]byte, shoff+len(secs)*shsize)
	copy(out, elf.ELFMAG)
	out[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	out[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	if s.class32 {
		out[elf.EI_CLASS] = byte(elf.ELFCLASS32)
		bo.PutUint16(out[16:], uint16(elf.ET_DYN))
		bo.PutUint16(out[18:], uint16(elf.EM_386))
		bo.PutUint32(out[20:], uint32(elf.EV_CURRENT))
		bo.PutUint32(out[28:], uint32(ehsize)) // phoff
		bo.PutUint32(out[32:], uint32(shoff))
		bo.PutUint16(out[40:], uint16(ehsize))
		bo.PutUint16(out[42:], uint16(phsize))
		bo.PutUint16(out[44:], 1)
		bo.PutUint16(out[46:], uint16(shsize))
		bo.PutUint16(out[48:], uint16(len(secs)))
		bo.PutUint16(out[50:], uint16(shstrIdx))
		ph := out[ehsize:]
		bo.PutUint32(ph[0:], uint32(elf.PT_LOAD))
		bo.PutUint32(ph[16:], uint32(loadSize)) // filesz
		bo.PutUint32(ph[20:], uint32(loadSize)) // memsz
		bo.PutUint32(ph[24:], uint32(elf.PF_R|elf.PF_W))
		bo.PutUint32(ph[28:], 16)
	} else {
		out[elf.EI_CLASS] = byte(elf.ELFCLASS64)
		bo.PutUint16(out[16:], uint16(elf.ET_DYN))
		bo.PutUint16(out[18:], uint16(elf.EM_X86_64))
		bo.PutUint32(out[20:], uint32(elf.EV_CURRENT))
		bo.PutUint64(out[32:], uint64(ehsize)) // phoff
		bo.PutUint64(out[40:], uint64(shoff))
		bo.PutUint16(out[52:], uint16(ehsize))
		bo.PutUint16(out[54:], uint16(phsize))
		bo.PutUint16(out[56:], 1)
		bo.PutUint16(out[58:], uint16(shsize))
		bo.PutUint16(out[60:], uint16(len(secs)))
		bo.PutUint16(out[62:], uint16(shstrIdx))
		ph := out[ehsize:]
		bo.PutUint32(ph[0:], uint32(elf.PT_LOAD))
		bo.PutUint32(ph[4:], uint32(elf.PF_R|elf.PF_W))
		bo.PutUint64(ph[32:], uint64(loadSize)) // filesz
		bo.PutUint64(ph[40:], uint64(loadSize)) // memsz
		bo.PutUint64(ph[48:], 16)
	}
	for i := 1; i < len(secs); i++ {
		sec := secs[i]
		copy(out[addrs[i]:], sec.data)
		sh := out[shoff+i*shsize:]
		if s.class32 {
			bo.PutUint32(sh[0:], names[i])
			bo.PutUint32(sh[4:], uint32(sec.typ))
			bo.PutUint32(sh[8:], uint32(sec.flags))
			bo.PutUint32(sh[12:], uint32(addrs[i]))
			bo.PutUint32(sh[16:], uint32(addrs[i]))
			bo.PutUint32(sh[20:], uint32(len(sec.data)))
			bo.PutUint32(sh[24:], sec.link)
			bo.PutUint32(sh[28:], sec.info)
			bo.PutUint32(sh[32:], 1)
			bo.PutUint32(sh[36:], uint32(sec.entsize))
		} else {
			bo.PutUint32(sh[0:], names[i])
			bo.PutUint32(sh[4:], uint32(sec.typ))
			bo.PutUint64(sh[8:], uint64(sec.flags))
			bo.PutUint64(sh[16:], uint64(addrs[i]))
			bo.PutUint64(sh[24:], uint64(addrs[i]))
			bo.PutUint64(sh[32:], uint64(len(sec.data)))
			bo.PutUint32(sh[40:], sec.link)
			bo.PutUint32(sh[44:], sec.info)
			bo.PutUint64(sh[48:], 1)
			bo.PutUint64(sh[56:], sec.entsize)
		}
	}
	return out
}

// synthSpecs are the seeds: a plugin with and without its symbol table, a host, a 32-bit
// plugin, and a host built without cgo (no package hashes).
var synthSpecs = map[string]synthELF{
	"plugin": {plugin: true, symtab: true, cgo: true, pluginPath: "example.test/matrix/plugins/a", mainPath: "example.test/matrix/plugins/a",
		packages: map[string]uint64{"example.test/matrix/plugins/a": 0x0123456789abcdef, "example.test/matrix/shared": 0xfedcba9876543210, "fmt": 1}},
	"plugin-stripped": {plugin: true, cgo: true, pluginPath: "example.test/matrix/plugins/a", mainPath: "example.test/matrix/plugins/a",
		packages: map[string]uint64{"example.test/matrix/plugins/a": 42, "runtime": 7}},
	"host":       {cgo: true, mainPath: "example.test/matrix/host", packages: map[string]uint64{"example.test/matrix/host": 3, "plugin": 4}},
	"plugin-32":  {class32: true, plugin: true, symtab: true, cgo: true, pluginPath: "plugin/unnamed-0123", mainPath: "command-line-arguments", packages: map[string]uint64{"plugin/unnamed-0123": 5}},
	"host-nocgo": {mainPath: "example.test/matrix/host"},
}

// TestReadFactsSyntheticELF holds the fuzzer's seeds to what they are meant to be: files
// ReadFacts reads in full, with the facts the generator put in.
func TestReadFactsSyntheticELF(t *testing.T) {
	dir := t.TempDir()
	for name, s := range synthSpecs {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, s.bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := ReadFacts(path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if want := s.facts(path); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: ReadFacts =\n%+v\nwant\n%+v", name, got, want)
		}
	}
}

// hostileELFs are the plugin seed with one field set to what a hostile file may say.
func hostileELFs() map[string][]byte {
	s := synthSpecs["plugin"]
	good := s.bytes()
	f, err := elf.NewFile(bytes.NewReader(good))
	if err != nil {
		panic(err)
	}
	bo := binary.LittleEndian
	shoff := int(bo.Uint64(good[40:]))
	secHeader := func(b []byte, name string) []byte {
		for i, sec := range f.Sections {
			if sec.Name == name {
				return b[shoff+i*64:]
			}
		}
		panic(name)
	}
	symtabEntry := func(b []byte) []byte { // go:link.thispluginpath
		return b[f.Section(".symtab").Offset+elf.Sym64Size:]
	}
	out := map[string][]byte{}
	edit := func(name string, change func(b []byte)) {
		b := bytes.Clone(good)
		change(b)
		out[name] = b
	}
	// The plugin path symbol's size wraps around the end of its section's bounds.
	edit("plugin path size wraps", func(b []byte) { bo.PutUint64(symtabEntry(b)[16:], ^uint64(0)-7) })
	// A section that declares a terabyte of contents, and a symbol half that size inside it.
	edit("plugin path of a terabyte", func(b []byte) {
		bo.PutUint64(secHeader(b, ".rodata")[32:], 1<<40)
		bo.PutUint64(symtabEntry(b)[16:], 1<<39)
	})
	// Contents marked compressed: debug/elf gives such a section no ReaderAt.
	edit("compressed rodata", func(b []byte) {
		sh := secHeader(b, ".rodata")
		bo.PutUint64(sh[8:], bo.Uint64(sh[8:])|uint64(elf.SHF_COMPRESSED))
	})
	edit("hash symbol at the end of the address space", func(b []byte) {
		bo.PutUint64(b[f.Section(".dynsym").Offset+elf.Sym64Size+8:], ^uint64(0)-3)
	})
	edit("symtab links past the sections", func(b []byte) { bo.PutUint32(secHeader(b, ".symtab")[40:], 1000) })
	edit("dynsym of a terabyte", func(b []byte) { bo.PutUint64(secHeader(b, ".dynsym")[32:], 1<<40) })
	// Build information a facts file could not hold.
	edit("package name not UTF-8", func(b []byte) {
		i := bytes.Index(b, []byte(pkghashBytesPrefix+"example.test/matrix/shared"))
		b[i+len(pkghashBytesPrefix)+1] = 0xff
	})
	edit("empty package name", func(b []byte) { b[bytes.Index(b, []byte(pkghashBytesPrefix+"fmt"))+len(pkghashBytesPrefix)] = 0 })
	edit("empty plugin path", func(b []byte) { bo.PutUint64(symtabEntry(b)[16:], 0) })
	edit("not a Go version", func(b []byte) { b[bytes.Index(b, []byte("go1.26.8"))] = 'x' })
	out["truncated"] = good[:len(good)/2]
	return out
}

// FuzzReadFacts writes each input to a file and reads its facts. ReadFacts must return within
// seconds, with facts or an error, never a panic; facts it reads from a binary must be facts
// it would accept from a facts file (Validate), and WriteFile then ReadFacts must give them
// back unchanged (`splice facts BINARY -o FILE` records a binary's facts that way).
func FuzzReadFacts(f *testing.F) {
	names := make([]string, 0, len(synthSpecs))
	for name := range synthSpecs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		f.Add(synthSpecs[name].bytes())
	}
	hostile := hostileELFs()
	names = names[:0]
	for name := range hostile {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		f.Add(hostile[name])
	}
	// A real Go binary, cut short: the ELF header and program headers of this test binary.
	if exe, err := os.Executable(); err == nil {
		if b, err := os.ReadFile(exe); err == nil && len(b) > 4096 {
			f.Add(b[:4096])
		}
	}
	// Facts files, which ReadFacts reads too.
	if b, err := jsonFacts(synthSpecs["plugin"].facts("")); err == nil {
		f.Add(b)
		f.Add(append(bytes.Repeat([]byte("\n"), 600), b...))
	}
	f.Add([]byte(`{"kind":"host","goVersion":"go1.26.8","goos":"linux","goarch":"amd64"}`))
	f.Add([]byte("\x7fELF"))

	var panicked atomic.Bool
	dir := f.TempDir()
	in, out := filepath.Join(dir, "input"), filepath.Join(dir, "facts.json")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(in, data, 0o644); err != nil {
			t.Fatal(err)
		}
		type result struct {
			facts *Facts
			err   error
		}
		done := make(chan result, 1)
		go func() {
			defer func() {
				if p := recover(); p != nil {
					done <- result{err: fmt.Errorf("panic: %v\n%s", p, debug.Stack())}
					panicked.Store(true)
				}
			}()
			facts, err := ReadFacts(in)
			done <- result{facts, err}
		}()
		var r result
		select {
		case r = <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("ReadFacts did not return within 10s")
		}
		if panicked.Swap(false) {
			t.Fatalf("ReadFacts panicked on %d bytes: %v", len(data), r.err)
		}
		if r.err != nil {
			if r.facts != nil {
				t.Fatalf("ReadFacts returned facts with its error %v", r.err)
			}
			return
		}
		if err := r.facts.Validate(); err != nil {
			t.Fatalf("ReadFacts read facts it would refuse from a facts file: %v\n%+v", err, r.facts)
		}
		if err := r.facts.WriteFile(out); err != nil {
			t.Fatal(err)
		}
		again, err := ReadFacts(out)
		if err != nil {
			t.Fatalf("the facts ReadFacts read do not read back from a facts file: %v", err)
		}
		again.Path = r.facts.Path
		if !reflect.DeepEqual(again, r.facts) {
			t.Fatalf("WriteFile then ReadFacts changed the facts:\n%+v\n%+v", r.facts, again)
		}
	})
}

func jsonFacts(f *Facts) ([]byte, error) {
	dir, err := os.MkdirTemp("", "facts")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	p := filepath.Join(dir, "f.json")
	if err := f.WriteFile(p); err != nil {
		return nil, err
	}
	return os.ReadFile(p)
}
