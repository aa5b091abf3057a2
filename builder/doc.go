// Package builder turns a plugin's source into a Splice plugin artifact: it is the logic
// behind cmd/builder, which the build controller runs in a Job in the golang:<goVersion> image.
//
// One build (Build) checks that the go command is exactly the Go release asked for (Go loads
// plugins only into hosts built by the identical toolchain), clones the revision with the git
// CLI or takes a checkout, resolves the plugin's main package and everything it imports with
// `go list -deps`, and hashes those inputs: the toolchain and its environment, the flags and
// tags, the files of every package that lives in the checkout, and the version of every other
// module. It then copies the package into a directory inside itself named splice-<16 hex of
// that hash> and builds the copy with -buildmode=plugin -trimpath and cgo. The copy's import
// path is the plugin path, so
//
//   - the same inputs give the same plugin path (and, with the commit time as builtAt, the
//     same artifact digest), and
//   - any change to what is compiled gives another plugin path, which a host can load next to
//     the versions it already holds (Go never unloads a plugin and refuses a second one with
//     the same path).
//
// Overriding the plugin path with -ldflags=-pluginpath does not work: the runtime looks
// symbols up under the plugin path, the compiler emitted them under the import path, and
// plugin.Open fails with "could not find symbol" (measured with go1.26.8).
//
// The build facts are read back from the .so with preflight.ReadFacts (the format the
// preflight and the agent read), checked against what was asked for (plugin path, toolchain,
// exported symbol), and pushed with artifact.Push. Before that the constructor is
// type-checked (symbol.go): go/types checks the plugin's main package against the export data
// `go list -export` gives for its dependencies, built with the same flags (from the build
// cache, so it costs about one compile of the main package, and nothing is loaded). Options.Symbol must be a
// function without parameters returning an interface, and exactly func() Options.Contract
// when a contract is given, since hosts assert sym.(func() T); otherwise the build fails with
// SymbolTypeMismatch naming the symbol, the type the hosts need and the type it has.
//
// Errors name the inputs the way the caller gave them (Options.FieldNames): the builder's
// flags (--api-version) on the command line, the Build resource's fields
// (spec.plugin.apiVersion) when the build controller runs it, recognized by --build-key. On
// the command line --go-version may be left out: the build takes the release of the go on
// PATH (`go env GOVERSION`), the toolchain that compiles the plugin — not runtime.Version(),
// the one that compiled the builder, which may well differ; the hosts must be built with that
// same release. The controller always names the release. The Result — or a Failure with a Reason —
// is printed as JSON and written to the container's termination message, where the
// controller reads it (ParseResult, ParseFailure).
//
// What it may not touch: it never loads or runs the plugin it builds (no plugin.Open), writes
// only inside its working directory and the package's splice-* copy (removed afterwards), and
// knows nothing about Kubernetes.
package builder
