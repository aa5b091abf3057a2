package serve

import (
	"context"
	"errors"
	"net/http"

	"github.com/splice-dev/splice/host"
	"github.com/splice-dev/splice/host/control"
)

// StatusClientClosedRequest is the status for a request whose client went away
// (context.Canceled), after nginx's convention; the client never sees it.
const StatusClientClosedRequest = 499

// statuses maps the host library's sentinel errors to HTTP statuses, first match wins (see
// the table in the package documentation).
var statuses = []struct {
	err    error
	status int
	text   string
}{
	{host.ErrNoVersion, http.StatusServiceUnavailable, "no plugin version loaded yet"},
	{host.ErrNotServable, http.StatusServiceUnavailable, ""},
	{host.ErrNoHandoff, http.StatusServiceUnavailable, ""},
	{host.ErrPathOutside, http.StatusBadRequest, ""},
	{host.ErrPathNotFound, http.StatusNotFound, ""},
	{host.ErrUnknownDigest, http.StatusNotFound, ""},
	{host.ErrNoPrevious, http.StatusConflict, ""},
	{host.ErrPathTried, http.StatusConflict, ""},
	{host.ErrDigestInUse, http.StatusConflict, ""},
	{host.ErrAPIMajor, http.StatusConflict, ""},
	{host.ErrAPIMinor, http.StatusConflict, ""},
	{host.ErrPreflight, http.StatusUnprocessableEntity, ""},
	{host.ErrLoad, http.StatusUnprocessableEntity, ""},
	{context.DeadlineExceeded, http.StatusGatewayTimeout, ""},
	{context.Canceled, StatusClientClosedRequest, ""},
}

// panicText is the answer to a call whose plugin panicked: the panic value and stack stay in
// the logs, never in a response.
const panicText = "plugin panicked (recovered and counted)"

// StatusCode is the HTTP status for err: 200 for nil, then the table in the package
// documentation.
func StatusCode(err error) int {
	status, _ := classify(err)
	return status
}

// WriteError answers err with StatusCode(err) and a plain-text message: fixed texts for
// host.ErrNoVersion and *host.PanicError, "plugin: " and the error otherwise. A nil err writes
// nothing.
func WriteError(w http.ResponseWriter, err error) {
	if err == nil {
		return
	}
	status, text := classify(err)
	http.Error(w, text, status)
}

func classify(err error) (int, string) {
	if err == nil {
		return http.StatusOK, ""
	}
	var perr *host.PanicError
	if errors.As(err, &perr) {
		return http.StatusInternalServerError, panicText
	}
	var cerr *control.Error
	if errors.As(err, &cerr) {
		if cerr.Status == 0 {
			return http.StatusInternalServerError, "plugin: " + err.Error()
		}
		return cerr.Status, "plugin: " + err.Error()
	}
	for _, s := range statuses {
		if errors.Is(err, s.err) {
			if s.text != "" {
				return s.status, s.text
			}
			return s.status, "plugin: " + err.Error()
		}
	}
	return http.StatusInternalServerError, "plugin: " + err.Error()
}
