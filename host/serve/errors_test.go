package serve

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/splice-dev/splice/host"
	"github.com/splice-dev/splice/host/control"
)

func TestStatusCode(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("load /x.so: %w", err) }
	cases := []struct {
		err  error
		want int
	}{
		{nil, 200},
		{host.ErrNoVersion, 503},
		{wrap(host.ErrNoVersion), 503},
		{&host.PanicError{Digest: "sha256:x", Value: "boom"}, 500},
		{fmt.Errorf("call: %w", &host.PanicError{Value: 1}), 500},
		{wrap(host.ErrNotServable), 503},
		{wrap(host.ErrNoHandoff), 503},
		{wrap(host.ErrPathOutside), 400},
		{wrap(host.ErrPathNotFound), 404},
		{wrap(host.ErrUnknownDigest), 404},
		{wrap(host.ErrNoPrevious), 409},
		{wrap(host.ErrPathTried), 409},
		{wrap(host.ErrDigestInUse), 409},
		{wrap(host.ErrAPIMajor), 409},
		{wrap(host.ErrAPIMinor), 409},
		{wrap(host.ErrPreflight), 422},
		{wrap(host.ErrLoad), 422},
		{&control.Error{Status: 418, Code: "Teapot"}, 418},
		{&control.Error{Code: "NoStatus"}, 500},
		{wrap(context.DeadlineExceeded), 504},
		{context.Canceled, StatusClientClosedRequest},
		{errors.New("the plugin's own error"), 500},
	}
	for _, c := range cases {
		if got := StatusCode(c.err); got != c.want {
			t.Errorf("StatusCode(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}

func TestWriteError(t *testing.T) {
	cases := []struct {
		err       error
		status    int
		body      string
		notInBody string
	}{
		{host.ErrNoVersion, 503, "no plugin version loaded yet\n", ""},
		{&host.PanicError{Value: "secret panic value"}, 500, "plugin panicked (recovered and counted)\n", "secret"},
		{errors.New("name too long"), 500, "plugin: name too long\n", ""},
	}
	for _, c := range cases {
		rec := httptest.NewRecorder()
		WriteError(rec, c.err)
		if rec.Code != c.status || rec.Body.String() != c.body {
			t.Errorf("WriteError(%v): %d %q, want %d %q", c.err, rec.Code, rec.Body.String(), c.status, c.body)
		}
		if c.notInBody != "" && strings.Contains(rec.Body.String(), c.notInBody) {
			t.Errorf("WriteError(%v) leaks %q", c.err, c.notInBody)
		}
	}
	rec := httptest.NewRecorder()
	WriteError(rec, nil)
	if rec.Code != http.StatusOK || rec.Body.Len() != 0 {
		t.Errorf("WriteError(nil) wrote %d %q", rec.Code, rec.Body.String())
	}
}
