package host

import (
	"math"
	"os"
	"runtime/metrics"
	"strconv"
	"strings"

	"github.com/splice-dev/splice/host/control"
)

// Snapshot is a runtime/metrics reading; see control.Snapshot for the fields.
type Snapshot = control.Snapshot

var snapshotMetrics = []string{
	"/gc/cycles/total:gc-cycles",
	"/gc/heap/live:bytes",
	"/gc/heap/goal:bytes",
	"/gc/scan/globals:bytes",
	"/sched/goroutines:goroutines",
	"/sched/pauses/total/gc:seconds",
}

// TakeSnapshot reads the runtime figures a swap report carries. It costs a few microseconds
// (runtime/metrics does not stop the world) plus one read of /proc/self/statm.
func TakeSnapshot() Snapshot {
	samples := make([]metrics.Sample, len(snapshotMetrics))
	for i, name := range snapshotMetrics {
		samples[i].Name = name
	}
	metrics.Read(samples)
	var s Snapshot
	for _, sm := range samples {
		switch sm.Name {
		case "/gc/cycles/total:gc-cycles":
			s.GCCycles = uint64Of(sm.Value)
		case "/gc/heap/live:bytes":
			s.HeapLiveBytes = uint64Of(sm.Value)
		case "/gc/heap/goal:bytes":
			s.HeapGoalBytes = uint64Of(sm.Value)
		case "/gc/scan/globals:bytes":
			s.ScanGlobalsBytes = uint64Of(sm.Value)
		case "/sched/goroutines:goroutines":
			s.Goroutines = uint64Of(sm.Value)
		case "/sched/pauses/total/gc:seconds":
			if sm.Value.Kind() == metrics.KindFloat64Histogram {
				s.GCPauses, s.GCPauseP99Seconds = histogramCountP99(sm.Value.Float64Histogram())
			}
		}
	}
	s.RSSBytes = ReadRSS()
	return s
}

// uint64Of tolerates a metric this Go release does not have (KindBad) by reporting 0.
func uint64Of(v metrics.Value) uint64 {
	if v.Kind() == metrics.KindUint64 {
		return v.Uint64()
	}
	return 0
}

// histogramCountP99 returns the number of samples and the upper bound of the bucket holding
// the 99th percentile (the lower bound when the upper one is +Inf).
func histogramCountP99(h *metrics.Float64Histogram) (uint64, float64) {
	var total uint64
	for _, c := range h.Counts {
		total += c
	}
	if total == 0 {
		return 0, 0
	}
	rank := uint64(math.Ceil(0.99 * float64(total)))
	var cum uint64
	for i, c := range h.Counts {
		cum += c
		if cum >= rank {
			// Counts[i] covers [Buckets[i], Buckets[i+1]).
			if hi := h.Buckets[i+1]; !math.IsInf(hi, 1) {
				return total, hi
			}
			return total, h.Buckets[i]
		}
	}
	return total, h.Buckets[len(h.Buckets)-1]
}

// ReadRSS returns the process's resident set size from /proc/self/statm, or 0 where that file
// does not exist.
func ReadRSS() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(b))
	if len(fields) < 2 {
		return 0
	}
	pages, err := strconv.ParseUint(fields[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * uint64(os.Getpagesize())
}

// gcDuring reports whether a GC cycle completed between two snapshots.
func gcDuring(before, after Snapshot) bool { return after.GCCycles > before.GCCycles }
