// Package preflight predicts, without loading anything, whether plugin.Open
// would load a Go plugin into a given host process, and whether the result
// would be a build Go supports.
//
// It reads a binary's build facts (Facts) from its build information
// (debug/buildinfo) and from the go:link.pkghashbytes.<package> symbols the
// Go linker exports into the ELF dynamic symbol table (.dynsym), and compares
// a plugin's facts with the host's and with those of every plugin already
// opened in that process (Check). The host library runs the check in-process
// before every plugin.Open, the agent runs it before asking the host to load,
// and `splice preflight` runs it from a shell.
//
// A Verdict holds one Problem per cause, not per package: the packages a -trimpath, -race,
// -gcflags or -tags difference, a module at another version, or a source difference makes
// differ are one PackageHashMismatch, whose message says which side to rebuild and how, and
// whose Packages, Cause and Rebuild fields give the detail to machines. No text of a Verdict
// holds a line break, whatever the facts contain: a verdict is one log record and one line.
//
// What it may not touch:
//   - Only the standard library. Applications link this package through the
//     host library; every dependency added here becomes theirs, and any
//     package shared with a plugin must then match that plugin exactly.
//   - It never loads, maps or executes the files it inspects (no plugin.Open,
//     no dlopen, no exec): a bad plugin can kill the process that opens it,
//     and answering "would that happen?" is the whole point.
//   - It reads only the parts of a file it needs (ELF headers, .dynsym and
//     its string table, the 8-byte hashes, the build information, and the
//     .symtab of plugins only), so a check costs milliseconds.
package preflight
