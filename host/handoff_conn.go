package host

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
)

// Connection hand-over: how a re-exec loses no request on a keep-alive connection.
//
// Closing an idle HTTP/1.1 connection races with the client writing its next request on it, and
// a client may not retry what is not replayable (Go's client never retries a POST): measured
// before this, 72 of 74,512 keep-alive POSTs lost over 50 re-execs. So a re-exec closes no
// idle connection: it parks it. Every connection a Handoff serves is a handConn, which follows
// what net/http does with it and knows at each moment whether every byte of the stream the
// server has not answered yet is in its own record (the connection is "clean"). When the
// hand-off asks, a clean connection that is not handling a request is parked at the server's
// next read, or its blocked read is interrupted with a deadline in the past: the read returns a
// timeout and delivers nothing, net/http closes a connection whose request read times out
// without answering (conn.serve: isCommonNetReadError), and the handConn, holding a duplicate
// of the socket, passes it to the next image with the bytes it recorded. There the listener's
// Accept returns it first and its first reads replay those bytes; the same http.Server serves
// it, and the client sees no close — what it sends meanwhile waits in the kernel's socket.
//
// When the record is exact. net/http reads through a bufio.Reader, which may hold bytes the
// handConn delivered but the server has not parsed. The record starts only where that buffer is
// empty:
//
//   - on a new connection (nothing read yet);
//   - after a response (StateIdle), when the server's first read is the keep-alive Peek into an
//     empty buffer: the read asks for the buffer's whole size (learned from the connection's
//     first read, which is into an empty buffer) and comes after exactly one SetReadDeadline
//     (the one conn.serve sets before its Peek). Anything else — a pipelined request already
//     buffered, a byte caught by net/http's background read — leaves the connection dirty until
//     its next response: it is not parked, and its next response says "Connection: close".
//
// From there every byte read is recorded (at most maxReplayPerConn) until the server starts
// handling a request (StateActive); while it handles one the connection is never parked, and
// once answered it becomes idle and is parked then (a request in flight at the hand-off finishes
// with keep-alive, and its connection is handed over). Two details keep the server's state
// knowable: after a keep-alive Peek the handConn delivers 4 bytes only, so that readRequest
// itself reads the rest and net/http reports StateActive (it does not when the Peek already got
// the whole request); and the server is interrupted only where a read error makes it close
// without answering — with nothing of a request, inside the Peek, or at a line's end (mid-line,
// bufio hands the partial line to the parser as if whole and net/http answers 400), so while a
// hand-off asks, bytes are delivered up to a line's end. If the server writes on a parked
// connection after all, the park is undone (the duplicate closed) and the server's own close
// stands. The rules depend on net/http's serve loop; handoff_conn_test.go fails if a Go release
// changes what they rely on (pipelined requests, a read cut at a header line, the Peek).
//
// A connection handed over idle is served as idle in the next image: until its next request's
// first byte, its read deadline is the server's idle timeout, not the header timeout net/http
// starts at once on a new connection (which would close it under a client about to use it).
//
// What drains as before — its next response says "Connection: close", and the hand-off waits
// for it to close, abandoning the re-exec at DrainTimeout: dirty connections (HTTP/1.1
// pipelining: a client that pipelines gets answers up to a close, and RFC 9112 §9.3.2 lets it
// retry the unanswered requests; Go's client and curl do not pipeline), a request arriving
// past maxReplayPerConn (handed over once answered), connections past MaxHandedConns or
// maxReplayTotal, and a client stalled mid-request. An idle connection past MaxHandedConns that
// was answered before is closed, as every hand-off did before (the client's race with that
// close is the old one). A server that may speak unencrypted HTTP/2 (http.Server.Protocols)
// drains entirely as before, keep-alives off: an HTTP/2 connection's streams cannot be replayed.
// HTTP/2 is not tested (the example serves HTTP/1.1). Hijacked connections are the
// application's: not waited for, and not inherited by the next image.
//
// TLS: a TLS connection's state (keys, sequence numbers) lives in this process and cannot be
// handed over. Serve serves plain HTTP on the Handoff's listeners; terminate TLS in front of the
// host (a sidecar or the ingress). A TLS listener would have to keep the drain (keep-alives
// off, wait), as servers that cannot park do.
//
// Why this design: the alternatives lose requests or cannot be exact. Closing idle connections
// (the drain before) races the client; keeping the old image serving them is impossible after
// an exec; parsing HTTP framing in the wrapper to know request boundaries would duplicate
// net/http's parser and any disagreement would corrupt a stream. Following net/http's own
// calls (ConnState, reads, deadlines) and refusing to park whenever they do not prove the
// record exact keeps every mistake on the safe side: a drain, never a wrong replay.
const (
	defaultMaxHandedConns = 1024
	// maxHandedConnsLimit bounds MaxHandedConns: the hand-off document travels in one
	// environment variable, which Linux caps at 128 KiB (MAX_ARG_STRLEN).
	maxHandedConnsLimit = 2048
	maxReplayPerConn    = 4 << 10
	maxReplayTotal      = 32 << 10
	// peekSize is what net/http Peeks on an idle connection before it reads a request.
	peekSize = 4
)

// errParked is what a parked connection's reads return: a timeout, on which net/http closes an
// idle connection without answering.
var errParked error = parkedError{}

type parkedError struct{}

func (parkedError) Error() string   { return "connection handed to the next image" }
func (parkedError) Timeout() bool   { return true }
func (parkedError) Temporary() bool { return true }

var errNoDescriptor = errors.New("the connection has no descriptor to hand over")

// aLongTimeAgo is a deadline in the past: it interrupts a blocked read at once.
var aLongTimeAgo = time.Unix(1, 0)

// A parkedConn is a connection taken from the server for the next image: a duplicate of its
// socket (close-on-exec until the exec) and the bytes to replay before reading the socket.
type parkedConn struct {
	hl     *handedListener
	fd     int
	replay []byte
	idle   bool // parked between requests, with nothing of the next one
}

// open makes the parked socket a net.Conn again (in the next image, or in this one when the
// hand-off was abandoned). It consumes pc.fd.
func (pc *parkedConn) open() (net.Conn, error) {
	f := os.NewFile(uintptr(pc.fd), "splice-handed-conn")
	defer f.Close() // FileConn holds its own duplicate
	return net.FileConn(f)
}

// A parkRun is one hand-off attempt's parked connections, within its bounds.
type parkRun struct {
	mu         sync.Mutex
	maxConns   int
	bytes      int
	conns      []*parkedConn
	closedIdle int
	taken      bool // the abandoned attempt gave its connections back to the listeners
}

func (r *parkRun) reserve(bytes int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.taken || len(r.conns) >= r.maxConns || r.bytes+bytes > maxReplayTotal {
		return false
	}
	r.bytes += bytes
	r.conns = append(r.conns, nil) // the slot; add fills it
	return true
}

func (r *parkRun) add(pc *parkedConn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, x := range r.conns {
		if x == nil {
			r.conns[i] = pc
			return
		}
	}
}

// release gives back a reservation that was not used, or a parked connection that was undone.
// It returns false when the connection is no longer the run's (given back to its listener).
func (r *parkRun) release(pc *parkedConn, bytes int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := slices.Index(r.conns, pc)
	if r.taken || i < 0 {
		return false
	}
	r.conns = slices.Delete(r.conns, i, i+1)
	r.bytes -= bytes
	return true
}

func (r *parkRun) noteClosedIdle() {
	r.mu.Lock()
	r.closedIdle++
	r.mu.Unlock()
}

// parked returns the parked connections, the replay bytes they hold and the idle connections
// closed over the bound.
func (r *parkRun) parked() ([]*parkedConn, int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.DeleteFunc(slices.Clone(r.conns), func(pc *parkedConn) bool { return pc == nil }), r.bytes, r.closedIdle
}

// take ends the run and returns its parked connections, to be given back to their listeners.
func (r *parkRun) take() []*parkedConn {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.taken = true
	return slices.DeleteFunc(r.conns, func(pc *parkedConn) bool { return pc == nil })
}

// A connRegistry knows every connection the Handoff's servers hold, and the hand-off attempt
// running, if any. Lock order: connRegistry.mu, then handConn.mu, then parkRun.mu.
type connRegistry struct {
	log  logr.Logger
	mu   sync.Mutex
	live map[*handConn]struct{}
	run  *parkRun
}

// add wraps a connection the listener accepted, or one handed over (pc: with the bytes to
// replay). A connection handed over idle stays idle: until its next request's first byte, the
// server's read deadline is its idle timeout (idleTimeout, 0 for none) — what net/http applies
// to a keep-alive connection — and not the header timeout it sets on a new one, which would
// close the idle connection under a client about to use it.
func (g *connRegistry) add(nc net.Conn, hl *handedListener, pc *parkedConn, idleTimeout time.Duration) *handConn {
	c := &handConn{Conn: nc, reg: g, hl: hl, clean: true}
	_, c.noFD = nc.(syscall.Conn)
	c.noFD = !c.noFD
	if pc != nil && len(pc.replay) > 0 {
		c.pending = slices.Clone(pc.replay)
		c.since = slices.Clone(pc.replay)
	}
	if pc != nil && pc.idle {
		c.served, c.holdIdle, c.idleTimeout = true, true, idleTimeout
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.live[c] = struct{}{}
	c.run = g.run
	return c
}

func (g *connRegistry) remove(c *handConn) {
	g.mu.Lock()
	delete(g.live, c)
	g.mu.Unlock()
}

// startRun asks every connection, and every one accepted from now on, to park.
func (g *connRegistry) startRun(run *parkRun) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.run = run
	for c := range g.live {
		c.requestPark(run)
	}
}

// endRun withdraws the request; connections parked so far are the caller's.
func (g *connRegistry) endRun() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.run = nil
	for c := range g.live {
		c.cancelPark()
	}
}

// handConn is a connection served through the Handoff. See the comment at the top of the file.
type handConn struct {
	net.Conn
	reg *connRegistry
	hl  *handedListener

	mu          sync.Mutex
	noFD        bool      // no descriptor to hand over
	pending     []byte    // read from the socket (or handed over) and not yet delivered
	since       []byte    // every byte of the stream from the clean point on, while ≤ maxReplayPerConn
	overflow    bool      // since outgrew maxReplayPerConn
	firstLen    int       // len(p) of the server's first read: its read buffer's size
	clean       bool      // since holds all the server has read and not answered
	idleWait    bool      // answered (StateIdle); the server's next read decides clean or dirty
	deadlines   int       // SetReadDeadline calls since StateIdle
	peekLeft    int       // after a keep-alive Peek: bytes still deliverable before readRequest
	peekPhase   bool      // the clean point was a keep-alive Peek
	delivered   int       // bytes the server got since the clean point
	lastByte    byte      // the last of them
	busy        bool      // handling a request (StateActive)
	served      bool      // answered at least one request
	gone        bool      // closed or hijacked
	srvDeadline time.Time // the read deadline the server asked for
	inRead      bool      // blocked reading the socket
	interrupted bool      // the hand-off set a past deadline to interrupt that read
	run         *parkRun  // the hand-off asking this connection to park
	parked      *parkedConn
	parkedIn    *parkRun // the run holding parked
	closeNext   bool     // could not be parked: its next response carries "Connection: close"
	// Handed over idle (see connRegistry.add): the read deadline is the idle timeout until the
	// first byte; then the server's, moved to start at that byte.
	holdIdle    bool
	idleTimeout time.Duration
	heldFor     time.Duration // the server's read deadline, from when it set it
}

func (c *handConn) parkable() bool {
	return c.run != nil && c.parked == nil && c.clean && !c.idleWait && !c.busy && !c.overflow && !c.gone && !c.noFD && c.atBoundary()
}

// atBoundary says whether the server may be given a read error now without answering: it has
// nothing of a request, or is still in the keep-alive Peek (which closes on an error), or
// stopped at a line's end. Mid-line, bufio would hand the partial line to the parser as if
// whole, and net/http would answer 400.
func (c *handConn) atBoundary() bool {
	return c.delivered == 0 || (c.peekPhase && c.delivered < peekSize) || c.lastByte == '\n'
}

// requestPark asks the connection to park; a read blocked on a parkable connection is
// interrupted so that it parks now.
func (c *handConn) requestPark(run *parkRun) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.run = run
	if c.inRead && c.parkable() && !c.interrupted {
		c.interrupted = true
		c.Conn.SetReadDeadline(aLongTimeAgo)
	}
}

// cancelPark withdraws the request (the attempt was abandoned). A read it interrupted gets the
// server's deadline back and goes on.
func (c *handConn) cancelPark() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.run, c.closeNext = nil, false
	if c.interrupted && !c.inRead {
		c.interrupted = false
		c.Conn.SetReadDeadline(c.srvDeadline)
	}
}

// tryPark parks the connection with what it recorded plus extra, just read and not delivered.
// It returns the error the server's read gets, or nil when the connection was not parked (then
// extra must be delivered).
func (c *handConn) tryPark(extra []byte) error {
	n := len(c.since) + len(extra)
	if n > maxReplayPerConn {
		c.overflow = true
		return nil
	}
	if !c.run.reserve(n) {
		c.closeNext = true
		if n == 0 && c.served && c.pending == nil {
			// Idle past the bound: closed, as every hand-off did before.
			c.run.noteClosedIdle()
			return io.EOF
		}
		return nil
	}
	fd, err := dupConn(c.Conn)
	if err != nil {
		c.reg.log.Error(err, "a connection could not be kept for the next image; it drains instead", "remote", c.RemoteAddr().String())
		c.run.release(nil, n)
		c.noFD, c.closeNext = true, true
		return nil
	}
	c.since = append(c.since, extra...)
	c.parked, c.parkedIn = &parkedConn{hl: c.hl, fd: fd, replay: slices.Clone(c.since), idle: n == 0 && c.served}, c.run
	c.run.add(c.parked)
	return errParked
}

// unpark undoes a park: the server answered on the connection after all. (Not when the
// abandoned attempt already gave the connection back: then it is accepted again.)
func (c *handConn) unpark() {
	pc := c.parked
	if !c.parkedIn.release(pc, len(pc.replay)) {
		return
	}
	c.parked = nil
	syscall.Close(pc.fd)
	c.reg.log.Info("a parked connection was answered; it is closed as before instead of handed over", "remote", c.RemoteAddr().String())
}

// state follows net/http's view of the connection (http.Server.ConnState).
func (c *handConn) state(st http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch st {
	case http.StateActive:
		c.busy, c.peekLeft = true, 0
	case http.StateIdle:
		c.busy, c.served, c.clean, c.idleWait, c.deadlines, c.peekLeft = false, true, false, true, 0, 0
		c.since = append(c.since[:0], c.pending...)
		c.overflow = len(c.since) > maxReplayPerConn
	case http.StateHijacked, http.StateClosed:
		c.gone = true
	}
}

// dispatch runs when the handler is called: it says whether the response must close the
// connection (a hand-off runs and this connection could not be parked before the request).
func (c *handConn) dispatch() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	dirty := !c.clean || c.idleWait
	c.busy = true
	return c.run != nil && (dirty || c.closeNext || c.noFD)
}

// beforeRead is the bookkeeping of a server read of n bytes, before anything is delivered.
func (c *handConn) beforeRead(n int) {
	if c.firstLen == 0 {
		c.firstLen = n
	}
	if !c.idleWait {
		return
	}
	c.idleWait = false
	// The keep-alive Peek into an empty buffer, and nothing else, starts a clean record.
	c.clean = n == c.firstLen && c.deadlines == 1
	c.peekPhase, c.delivered, c.lastByte = c.clean, 0, 0
	if c.clean {
		c.peekLeft = peekSize
	}
}

func (c *handConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if c.parked != nil {
		c.mu.Unlock()
		return 0, errParked
	}
	if len(p) == 0 {
		c.mu.Unlock()
		return 0, nil
	}
	c.beforeRead(len(p))
	if c.parkable() {
		if err := c.tryPark(nil); err != nil {
			c.mu.Unlock()
			return 0, err
		}
	}
	if len(c.pending) > 0 {
		n := copy(p, c.pending[:c.deliverable(c.pending[:min(len(p), len(c.pending))])])
		c.pending = c.pending[n:]
		if len(c.pending) == 0 {
			c.pending = nil
		}
		c.mu.Unlock()
		return n, nil
	}
	c.inRead = true
	c.mu.Unlock()
	return c.readSocket(p)
}

// deliverable is how much of src the server may have now: at most what completes the
// keep-alive Peek, so that readRequest reads the rest and net/http reports StateActive; and,
// while a hand-off asks for the connection, up to a line's end, where it can be parked.
func (c *handConn) deliverable(src []byte) int {
	n := len(src)
	if c.peekLeft > 0 {
		n = min(n, c.peekLeft)
		c.peekLeft -= n
	} else if c.run != nil && c.clean && !c.busy {
		if i := bytes.IndexByte(src, '\n'); i >= 0 {
			n = i + 1
		}
	}
	c.noteDelivered(src[:n])
	return n
}

func (c *handConn) noteDelivered(b []byte) {
	if len(b) == 0 {
		return
	}
	c.delivered += len(b)
	c.lastByte = b[len(b)-1]
	if c.holdIdle {
		// The next request began: the server's deadline runs from now.
		c.holdIdle, c.srvDeadline = false, time.Time{}
		if c.heldFor > 0 {
			c.srvDeadline = time.Now().Add(c.heldFor)
		}
		if c.parked == nil && !c.interrupted {
			c.Conn.SetReadDeadline(c.srvDeadline)
		}
	}
}

// readSocket reads from the socket (c.inRead set) and decides, when a hand-off asks, whether
// what arrived is delivered or parked with the connection.
func (c *handConn) readSocket(p []byte) (int, error) {
	for {
		n, err := c.Conn.Read(p)
		c.mu.Lock()
		c.inRead = false
		ours := c.interrupted && err != nil && isTimeout(err)
		if c.parkable() && (err == nil || ours) {
			if perr := c.tryPark(p[:n]); perr != nil {
				c.mu.Unlock()
				return 0, perr
			}
		}
		if c.interrupted {
			c.interrupted = false
			c.Conn.SetReadDeadline(c.srvDeadline)
		}
		if ours {
			err = nil
			if n == 0 {
				// Interrupted for a park that did not happen: read on.
				c.inRead = true
				c.mu.Unlock()
				continue
			}
		}
		n = c.deliver(p, n, err)
		c.mu.Unlock()
		return n, err
	}
}

// deliver records the n bytes read into p and returns how many the server gets now; the rest
// waits in c.pending.
func (c *handConn) deliver(p []byte, n int, err error) int {
	if c.clean && !c.busy && !c.overflow && n > 0 {
		if len(c.since)+n > maxReplayPerConn {
			c.overflow = true
		} else {
			c.since = append(c.since, p[:n]...)
		}
	}
	if err != nil {
		c.noteDelivered(p[:n])
		return n
	}
	m := c.deliverable(p[:n])
	if m < n {
		c.pending = append(c.pending, p[m:n]...)
	}
	return m
}

func (c *handConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.srvDeadline = t
	if c.idleWait {
		c.deadlines++
	}
	if c.holdIdle {
		c.heldFor, c.srvDeadline = 0, time.Time{}
		if !t.IsZero() {
			c.heldFor = time.Until(t)
		}
		if c.idleTimeout > 0 {
			c.srvDeadline = time.Now().Add(c.idleTimeout)
		}
	}
	if c.parked != nil || c.interrupted {
		return nil // ours stands until the read it interrupts returns
	}
	return c.Conn.SetReadDeadline(c.srvDeadline)
}

func (c *handConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.SetReadDeadline(t)
}

// noteWrite: the server writes. Outside a request that is an error answer before a close: the
// record is no longer what the server has not answered.
func (c *handConn) noteWrite() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.busy {
		c.clean = false
	}
	if c.parked != nil {
		c.unpark()
	}
}

func (c *handConn) Write(p []byte) (int, error) {
	c.noteWrite()
	return c.Conn.Write(p)
}

// ReadFrom keeps net/http's sendfile path.
func (c *handConn) ReadFrom(r io.Reader) (int64, error) {
	c.noteWrite()
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// CloseWrite keeps net/http's lingering close (closeWriteAndWait).
func (c *handConn) CloseWrite() error {
	c.noteWrite()
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Close closes this process's descriptor; a parked connection's socket lives on in its
// duplicate.
func (c *handConn) Close() error {
	c.reg.remove(c)
	c.mu.Lock()
	c.gone = true
	c.mu.Unlock()
	return c.Conn.Close()
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// dupConn duplicates a connection's descriptor (close-on-exec) without going through File(),
// which would switch the socket to blocking mode.
func dupConn(c net.Conn) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1, errNoDescriptor
	}
	return dupSyscallConn(sc)
}

// dupSyscallConn duplicates the descriptor behind sc, close-on-exec, leaving sc as it is.
func dupSyscallConn(sc syscall.Conn) (int, error) {
	raw, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var dupErr error
	if err := raw.Control(func(s uintptr) { fd, dupErr = dupCloexec(int(s)) }); err != nil {
		return -1, err
	}
	return fd, dupErr
}

// handListener is the listener a Handoff's server accepts from: connections handed over first
// (by the previous image, or given back by an abandoned hand-off), then new ones, all wrapped.
type handListener struct {
	net.Listener
	h           *Handoff
	hl          *handedListener
	idleTimeout time.Duration // the server's, as net/http derives it
}

func (l *handListener) Accept() (net.Conn, error) {
	for {
		if pc := l.h.popPending(l.hl); pc != nil {
			nc, err := pc.open()
			if err != nil {
				l.h.log.Error(err, "a connection handed over could not be adopted", "listener", l.hl.name)
				continue
			}
			return l.h.reg.add(nc, l.hl, pc, l.idleTimeout), nil
		}
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		return l.h.reg.add(nc, l.hl, nil, 0), nil
	}
}

// popPending takes the next connection waiting to be accepted on hl.
func (h *Handoff) popPending(hl *handedListener) *parkedConn {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(hl.pending) == 0 {
		return nil
	}
	pc := hl.pending[0]
	hl.pending = hl.pending[1:]
	return pc
}

type handConnKey struct{}

// hookServer makes srv report its connections to the Handoff: ConnState counts them (and, for
// a server whose connections can be handed over, follows their state), and the handler asks
// for "Connection: close" on a connection that could not be parked during a hand-off. The
// application's ConnState, ConnContext and Handler are chained.
func (h *Handoff) hookServer(srv *http.Server, parks bool) {
	prevState := srv.ConnState
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			h.conns.add(1)
		case http.StateHijacked, http.StateClosed:
			h.conns.add(-1)
		}
		if hc, ok := c.(*handConn); ok {
			if st == http.StateHijacked {
				hc.reg.remove(hc) // the application's from now on
			}
			hc.state(st)
		}
		if prevState != nil {
			prevState(c, st)
		}
	}
	if !parks {
		return
	}
	prevCtx := srv.ConnContext
	srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if prevCtx != nil {
			ctx = prevCtx(ctx, c)
		}
		return context.WithValue(ctx, handConnKey{}, c)
	}
	next := srv.Handler
	if next == nil {
		next = http.DefaultServeMux
	}
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, ok := r.Context().Value(handConnKey{}).(*handConn); ok && c.dispatch() {
			w.Header().Set("Connection", "close")
		}
		next.ServeHTTP(w, r)
	})
}

// parksConns says whether srv's connections can be handed over: HTTP/1 only (an HTTP/2
// connection's streams cannot be replayed).
func parksConns(srv *http.Server, maxConns int) bool {
	return maxConns > 0 && (srv.Protocols == nil || !srv.Protocols.UnencryptedHTTP2())
}
