package control

// DefaultSymbol is the name a plugin exports its constructor under unless told otherwise: the
// host library looks it up (host.Options.Symbol), the builder checks the plugin has it, and a
// CompilerVersion's spec.plugin.symbol defaults to it. It lives here, in the one package all of
// them import, so that it is defined once.
const DefaultSymbol = "Plugin"
