package e2e

import (
	"fmt"
	"testing"

	"github.com/splice-dev/splice/host"
	"github.com/splice-dev/splice/host/control"
)

// TestSwapsUnderLoad swaps between three loaded versions while clients on keep-alive and on
// fresh connections send POSTs: every request must be answered, by a known version.
func TestSwapsUnderLoad(t *testing.T) {
	h := startHost(t)
	ctx := h.ctx(t)
	for _, v := range []string{"v2", "v3"} {
		if _, err := h.client.Load(ctx, control.LoadRequest{Path: h.pluginPath(v), Digest: h.digest(v)}); err != nil {
			t.Fatalf("load %s: %v", v, err)
		}
	}
	fresh := startLoad(h.Addr(), 8, true)
	kept := startLoad(h.Addr(), 8, false)
	order := []string{"v2", "v3", "v1", "v3", "v2", "v1", "v2", "v3", "v1", "v2", "v3", "v1"}
	for i, v := range order {
		fresh.progress(t, 25)
		res, err := h.client.Swap(ctx, control.SwapRequest{Digest: h.digest(v), AllowMinor: true})
		if err != nil {
			t.Fatalf("swap %d to %s: %v", i, v, err)
		}
		if res.To != h.digest(v) || res.Before == nil || res.After == nil {
			t.Fatalf("swap %d result %+v; want to=%s with snapshots", i, res, v)
		}
		// No canary: the swap returned, so every call from now on is v's.
		name := fmt.Sprintf("probe-%d", i)
		if a := h.greet(t, name, ""); known(a, name) != nil || a.Version != v {
			t.Fatalf("first answer after swap %d to %s: %+v (%v)", i, v, a, known(a, name))
		}
	}
	fresh.progress(t, 25)
	fresh.finish()
	kept.finish()
	fresh.check(t)
	kept.check(t)
	for _, v := range []string{"v1", "v2", "v3"} {
		if fresh.versions[v]+kept.versions[v] == 0 {
			t.Errorf("no client request was answered by %s", v)
		}
	}
	st := h.status(t)
	if st.LoadedVersions != 3 || st.Current != h.digest("v1") {
		t.Fatalf("after the swaps: %d versions opened, current %s; want 3 and v1", st.LoadedVersions, st.Current)
	}
	var calls uint64
	for _, vs := range st.Versions {
		calls += vs.Calls
		if vs.Panics != 0 || vs.Errors != 0 || vs.InFlight != 0 {
			t.Errorf("version %s: %+v; want no panics, errors or calls in flight", vs.Digest, vs)
		}
	}
	if want := uint64(fresh.total.Load() + kept.total.Load()); calls < want {
		t.Fatalf("the host counted %d calls; the clients made %d", calls, want)
	}
	h.requireAlive()
}

// TestCanaryRoutingInHost: with a canary at 30%, each request key is answered by the version
// RouteBucket assigns it, every time.
func TestCanaryRoutingInHost(t *testing.T) {
	h := startHost(t)
	ctx := h.ctx(t)
	if _, err := h.client.Load(ctx, control.LoadRequest{Path: h.pluginPath("v2"), Digest: h.digest("v2")}); err != nil {
		t.Fatal(err)
	}
	res, err := h.client.Route(ctx, control.RouteRequest{Canary: h.digest("v2"), Percent: 30})
	if err != nil {
		t.Fatal(err)
	}
	if res.Canary != h.digest("v2") || res.CanaryPercent != 30 || res.To != h.digest("v1") {
		t.Fatalf("route result %+v", res)
	}
	canary := 0
	for i := 0; i < 200; i++ {
		key := fmt.Sprintf("tenant-%d", i)
		want := "v1"
		if host.RouteBucket(key) < 30 {
			want = "v2"
			canary++
		}
		for j := 0; j < 2; j++ {
			if a := h.greet(t, "n", key); known(a, "n") != nil || a.Version != want {
				t.Fatalf("key %s (bucket %d), request %d: %+v; want %s", key, host.RouteBucket(key), j, a, want)
			}
		}
	}
	if canary == 0 || canary == 200 {
		t.Fatalf("%d of 200 keys routed to the canary; the test proved nothing", canary)
	}
	st := h.status(t)
	if st.Canary != h.digest("v2") || st.CanaryPercent != 30 || st.Version(h.digest("v2")).State != control.StateCanary {
		t.Fatalf("status %+v", st)
	}
	if _, err := h.client.Route(ctx, control.RouteRequest{}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if a := h.greet(t, "n", fmt.Sprintf("tenant-%d", i)); a.Version != "v1" {
			t.Fatalf("after ending the canary, %+v; want v1", a)
		}
	}
}
