package e2e

import (
	"strings"
	"testing"

	"github.com/splice-dev/splice/host/control"
)

// TestLimitsFromTheControlSocket: a host started with no memory bound gets one from the agent's
// side of the control socket (as spec.maxLoadedVersions reaches it); the bound takes effect at
// the next swap, survives the re-exec it causes, and the host's instance name survives it too
// (the same process), while a bound that would keep nothing to roll back to is refused and
// changes nothing.
func TestLimitsFromTheControlSocket(t *testing.T) {
	h := startHost(t)
	ctx := h.ctx(t)
	before := h.status(t)
	if len(before.Instance) != 32 || before.Limits != (control.Limits{}) {
		t.Fatalf("a fresh host: instance %q, limits %+v; want a 32-hex instance name and no bound", before.Instance, before.Limits)
	}

	_, err := h.client.SetLimits(ctx, control.LimitsRequest{Limits: control.Limits{MaxVersions: 1}})
	if code := codeOf(err); code != control.CodeBadRequest || !strings.Contains(err.Error(), "roll back") {
		t.Fatalf("SetLimits(maxVersions 1) = %v (code %q); want %s saying a host must keep the version to roll back to", err, code, control.CodeBadRequest)
	}
	// The client refuses it too without a round trip; the host's own check is what the raw
	// request proves.
	if status, er := h.rawControl(t, "POST", "/v1/limits", strings.NewReader(`{"limits":{"maxVersions":1}}`)); status != 400 || er.Error.Code != control.CodeBadRequest {
		t.Fatalf("raw limits request with maxVersions 1: %d %+v; want 400 %s", status, er, control.CodeBadRequest)
	}
	if st := h.status(t); st.Limits != (control.Limits{}) {
		t.Fatalf("a refused limits request changed the bounds to %+v", st.Limits)
	}

	got, err := h.client.SetLimits(ctx, control.LimitsRequest{Limits: control.Limits{MaxVersions: 2}})
	if err != nil || got.MaxVersions != 2 {
		t.Fatalf("SetLimits(maxVersions 2) = %+v, %v", got, err)
	}
	l := startLoad(h.Addr(), 4, true)
	for _, v := range []string{"v2", "v3"} {
		if _, err := h.client.Load(ctx, control.LoadRequest{Path: h.pluginPath(v), Digest: h.digest(v), Swap: true, AllowMinor: true}); err != nil {
			l.finish()
			t.Fatalf("swap to %s: %v", v, err)
		}
	}
	waitFor(t, "the re-exec past the bound set over the socket", func() bool {
		h.requireAlive()
		st := h.status(t)
		return st.Handoff != nil && st.Handoff.Generation >= 1 && !st.Handoff.InProgress
	})
	l.progress(t, 200)
	l.finish()
	l.check(t)
	after := h.status(t)
	if !strings.Contains(after.Handoff.Reason, "bound 2") || after.Current != h.digest("v3") {
		t.Fatalf("after the re-exec: reason %q, current %s; want the bound of 2 to have caused it, serving v3", after.Handoff.Reason, after.Current)
	}
	if after.Limits.MaxVersions != 2 {
		t.Fatalf("after the re-exec the bound is %+v; the bound set over the socket must outlive the image", after.Limits)
	}
	if after.Instance != before.Instance || after.PID != before.PID {
		t.Fatalf("after the re-exec: instance %s pid %d, before %s pid %d; a re-exec is the same process and keeps both",
			after.Instance, after.PID, before.Instance, before.PID)
	}
}
