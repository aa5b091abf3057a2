package control

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
)

// ErrTrailingData is DecodeOne's refusal of anything after the JSON value.
var ErrTrailingData = errors.New("trailing data after the JSON object")

// DecodeOne decodes exactly one JSON value from data into v: it refuses fields v does not have
// (a misspelt field must not silently mean "default") and anything after the value. It is the
// one reading of another party's JSON that the control socket, the agent's report and the
// build's termination message share. json.Decoder.More is not enough for the second rule: at
// the top level it reports false on a stray '}' or ']'.
func DecodeOne(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return ErrTrailingData
	}
	return nil
}

// Request is implemented by every request type: Validate checks its form.
type Request interface {
	Validate() error
}

// Decode reads exactly one JSON object from r into req and validates it. It refuses unknown
// fields (a misspelt field must not silently mean "default"), trailing data, bodies over
// MaxRequestBytes, and anything Validate refuses. The error is always an *Error whose Code and
// Message say what was wrong. req is left in an unspecified state on error.
//
// The server wraps bodies in http.MaxBytesReader; Decode enforces the bound itself as well so
// that it is safe on any reader (the fuzz test feeds it raw bytes).
func Decode(r io.Reader, req Request) error {
	body, err := io.ReadAll(io.LimitReader(r, MaxRequestBytes+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return Errorf(CodeTooLarge, "request body over %d bytes", mbe.Limit)
		}
		return Errorf(CodeBadRequest, "read request body: %v", err)
	}
	if len(body) > MaxRequestBytes {
		return Errorf(CodeTooLarge, "request body over %d bytes", MaxRequestBytes)
	}
	if trimmed := bytes.TrimSpace(body); len(trimmed) == 0 || trimmed[0] != '{' {
		// null, arrays and scalars would decode into a zero request without complaint.
		return Errorf(CodeBadRequest, "request body must be one JSON object (at least {})")
	}
	if err := DecodeOne(body, req); err != nil {
		return Errorf(CodeBadRequest, "decode request: %v", err)
	}
	if err := req.Validate(); err != nil {
		return Errorf(CodeBadRequest, "invalid request: %v", err)
	}
	return nil
}
