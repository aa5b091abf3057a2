package host

import (
	"math"
	"math/bits"
	"runtime"
	"sync/atomic"
	"unsafe"
)

// A version's call accounting is striped: every word a call writes lives in one stripe, alone
// on its cache lines, and concurrent callers mostly write different stripes. With one shared
// word every call on every core waits for that cache line to come back from the core that
// wrote it last (make bench-calls: CountersShared against CountersStriped, parallel). Readers —
// Status, WaitDrained, the drain signal — sum over the stripes; callers never read another
// stripe.
//
// A call costs two atomic adds on its stripe: in at entry, out at exit. Both are needed for an
// exact drain, and neither can be cheaper: every atomic write is a locked instruction on amd64
// (Store too), the costliest thing a call does. in also counts the call, rather than a third
// add on a calls word, so it must never count a caller that backs off from a retired version;
// see retiredBit.
//
// Panics are not striped: they are rare, and the rollback threshold needs the exact count at
// the moment of each panic, which one atomic add returns (Slot.panicked).

// retiredBit is set in every stripe's in while the version is not routable. Keeping it in the
// word the caller increments is what makes draining exact with one atomic add at entry: a
// caller that read a routing table just before a swap increments its stripe of the version it
// picked and, in the same instruction, learns whether that stripe was retired meanwhile — if so
// it backs off and reads the new table. So once every stripe is retired and its out has caught
// up with the calls it let in, no call can start on the version until it is routed again.
//
// A caller that backs off leaves its increment in place (undoing it would cost a third atomic
// add and make the call count dip): retire records in stripe.base how many calls the stripe
// had let in, increments above it are callers that backed off, and unretire drops them.
const retiredBit = uint64(1) << 63

// noBase is stripe.base while retire has set the bit but not yet recorded the count; no stripe
// can reach it (out never exceeds the calls let in).
const noBase = math.MaxUint64

// cacheLinePair is two cache lines: Intel's spatial prefetcher fetches lines in pairs, so a
// stripe padded to one line would still share a pair with its neighbour.
const cacheLinePair = 128

// maxStripes bounds a version's accounting memory (128 bytes a stripe) on very large machines.
const maxStripes = 1024

type stripe struct {
	in     atomic.Uint64 // retiredBit | calls let in (+ callers backed off since retire)
	out    atomic.Uint64 // calls returned
	errors atomic.Uint64
	base   atomic.Uint64 // calls let in when last retired; meaningful with retiredBit set
	_      [cacheLinePair - 4*8]byte
}

// counters are a version's striped in-flight, call and error counts. The stripes are one
// pointer-free slice whose size is a power of two of at least 128 bytes, which the allocator
// places on a boundary of its size: no stripe shares a line pair with anything else.
type counters struct {
	stripes []stripe
	shift   uint // 64 - log2(len(stripes)): pick keeps the top bits of its hash
}

// newCounters sizes the stripes for GOMAXPROCS at the version's creation. Four stripes per P
// because a stripe is picked by goroutine, not by P (see pick): with P goroutines running,
// about one in four shares its stripe with another. The stripes start retired, as the version.
func newCounters() counters {
	n := 1
	for n < 4*runtime.GOMAXPROCS(0) && n < maxStripes {
		n <<= 1
	}
	c := counters{stripes: make([]stripe, n), shift: uint(64 - bits.TrailingZeros(uint(n)))}
	for i := range c.stripes {
		c.stripes[i].in.Store(retiredBit)
	}
	return c
}

// pick chooses the calling goroutine's stripe from the address of a local variable: goroutine
// stacks are disjoint, so a goroutine keeps its stripe from call to call (its cache line stays
// in its core's cache) and goroutines running side by side mostly get different ones. Go
// offers no cheaper per-P or per-goroutine identity without reaching into the runtime:
// math/rand/v2 costs more and moves the caller to another stripe on every call, and a
// sync.Pool token costs a Get and a Put. The address is only hashed, never turned back into a
// pointer. A stack that grows moves the goroutine to another stripe, which is harmless: a call
// exits on the stripe it entered.
func (c *counters) pick() int {
	var anchor byte
	// Below stackMin the address says where in its stack the caller is, not which stack:
	// dropped, so that the stacks of goroutines started together (neighbours in memory) go
	// to different stripes under Fibonacci hashing. The mask tells the compiler the shift is
	// below 64 (there are at least 4 stripes).
	return int(((uint64(uintptr(unsafe.Pointer(&anchor))) / stackMin) * 0x9E3779B97F4A7C15) >> (c.shift & 63))
}

// stackMin is the runtime's smallest goroutine stack (runtime/stack.go), unchanged since Go 1.4.
const stackMin = 2048

// enter counts a call starting on stripe i. It returns false when the version was retired
// before the increment landed; the caller must then re-read the routing table, and not exit.
func (c *counters) enter(i int) bool {
	return c.stripes[i].in.Add(1)&retiredBit == 0
}

// exit counts a call leaving stripe i. It returns true when this exit drained the version: the
// stripe is retired and this was the last call it had let in (then the other stripes decide).
func (c *counters) exit(i int) bool {
	st := &c.stripes[i]
	o := st.out.Add(1)
	return st.in.Load()&retiredBit != 0 && st.base.Load() == o && c.drained()
}

func (c *counters) failed(i int) { c.stripes[i].errors.Add(1) }

// drained reports whether every stripe is retired with all the calls it let in returned. Once
// true it stays true until unretire: a retired stripe lets nothing in. So any exit or retire
// that sees it may signal, and of two exits finishing the last two stripes at once at least one
// sees the other's add (atomics are sequentially consistent).
func (c *counters) drained() bool {
	for i := range c.stripes {
		st := &c.stripes[i]
		if st.in.Load()&retiredBit == 0 || st.base.Load() != st.out.Load() {
			return false
		}
	}
	return true
}

// retire marks every stripe not routable and records the calls each let in. It runs after the
// table without the version is published, under the slot's mu; it returns whether nothing runs.
func (c *counters) retire() bool {
	for i := range c.stripes {
		st := &c.stripes[i]
		// An exit between the two stores sees noBase and leaves the drain check to the
		// c.drained() below.
		st.base.Store(noBase)
		st.base.Store(st.in.Add(retiredBit) &^ retiredBit)
	}
	return c.drained()
}

// unretire makes every stripe routable again and forgets the callers that backed off. It runs
// before the table naming the version is published, under the slot's mu; the CAS fails only
// when a stale caller backs off at that moment.
func (c *counters) unretire() {
	for i := range c.stripes {
		st := &c.stripes[i]
		base := st.base.Load()
		for {
			if w := st.in.Load(); st.in.CompareAndSwap(w, base) {
				break
			}
		}
	}
}

// let returns the calls stripe st let in, given its in word w.
func (st *stripe) let(w uint64) uint64 {
	if w&retiredBit != 0 {
		if b := st.base.Load(); b != noBase {
			return b
		}
	}
	return w &^ retiredBit
}

// inflight returns the calls running and whether every stripe is retired. out is read before
// in so that a stripe's difference never counts an exit without its entry.
func (c *counters) inflight() (n int64, retired bool) {
	retired = true
	for i := range c.stripes {
		st := &c.stripes[i]
		o := st.out.Load()
		w := st.in.Load()
		retired = retired && w&retiredBit != 0
		if let := st.let(w); let > o {
			n += int64(let - o)
		}
	}
	return n, retired
}

// totals returns the calls and errors counted. Read under the slot's mu (no retire or unretire
// half done), every stripe's share only grows, so successive totals never decrease.
func (c *counters) totals() (calls, errors uint64) {
	for i := range c.stripes {
		st := &c.stripes[i]
		calls += st.let(st.in.Load())
		errors += st.errors.Load()
	}
	return calls, errors
}
