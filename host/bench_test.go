package host

import (
	"context"
	"testing"
)

// The benchmarks compare a call through the slot with a direct call of the same interface
// method: the difference is the slot's hot-path cost (one atomic load of the routing table,
// one atomic add in and out, the deferred recover, the counters). The plugin's code is not
// part of it: a method of a plugin-provided value is an ordinary interface call.

type fixedGreeter struct{}

func (fixedGreeter) Greet(name string) (string, error) { return name, nil }

var sink string

// direct is a package variable so the compiler cannot devirtualize the baseline call.
var direct greeterT = fixedGreeter{}

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

func BenchmarkDirectCall(b *testing.B) {
	g := direct
	for b.Loop() {
		sink, _ = g.Greet("user-42")
	}
}

func BenchmarkSlotCall(b *testing.B) {
	s := benchSlot(b, 0)
	for b.Loop() {
		_ = s.Call("user-42", func(g greeterT) error {
			var err error
			sink, err = g.Greet("user-42")
			return err
		})
	}
}

func BenchmarkSlotCallVersion(b *testing.B) {
	s := benchSlot(b, 0)
	for b.Loop() {
		_ = s.CallVersion("user-42", func(g greeterT, _ *Version) error {
			var err error
			sink, err = g.Greet("user-42")
			return err
		})
	}
}

// The canary adds the FNV-1a hash of the key.
func BenchmarkSlotCallCanary(b *testing.B) {
	s := benchSlot(b, 30)
	for b.Loop() {
		_ = s.Call("user-42", func(g greeterT) error {
			var err error
			sink, err = g.Greet("user-42")
			return err
		})
	}
}

func BenchmarkDirectCallParallel(b *testing.B) {
	g := direct
	b.RunParallel(func(pb *testing.PB) {
		var out string
		for pb.Next() {
			out, _ = g.Greet("user-42")
		}
		_ = out
	})
}

// In parallel every caller adds to the same version's counters: this shows the cost of that
// shared cache line.
func BenchmarkSlotCallParallel(b *testing.B) {
	s := benchSlot(b, 0)
	b.RunParallel(func(pb *testing.PB) {
		var out string
		for pb.Next() {
			_ = s.Call("user-42", func(g greeterT) error {
				var err error
				out, err = g.Greet("user-42")
				return err
			})
		}
		_ = out
	})
}
