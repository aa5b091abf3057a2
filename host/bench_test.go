package host

import (
	"context"
	"fmt"
	"testing"
)

// The benchmarks compare a call through the slot with a direct call of the same interface
// method: the difference is the slot's hot-path cost (one atomic load of the routing table,
// the in-flight and call accounting, the deferred recover, the closure). The plugin's code is
// not part of it: a method of a plugin-provided value is an ordinary interface call.
//
// Every mode has a serial and a parallel variant; run them with -cpu 1,2,4 (make bench-calls
// prints them as one table) so that what the callers share — a cache line bounced between cores
// — shows as the parallel column growing with the core count while the direct call's does not.

type fixedGreeter struct{}

func (fixedGreeter) Greet(name string) (string, error) { return name, nil }

var sink string

// direct is a package variable so the compiler cannot devirtualize the baseline call.
var direct greeterT = fixedGreeter{}

// benchKeys spread the canary benchmark over both versions in the proportion of the route
// (RouteBucket of these keys is close to uniform); the other modes use them too so that every
// mode pays for the same key handling.
var benchKeys = func() []string {
	ks := make([]string, 1024)
	for i := range ks {
		ks[i] = fmt.Sprintf("user-%04d", i)
	}
	return ks
}()

func benchSlot(b *testing.B, canaryPercent int) *Slot[greeterT] {
	s := newTestSlot(b, Options{})
	s.install(digest('a'), "1.0.0", fixedGreeter{})
	s.install(digest('b'), "1.0.0", fixedGreeter{})
	ctx := context.Background()
	if _, err := s.Swap(ctx, digest('a'), SwapOptions{}); err != nil {
		b.Fatal(err)
	}
	if canaryPercent > 0 {
		if _, err := s.Route(ctx, digest('b'), canaryPercent, SwapOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

// benchModes runs call(key) serially and from GOMAXPROCS goroutines. call returns what the
// plugin answered so the parallel variant can keep it in a local: a shared sink written from
// every core would add the very cache-line traffic the benchmarks are meant to isolate.
func benchModes(b *testing.B, call func(key string) string) {
	b.Run("serial", func(b *testing.B) {
		i := 0
		for b.Loop() {
			sink = call(benchKeys[i&(len(benchKeys)-1)])
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			var out string
			i := 0
			for pb.Next() {
				out = call(benchKeys[i&(len(benchKeys)-1)])
				i++
			}
			_ = out
		})
	})
}

func BenchmarkDirect(b *testing.B) {
	g := direct
	benchModes(b, func(key string) string {
		out, _ := g.Greet(key)
		return out
	})
}

func BenchmarkSlotCall(b *testing.B) {
	s := benchSlot(b, 0)
	benchModes(b, func(key string) string {
		var out string
		_ = s.Call(key, func(g greeterT) error {
			var err error
			out, err = g.Greet(key)
			return err
		})
		return out
	})
}

func BenchmarkSlotCallVersion(b *testing.B) {
	s := benchSlot(b, 0)
	benchModes(b, func(key string) string {
		var out string
		_ = s.CallVersion(key, func(g greeterT, _ *Version) error {
			var err error
			out, err = g.Greet(key)
			return err
		})
		return out
	})
}

// The canary adds the FNV-1a hash of the key, and 30% of the calls land on the other version.
func BenchmarkSlotRoute30(b *testing.B) {
	s := benchSlot(b, 30)
	benchModes(b, func(key string) string {
		var out string
		_ = s.Call(key, func(g greeterT) error {
			var err error
			out, err = g.Greet(key)
			return err
		})
		return out
	})
}
