package host

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/splice-dev/splice/host/preflight"
)

// A plugin's panics are logged at V(0) — the value and the first stack frames, the plugin's
// own first — at most panicLogBurst per version, then one per panicLogInterval carrying the
// count suppressed since the last record. A version panicking on every request thus writes a
// handful of records, not one per request, and none is lost from the counts (Status panics).
const (
	panicLogBurst    = 5
	panicLogInterval = 10 * time.Second
	// panicLogFrames bounds the frames logged per panic; PanicError.Stack has them all.
	panicLogFrames = 8
)

// panicLimiter decides which of a version's panics are logged.
type panicLimiter struct {
	mu         sync.Mutex
	logged     int
	last       time.Time
	suppressed uint64
}

// allow reports whether a panic at now is logged, and how many were suppressed before it.
func (l *panicLimiter) allow(now time.Time) (ok bool, suppressed uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.logged < panicLogBurst || now.Sub(l.last) >= panicLogInterval {
		l.logged++
		l.last = now
		suppressed, l.suppressed = l.suppressed, 0
		return true, suppressed
	}
	l.suppressed++
	return false, 0
}

// logPanic logs a recovered panic of v, rate-limited. It runs in the deferred function that
// recovered, so the panicking frames are still on the stack.
func (s *Slot[T]) logPanic(v *Version, r any, n uint64) {
	ok, suppressed := v.panicLog.allow(s.now())
	if !ok {
		return
	}
	kv := []any{"digest", v.digest, "pluginPath", v.pluginPath, "panic", preflight.OneLine(fmt.Sprint(r)), "panicType", fmt.Sprintf("%T", r),
		"stack", panicFrames(v.pluginPath, panicLogFrames), "panics", n}
	if suppressed > 0 {
		kv = append(kv, "suppressed", suppressed)
	}
	s.log.Info("plugin call panicked", kv...)
}

// panicFrames returns up to max frames of the panicking goroutine below the panic, as
// "function (file:line)": those of the plugin (functions under pluginPath) first, then the
// rest, each group innermost first.
func panicFrames(pluginPath string, max int) []string {
	pcs := make([]uintptr, 64)
	pcs = pcs[:runtime.Callers(1, pcs)]
	frames := runtime.CallersFrames(pcs)
	var mine, other []string
	belowPanic := false
	for {
		f, more := frames.Next()
		switch {
		case f.Function == "runtime.gopanic":
			belowPanic = true
			mine, other = nil, nil // frames seen so far are the recovery's own
		case belowPanic && strings.HasPrefix(f.Function, "runtime.") && len(mine)+len(other) == 0:
			// runtime.panicdivide, sigpanic...: how the panic was raised, not where.
		case pluginPath != "" && strings.HasPrefix(f.Function, pluginPath+"."):
			mine = append(mine, preflight.OneLine(fmt.Sprintf("%s (%s:%d)", f.Function, f.File, f.Line)))
		default:
			other = append(other, preflight.OneLine(fmt.Sprintf("%s (%s:%d)", f.Function, f.File, f.Line)))
		}
		if !more {
			break
		}
	}
	out := append(mine, other...)
	return out[:min(len(out), max)]
}
