// Command splice is Splice's command-line tool.
//
// Each subcommand lives in its own file and is registered in main.go:
//
//	splice preflight HOST PLUGIN.so [ALREADY-LOADED.so ...]
//	splice facts BINARY [-o FILE]
//	splice init DIR --module PATH [--host-module-dir DIR]
//
// The local loop, without Kubernetes (registry.go, push.go, hostcmd.go,
// status.go over package internal/localloop):
//
//	splice registry [--addr 127.0.0.1:5000] [--dir DIR]
//	splice push FILE.so REPO [--tag T] [--version V] [--api-version A] [--insecure]
//	splice load --socket PATH [--shared DIR] [--insecure] REF|FILE.so|DIGEST
//	splice swap --socket PATH [--shared DIR] [--insecure] [--allow-minor-api-change] REF|FILE.so|DIGEST
//	splice status --socket PATH [-o text|json]
//	splice rollback --socket PATH
//
// Exit status: 0 on success, 1 when a check refuses (preflight, plugin API
// step), 2 on usage and I/O errors (registry, host).
//
// What it may not touch: it is a thin shell over library packages
// (preflight, localloop, ...) — decisions belong in those packages, where the host
// library, the agent and the controllers share them; this command only
// parses arguments, prints and picks the exit status.
package main
