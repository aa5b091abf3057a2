package controllers

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"

	"github.com/splice-dev/splice/host/control"
)

// FlagPrometheusAllowedAddresses is the manager flag that lists the Prometheus addresses a
// CompilerVersion's canary analysis may query; messages name it.
const FlagPrometheusAllowedAddresses = "--prometheus-allowed-addresses"

// maxPromSummary bounds what of an error from a Prometheus query reaches status and Events.
const maxPromSummary = 200

// PrometheusAllowlist is the Prometheus HTTP API base URLs a canary analysis may query: anyone
// who may edit a CompilerVersion names spec...prometheus.address, and the manager sends the
// query there, so the manager, not the CompilerVersion, decides where it may go. The zero
// value allows no address.
type PrometheusAllowlist struct {
	prefixes []*url.URL
}

// ParsePrometheusAllowlist reads the allowed addresses: each an http:// or https:// URL with a
// host, no user info, query or fragment. An address is allowed when its scheme, host and port
// are those of an entry and its path is the entry's path or under it.
func ParsePrometheusAllowlist(entries []string) (PrometheusAllowlist, error) {
	var l PrometheusAllowlist
	for _, e := range entries {
		u, err := parsePromURL(e)
		if err != nil {
			return PrometheusAllowlist{}, fmt.Errorf("%s: %q: %w; give base URLs such as http://prometheus.monitoring:9090",
				FlagPrometheusAllowedAddresses, control.Truncate(e, maxPromSummary), err)
		}
		l.prefixes = append(l.prefixes, u)
	}
	return l, nil
}

// String lists the entries, for logs.
func (l PrometheusAllowlist) String() string {
	s := make([]string, len(l.prefixes))
	for i, u := range l.prefixes {
		s[i] = u.String()
	}
	return strings.Join(s, ",")
}

// Allows reports whether address may be queried.
func (l PrometheusAllowlist) Allows(address string) bool {
	u, err := parsePromURL(address)
	if err != nil {
		return false
	}
	for _, p := range l.prefixes {
		if p.Scheme == u.Scheme && p.Host == u.Host && pathUnder(u.Path, p.Path) {
			return true
		}
	}
	return false
}

// parsePromURL parses a Prometheus base URL into its comparable form: scheme and host lower
// case, the scheme's default port explicit, the path without its final slash.
func parsePromURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return nil, errors.New("not a URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, errors.New("not an http:// or https:// URL")
	case u.Host == "" || u.Hostname() == "":
		return nil, errors.New("no host")
	case u.User != nil:
		return nil, errors.New("user info is not allowed")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(s, "#"):
		return nil, errors.New("a query or fragment is not allowed")
	case u.RawPath != "" || strings.Contains(u.Path, "%") || slices.ContainsFunc(strings.Split(u.Path, "/"), isDotSegment):
		// Either would let an address look under an allowed path and resolve outside it.
		return nil, errors.New("an escaped path or a . or .. segment is not allowed")
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	host := strings.ToLower(u.Hostname())
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return &url.URL{Scheme: u.Scheme, Host: host + ":" + port, Path: strings.TrimRight(u.Path, "/")}, nil
}

func isDotSegment(s string) bool { return s == "." || s == ".." }

// pathUnder reports whether path is prefix or below it, by whole segments.
func pathUnder(path, prefix string) bool {
	path = strings.TrimRight(path, "/")
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

// errPromAddressNotAllowed is the query the manager refused to send: its address is not in
// the allowlist.
type errPromAddressNotAllowed struct{ address string }

func (e *errPromAddressNotAllowed) Error() string {
	return fmt.Sprintf("prometheus.address %s is not one the manager may query: list it (or a prefix of it) in the manager's %s "+
		"(Helm value manager.prometheus.allowedAddresses)", strconv.Quote(control.Truncate(e.address, maxPromSummary)), FlagPrometheusAllowedAddresses)
}

// promErrorSummary is what of a failed query may reach status and Events: the error's kind
// and its message bounded and escaped. A Prometheus server's body (promv1.Error.Detail) never
// does, and what the server wrote in its error field comes quoted, on one line.
func promErrorSummary(err error) string {
	var pe *promv1.Error
	if errors.As(err, &pe) {
		return fmt.Sprintf("prometheus answered %s: %s", pe.Type, strconv.QuoteToASCII(control.Truncate(pe.Msg, maxPromSummary)))
	}
	return oneLine(control.Truncate(err.Error(), maxPromSummary))
}

// oneLine replaces the control characters of s, newlines included, with spaces.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
}

// noRedirects keeps a query at the address the allowlist allowed: a redirect is an answer
// (an error), never followed.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
