package sidecar

import (
	"strings"
	"testing"
	"time"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/host/control"
)

// Digests and references of three artifacts, for the pure functions' tables.
var (
	dA = "sha256:" + strings.Repeat("a", 64)
	dB = "sha256:" + strings.Repeat("b", 64)
	dC = "sha256:" + strings.Repeat("c", 64)
)

func ref(d string) string { return "registry.example.com/greeter@" + d }

// loaded is a version the host holds, opened and verified, in state.
func loaded(d string, state control.VersionState) control.VersionStatus {
	return control.VersionStatus{Digest: d, State: state, LoadedAt: time.Unix(1, 0)}
}

// encode is a report's annotation value; the report must be valid.
func encode(t *testing.T, r *splicev1.PodReport) string {
	t.Helper()
	s, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return s
}
