package host

import (
	"fmt"
	"hash/fnv"
	"testing"
)

func TestRouteBucketIsStable(t *testing.T) {
	// Pinned: these values are part of the contract (agents and operators may compute them).
	tests := []struct {
		key  string
		want int
	}{
		{"", 61},
		{"a", 20},
		{"user-1", 0},
		{"user-2", 57},
		{"tenant/acme", 16},
		{"0123456789", 42},
		{"héllo", 0},
	}
	for _, tt := range tests {
		if got := RouteBucket(tt.key); got != tt.want {
			t.Errorf("RouteBucket(%q) = %d; want %d", tt.key, got, tt.want)
		}
	}
}

func TestRouteBucketIsFNV1aMod100(t *testing.T) {
	for i := 0; i < 10000; i++ {
		key := fmt.Sprintf("key-%d-%x", i, i*7919)
		h := fnv.New32a()
		h.Write([]byte(key))
		if want := int(h.Sum32() % 100); RouteBucket(key) != want {
			t.Fatalf("RouteBucket(%q) = %d; FNV-1a mod 100 is %d", key, RouteBucket(key), want)
		}
	}
}

func TestRouteBucketSpread(t *testing.T) {
	var counts [100]int
	const n = 100000
	for i := 0; i < n; i++ {
		counts[RouteBucket(fmt.Sprintf("request-%d", i))]++
	}
	for b, c := range counts {
		// 1000 expected per bucket; a bucket off by 30% means percentages would lie.
		if c < 700 || c > 1300 {
			t.Errorf("bucket %d got %d of %d keys; want about %d", b, c, n, n/100)
		}
	}
}
