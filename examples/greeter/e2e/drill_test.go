package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/splice-dev/splice/host/control"
)

// TestPanicDrills: panics in plugin init, in a call, and past the threshold; plugins that
// break the symbol or API convention. The host must refuse, recover, count and roll back, and
// never die.
func TestPanicDrills(t *testing.T) {
	h := startHost(t, "-panic-threshold", "3")
	ctx := h.ctx(t)

	t.Run("init panic fails the load cleanly", func(t *testing.T) {
		_, err := h.client.Load(ctx, control.LoadRequest{Path: h.pluginPath("initpanic"), Digest: h.digest("initpanic")})
		if codeOf(err) != control.CodeLoadFailed || reasonOf(err) != "InitPanic" || !strings.Contains(err.Error(), "deliberate panic in plugin init") {
			t.Fatalf("load initpanic: %v; want LoadFailed, reason InitPanic, naming the init panic", err)
		}
		h.requireAlive()
		vs := h.status(t).Version(h.digest("initpanic"))
		if vs == nil || vs.State != control.StateFailed || !strings.Contains(vs.Error, "panicked") ||
			vs.ErrorCode != control.CodeLoadFailed || vs.ErrorReason != "InitPanic" {
			t.Fatalf("initpanic status %+v; want Failed with the panic, code LoadFailed, reason InitPanic", vs)
		}
		if a := h.greet(t, "n", ""); known(a, "n") != nil || a.Version != "v1" {
			t.Fatalf("v1 stopped serving after a failed load: %+v", a)
		}
	})

	t.Run("a failed path is never tried again", func(t *testing.T) {
		// Reopening it would hang forever inside plugin.Open.
		_, err := h.client.Load(ctx, control.LoadRequest{Path: h.pluginPath("initpanic"), Digest: h.digest("initpanic")})
		if codeOf(err) != control.CodeDigestInUse && codeOf(err) != control.CodePathTried {
			t.Fatalf("second load of initpanic: %v; want it refused without opening", err)
		}
		other := "sha256:" + strings.Repeat("0", 64)
		_, err = h.client.Load(ctx, control.LoadRequest{Path: h.pluginPath("initpanic"), Digest: other})
		if codeOf(err) != control.CodePathTried {
			t.Fatalf("load of the failed path under another digest: %v; want PathAlreadyTried", err)
		}
		// The same file under another name has the same plugin path; the preflight knows
		// the failed one is in the process.
		copyPath := filepath.Join(h.shared, "initpanic-copy.so")
		data, err := os.ReadFile(h.pluginPath("initpanic"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(copyPath, data, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err = h.client.Load(ctx, control.LoadRequest{Path: copyPath, Digest: "sha256:" + strings.Repeat("1", 64)})
		if codeOf(err) != control.CodePreflight || reasonOf(err) != "DuplicatePluginPath" || !strings.Contains(err.Error(), "DuplicatePluginPath") {
			t.Fatalf("load of a copy of the failed plugin: %v; want PreflightRefused for DuplicatePluginPath", err)
		}
		h.requireAlive()
	})

	t.Run("symbol of the wrong type is refused", func(t *testing.T) {
		_, err := h.client.Load(ctx, control.LoadRequest{Path: h.pluginPath("badsymbol"), Digest: h.digest("badsymbol")})
		if codeOf(err) != control.CodeLoadFailed || reasonOf(err) != "SymbolLookupFailed" || !strings.Contains(err.Error(), "want func() greeter.Greeter") {
			t.Fatalf("load badsymbol: %v; want LoadFailed, reason SymbolLookupFailed, naming both types", err)
		}
	})

	t.Run("major API change is refused", func(t *testing.T) {
		_, err := h.client.Load(ctx, control.LoadRequest{Path: h.pluginPath("major"), Digest: h.digest("major")})
		if codeOf(err) != control.CodeAPIMajor {
			t.Fatalf("load major: %v; want APIMajorChange", err)
		}
	})

	t.Run("minor API change needs consent", func(t *testing.T) {
		_, err := h.client.Load(ctx, control.LoadRequest{Path: h.pluginPath("v3"), Digest: h.digest("v3"), Swap: true})
		if codeOf(err) != control.CodeAPIMinor {
			t.Fatalf("swap to v3 (1.1.0) without consent: %v; want APIMinorChangeNeedsConsent", err)
		}
		if st := h.status(t); st.Current != h.digest("v1") || st.Version(h.digest("v3")).State != control.StateLoaded {
			t.Fatalf("refused swap changed routing: current %s, v3 %+v", st.Current, st.Version(h.digest("v3")))
		}
		if _, err := h.client.Swap(ctx, control.SwapRequest{Digest: h.digest("v3"), AllowMinor: true}); err != nil {
			t.Fatalf("swap to v3 with consent: %v", err)
		}
		if a := h.greet(t, "n", ""); a.Version != "v3" {
			t.Fatalf("after the consented swap: %+v; want v3", a)
		}
		if _, err := h.client.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		if a := h.greet(t, "n", ""); a.Version != "v1" {
			t.Fatalf("after the rollback: %+v; want v1", a)
		}
	})

	t.Run("call panics are recovered, counted, and roll back past the threshold", func(t *testing.T) {
		if _, err := h.client.Load(ctx, control.LoadRequest{Path: h.pluginPath("callpanic"), Digest: h.digest("callpanic"), Swap: true}); err != nil {
			t.Fatalf("load and swap callpanic: %v", err)
		}
		for i := 1; i <= 2; i++ {
			a := h.greet(t, "n", "")
			if a.Err != nil || a.Status != 500 || !strings.Contains(a.Body, "panicked") {
				t.Fatalf("call %d to callpanic: %+v; want a 500 saying the plugin panicked", i, a)
			}
			st := h.status(t)
			if vs := st.Version(h.digest("callpanic")); st.Current != h.digest("callpanic") || vs.Panics != uint64(i) || vs.Calls != uint64(i) {
				t.Fatalf("after %d panics (threshold 3): current %s, callpanic %+v", i, st.Current, vs)
			}
		}
		if a := h.greet(t, "n", ""); a.Status != 500 {
			t.Fatalf("third call: %+v; want 500", a)
		}
		waitFor(t, "the automatic rollback", func() bool { return h.status(t).Current == h.digest("v1") })
		st := h.status(t)
		if st.LastSwap == nil || st.LastSwap.Op != control.OpAutoRollback || st.LastSwap.From != h.digest("callpanic") {
			t.Fatalf("last swap %+v; want auto-rollback from callpanic", st.LastSwap)
		}
		if a := h.greet(t, "n", ""); known(a, "n") != nil || a.Version != "v1" {
			t.Fatalf("after the rollback: %+v; want v1", a)
		}
		h.requireAlive()
		if a := h.greet(t, "n", ""); a.PID != strconv.Itoa(h.PID()) {
			t.Fatalf("answered by pid %s; the host was %d", a.PID, h.PID())
		}
	})
}
