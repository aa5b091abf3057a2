package control

import (
	"errors"
	"fmt"
	"net/http"
)

// Code is a machine-readable error cause in an ErrorResponse.
type Code string

// Error codes. Each comes with an HTTP status (CodeStatus) and a message saying what to fix.
const (
	CodeBadRequest         Code = "BadRequest"       // body is not one well-formed request object
	CodeTooLarge           Code = "TooLarge"         // body over MaxRequestBytes
	CodeMethodNotAllowed   Code = "MethodNotAllowed" // wrong HTTP method for the endpoint
	CodeNotFound           Code = "NotFound"         // no such endpoint
	CodePathOutside        Code = "PathOutsideSharedDir"
	CodePathNotFound       Code = "PathNotFound"
	CodePathTried          Code = "PathAlreadyTried"    // this process already tried the file
	CodeDigestInUse        Code = "DigestAlreadyLoaded" // another file was loaded under the digest
	CodeUnknownDigest      Code = "UnknownDigest"       // no loaded version has the digest
	CodeFileDigestMismatch Code = "FileDigestMismatch"  // the file's bytes are not the fileDigest named
	CodePreflight          Code = "PreflightRefused"    // the plugin cannot or must not be opened
	CodeLoadFailed         Code = "LoadFailed"          // open, init, symbol or type check failed
	CodeAPIMajor           Code = "APIMajorChange"      // plugin API major version differs
	CodeAPIMinor           Code = "APIMinorChangeNeedsConsent"
	CodeNoPrevious         Code = "NoPreviousVersion" // nothing to roll back to
	CodeNotServable        Code = "NotServable"       // the version failed or is already current
	CodeHandoff            Code = "HandoffUnavailable"
	CodeInternal           Code = "Internal"
)

// CodeStatus is the HTTP status the server answers a code with.
func CodeStatus(c Code) int {
	switch c {
	case CodeBadRequest, CodePathOutside:
		return http.StatusBadRequest
	case CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case CodeMethodNotAllowed:
		return http.StatusMethodNotAllowed
	case CodeNotFound, CodePathNotFound, CodeUnknownDigest:
		return http.StatusNotFound
	case CodePathTried, CodeDigestInUse, CodeNotServable, CodeNoPrevious, CodeHandoff:
		return http.StatusConflict
	case CodePreflight, CodeLoadFailed, CodeAPIMajor, CodeAPIMinor, CodeFileDigestMismatch:
		return http.StatusUnprocessableEntity
	}
	return http.StatusInternalServerError
}

// ErrorResponse is the body of every answer with status >= 400.
type ErrorResponse struct {
	Error ErrorBody `json:"error"`
}

// ErrorBody names the cause and says what to fix.
type ErrorBody struct {
	Code Code `json:"code"`
	// Reason refines PreflightRefused and LoadFailed for machines, in CamelCase: the
	// preflight's first problem (PackageHashMismatch, ...), or InitPanic, SymbolLookupFailed,
	// LoadFailed. Empty from hosts that predate it.
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message"`
}

// Error is a control request that failed: either the host refused it (Status and Code set from
// its answer) or decoding refused it locally.
type Error struct {
	Status int
	Code   Code
	// Reason is ErrorBody.Reason.
	Reason  string
	Message string
}

func (e *Error) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("%s (%d %s): %s", e.Code, e.Status, http.StatusText(e.Status), e.Message)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// IsCode reports whether err is (or wraps) an *Error with the given code.
func IsCode(err error, c Code) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == c
}

// Errorf builds an *Error with the code's HTTP status.
func Errorf(c Code, format string, args ...any) *Error {
	return &Error{Status: CodeStatus(c), Code: c, Message: fmt.Sprintf(format, args...)}
}
