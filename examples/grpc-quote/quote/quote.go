// Package quote is the contract between the quote host and its plugins. It must stay
// identical in host and plugins (Go's plugin rule), so it imports nothing.
package quote

// APIVersion is the version of the Quoter contract the host is built against. Plugins declare
// their own (`var APIVersion = "1.0.0"`).
const APIVersion = "1.0.0"

// Quoter is what every quote plugin implements; a plugin exports `func Plugin() quote.Quoter`.
type Quoter interface {
	// Quote answers a quote on topic.
	Quote(topic string) (string, error)
	// Release names the plugin's release ("v1", "v2"); the host returns it in every reply.
	Release() string
}
