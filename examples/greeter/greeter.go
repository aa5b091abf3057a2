package greeter

// APIVersion is the version of the Greeter contract the host is built against. Plugins
// declare their own (`var APIVersion = "1.0.1"`); the host library refuses a different major
// version and asks consent for a different minor one.
const APIVersion = "1.0.0"

// Greeter is the interface the greeter host calls and every greeter plugin implements. A
// plugin exports `func Plugin() greeter.Greeter`.
type Greeter interface {
	// Greet answers a greeting for name.
	Greet(name string) (string, error)
	// Release names the plugin's release ("v1", "v2", ...); the host returns it in the
	// X-Plugin-Version header so tests and the benchmark can tell who answered.
	Release() string
}
