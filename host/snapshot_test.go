package host

import (
	"math"
	"runtime"
	"runtime/metrics"
	"testing"
)

func TestTakeSnapshot(t *testing.T) {
	runtime.GC()
	s := TakeSnapshot()
	if s.GCCycles == 0 || s.HeapGoalBytes == 0 || s.Goroutines == 0 || s.ScanGlobalsBytes == 0 {
		t.Fatalf("snapshot after a forced GC has zero fields: %+v", s)
	}
	if s.GCPauses == 0 || s.GCPauseP99Seconds <= 0 {
		t.Fatalf("snapshot after a forced GC reports no pause: %+v", s)
	}
	if runtime.GOOS == "linux" && s.RSSBytes == 0 {
		t.Fatal("RSS is 0 on Linux; /proc/self/statm not read")
	}
	runtime.GC()
	if after := TakeSnapshot(); !gcDuring(s, after) {
		t.Fatalf("a GC between two snapshots was not seen: %d -> %d cycles", s.GCCycles, after.GCCycles)
	}
}

func TestHistogramCountP99(t *testing.T) {
	inf := math.Inf(1)
	tests := []struct {
		name      string
		counts    []uint64
		buckets   []float64
		wantCount uint64
		wantP99   float64
	}{
		{"empty", []uint64{0, 0}, []float64{0, 1, 2}, 0, 0},
		{"all in first", []uint64{10, 0}, []float64{0, 1, 2}, 10, 1},
		{"tail decides", []uint64{98, 1, 1}, []float64{0, 1, 2, 3}, 100, 2},
		{"p99 in last bucket", []uint64{1, 99}, []float64{0, 1, 2}, 100, 2},
		{"unbounded top bucket uses its lower bound", []uint64{0, 5}, []float64{0, 1, inf}, 5, 1},
	}
	for _, tt := range tests {
		c, p := histogramCountP99(&metrics.Float64Histogram{Counts: tt.counts, Buckets: tt.buckets})
		if c != tt.wantCount || p != tt.wantP99 {
			t.Errorf("%s: got (%d, %v); want (%d, %v)", tt.name, c, p, tt.wantCount, tt.wantP99)
		}
	}
}

func BenchmarkTakeSnapshot(b *testing.B) {
	for b.Loop() {
		TakeSnapshot()
	}
}
