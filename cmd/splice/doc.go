// Command splice is Splice's command-line tool.
//
// Each subcommand lives in its own file and is registered in main.go:
//
//	splice preflight HOST PLUGIN.so [ALREADY-LOADED.so ...]
//	splice facts BINARY [-o FILE]
//
// Exit status: 0 on success, 1 when a check refuses (preflight), 2 on
// usage and I/O errors.
//
// What it may not touch: it is a thin shell over library packages
// (preflight, ...) — decisions belong in those packages, where the host
// library, the agent and the controllers share them; this command only
// parses arguments, prints and picks the exit status.
package main
