package host

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-logr/logr"

	"github.com/splice-dev/splice/host/control"
)

// HandoffEnv is the environment variable that carries the hand-off from one image to the
// next: which inherited descriptor is which listener, and each slot's serving versions. The
// new image removes it from its environment as soon as NewHandoff reads it.
const HandoffEnv = "SPLICE_HANDOFF"

// HandoffOptions configure a Handoff.
type HandoffOptions struct {
	// Logger receives the hand-off's progress. Default: discard.
	Logger logr.Logger
	// DrainTimeout bounds the hand-off's wait for connections (requests in flight to be
	// answered, connections that cannot be handed over to close) before an exec. When it
	// expires the re-exec is abandoned and the old image serves on with every connection,
	// parked ones included (dropping connections is never the fallback). Default 30 seconds.
	DrainTimeout time.Duration
	// MaxHandedConns bounds the connections one re-exec hands to the next image (see
	// handoff_conn.go); the others drain as before. Default 1024, at most 2048 (the hand-off
	// travels in the environment); negative: none, every connection drains.
	MaxHandedConns int
}

// Handoff re-executes the host in place — same PID, so the container does not restart — and
// hands its listening sockets and its open HTTP/1 connections to the new image without failing
// a request, whatever the client does with its keep-alive connections:
//
//  1. every connection is asked to park: an idle one (or one whose next request is still
//     arriving) is taken from its server at once, with a duplicate of its socket and the bytes
//     of that request read so far; one handling a request is answered first, keep-alive and
//     all, and parked once idle (handoff_conn.go has how, and what cannot be parked: it
//     drains as before, its next response saying "Connection: close");
//  2. the servers' listeners are closed, but the kernel socket stays open through a
//     duplicate descriptor the Handoff has held since Listen: connections that arrive from
//     now on wait in the socket's backlog;
//  3. the accept loops are waited for (so every accepted connection is counted), then the
//     count of connections still served is waited down to zero (parked ones count as gone:
//     their server closed its side);
//  4. every registered slot is frozen and its serving versions recorded; the duplicates of
//     listeners and parked connections lose close-on-exec and the process execs
//     /proc/self/exe with the same arguments and HandoffEnv describing descriptors, the bytes
//     to replay and the slots' state;
//  5. the new image's NewHandoff adopts the descriptors, each slot's New loads only what it
//     must keep (the version to roll back to, then what served; see Slot.Reexec), and Serve accepts the parked connections first (replaying their bytes before
//     reading their sockets), then those that queued in the backlog meanwhile.
//
// No connection is closed under a client about to use it: a parked one stays open in the
// kernel throughout, and what its client sends meanwhile waits in the socket for the new image.
//
// If anything before the exec fails (drain timeout, exec error), the servers resume on the
// same sockets, parked connections are accepted again with their bytes, and the error is
// returned.
//
// Why not cloudflare/tableflip: its hand-off starts a child process (a new PID; when the
// host is PID 1 of its container, the old one exiting stops the container), and its inherited
// descriptors sit at fixed numbers (3, 4, 5...) that, arranged in place before an exec, would
// overwrite the Go runtime's own epoll and event descriptors while other threads still use
// them. Its registry cannot be built outside its Upgrader either. What is kept from it: names
// "network:address" for descriptors, F_DUPFD_CLOEXEC duplicates that never touch the
// listener's blocking mode, and unix sockets that survive their listener's Close.
type Handoff struct {
	log          logr.Logger
	drainTimeout time.Duration
	maxConns     int
	reg          connRegistry
	// execve replaces the process image; tests replace it.
	execve func(argv0 string, argv, envv []string) error

	running     atomic.Bool
	conns       connCounter
	servingOnce sync.Once

	mu        sync.Mutex
	payload   *handoffPayload // what the previous image passed; nil in a fresh process
	inherited map[string]int  // descriptors passed in and not yet claimed by Listen
	// inheritedConns are the connections passed in, by listener name, until Listen claims them.
	inheritedConns map[string][]*parkedConn
	listeners      []*handedListener
	byLn           map[net.Listener]*handedListener
	servers        []*served
	providers      map[string]stateProvider
	attempt        *attempt
	status         control.HandoffStatus
	closed         bool
}

// stateProvider is a slot as the Handoff sees it.
type stateProvider interface {
	freeze(target *ReexecTarget) ([]byte, error)
	thaw()
}

type handoffPayload struct {
	Version      int                        `json:"v"`
	Generation   int                        `json:"generation"`
	Reason       string                     `json:"reason"`
	ExecUnixNano int64                      `json:"execUnixNano"`
	DrainSeconds float64                    `json:"drainSeconds"`
	Listeners    []inheritedFD              `json:"listeners"`
	Conns        []inheritedConn            `json:"conns,omitempty"`
	State        map[string]json.RawMessage `json:"state,omitempty"`
}

// inheritedConn is a parked connection in the hand-off: its listener's index in Listeners, its
// descriptor, and the bytes its server had read and not answered, to replay first.
type inheritedConn struct {
	Listener int    `json:"l"`
	FD       int    `json:"fd"`
	Replay   []byte `json:"r,omitempty"`
	Idle     bool   `json:"i,omitempty"` // between requests: served as idle, not new
}

type inheritedFD struct {
	Name string `json:"name"`
	FD   int    `json:"fd"`
}

type handedListener struct {
	name     string
	fd       int           // duplicate kept for the next image; close-on-exec except during exec
	unixPath string        // socket file to remove on Shutdown
	pending  []*parkedConn // connections to accept before the listener's (under Handoff.mu)
}

type served struct {
	srv     *http.Server
	hl      *handedListener
	ln      net.Listener
	parks   bool     // its connections can be handed over (HTTP/1)
	closing bool     // its listener was closed by the running hand-off attempt
	counted *attempt // the attempt waiting for this accept loop to return
}

type attempt struct {
	stopped sync.WaitGroup // accept loops that returned
	done    chan struct{}  // closed when the attempt failed and servers may resume
}

// NewHandoff creates the process's Handoff. In an image started by a re-exec it adopts the
// descriptors and state the previous image passed in HandoffEnv. Create one per process,
// before the slots and listeners that use it.
func NewHandoff(opts HandoffOptions) (*Handoff, error) {
	log := opts.Logger
	if log.GetSink() == nil {
		log = logr.Discard()
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = 30 * time.Second
	}
	switch {
	case opts.MaxHandedConns == 0:
		opts.MaxHandedConns = defaultMaxHandedConns
	case opts.MaxHandedConns > maxHandedConnsLimit:
		return nil, fmt.Errorf("HandoffOptions.MaxHandedConns %d: at most %d connections can be handed over (the hand-off travels in the environment)", opts.MaxHandedConns, maxHandedConnsLimit)
	}
	h := &Handoff{
		log:            log.WithName("handoff"),
		drainTimeout:   opts.DrainTimeout,
		maxConns:       opts.MaxHandedConns,
		execve:         syscall.Exec,
		inherited:      map[string]int{},
		inheritedConns: map[string][]*parkedConn{},
		byLn:           map[net.Listener]*handedListener{},
		providers:      map[string]stateProvider{},
	}
	h.reg = connRegistry{log: h.log, live: map[*handConn]struct{}{}}
	raw, ok := os.LookupEnv(HandoffEnv)
	if !ok {
		return h, nil
	}
	// Not for our children, nor for the image after next.
	os.Unsetenv(HandoffEnv)
	var p handoffPayload
	if err := json.Unmarshal([]byte(raw), &p); err != nil || p.Version != 1 {
		return nil, fmt.Errorf("read %s from the previous image (version %d): %v; unset it to start fresh", HandoffEnv, p.Version, err)
	}
	if err := h.adopt(&p); err != nil {
		return nil, err
	}
	h.payload = &p
	h.status = control.HandoffStatus{Generation: p.Generation, Reason: p.Reason, DrainSeconds: p.DrainSeconds}
	h.log.Info("adopted hand-off from the previous image", "generation", p.Generation, "reason", p.Reason,
		"listeners", len(p.Listeners), "connections", len(p.Conns))
	return h, nil
}

// adopt takes the descriptors the previous image passed: listeners, then parked connections.
func (h *Handoff) adopt(p *handoffPayload) error {
	open := func(fd int) error {
		if _, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFD, 0); errno != 0 {
			return errno
		}
		syscall.CloseOnExec(fd)
		return nil
	}
	for _, l := range p.Listeners {
		if err := open(l.FD); err != nil {
			return fmt.Errorf("inherited listener %s: descriptor %d is not open: %v", l.Name, l.FD, err)
		}
		h.inherited[l.Name] = l.FD
	}
	for _, c := range p.Conns {
		if c.Listener < 0 || c.Listener >= len(p.Listeners) {
			return fmt.Errorf("inherited connection on descriptor %d names listener %d of %d; unset %s to start fresh", c.FD, c.Listener, len(p.Listeners), HandoffEnv)
		}
		if err := open(c.FD); err != nil {
			return fmt.Errorf("inherited connection: descriptor %d is not open: %v", c.FD, err)
		}
		name := p.Listeners[c.Listener].Name
		h.inheritedConns[name] = append(h.inheritedConns[name], &parkedConn{fd: c.FD, replay: c.Replay, idle: c.Idle})
	}
	return nil
}

// Inherited reports whether this image was started by a re-exec hand-off.
func (h *Handoff) Inherited() bool { return h.payload != nil }

// Status reports the re-exec history.
func (h *Handoff) Status() control.HandoffStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.status
}

// register adds a slot and returns the state the previous image left for it, if any.
func (h *Handoff) register(name string, p stateProvider) (json.RawMessage, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, dup := h.providers[name]; dup {
		return nil, fmt.Errorf("host.New: a slot named %q is already registered with this Handoff; give each slot its own Options.Name", name)
	}
	h.providers[name] = p
	if h.payload == nil {
		return nil, nil
	}
	return h.payload.State[name], nil
}

// Listen returns a listener that survives re-execs: the one inherited from the previous image
// under the same network and address, or a new one. Unix sockets are created with mode 0600
// (a stale socket file left by a dead process is replaced; a live one is an error) and are
// removed by Shutdown. Call Listen for every listener before the first Serve: inherited
// listeners nobody claimed by then are closed.
func (h *Handoff) Listen(network, addr string) (net.Listener, error) {
	name := network + ":" + addr
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, fmt.Errorf("listen %s: the Handoff is shut down", name)
	}
	for _, l := range h.listeners {
		if l.name == name {
			return nil, fmt.Errorf("listen %s: already listening through this Handoff", name)
		}
	}
	hl := &handedListener{name: name}
	if network == "unix" {
		hl.unixPath = addr
	}
	if fd, ok := h.inherited[name]; ok {
		delete(h.inherited, name)
		ln, err := listenerFromFD(fd, name)
		if err != nil {
			syscall.Close(fd)
			return nil, fmt.Errorf("listen %s: adopt inherited descriptor %d: %w", name, fd, err)
		}
		hl.fd = fd
		hl.pending = h.inheritedConns[name]
		for _, pc := range hl.pending {
			pc.hl = hl
		}
		delete(h.inheritedConns, name)
		h.listeners = append(h.listeners, hl)
		h.byLn[ln] = hl
		h.log.V(1).Info("listener inherited", "listener", name, "fd", fd)
		return ln, nil
	}
	var ln net.Listener
	var err error
	if network == "unix" {
		ln, err = listenUnixPrivate(addr)
	} else {
		ln, err = net.Listen(network, addr)
	}
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", name, err)
	}
	fd, err := dupListener(ln)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("listen %s: keep a descriptor for hand-off: %w", name, err)
	}
	hl.fd = fd
	h.listeners = append(h.listeners, hl)
	h.byLn[ln] = hl
	return ln, nil
}

// Serve serves srv on ln, which must come from Listen, and keeps doing so across failed
// re-exec attempts; a successful one replaces the process image, so Serve never returns
// from it. It returns srv.Serve's error once the server is shut down (Shutdown, or the
// application's own srv.Shutdown/Close). It follows srv's connections, to count them and hand
// them over: it chains the application's ConnState, ConnContext and Handler (set them before
// Serve), and srv.Serve accepts from a listener that wraps ln's connections.
func (h *Handoff) Serve(srv *http.Server, ln net.Listener) error {
	h.mu.Lock()
	hl := h.byLn[ln]
	if hl == nil {
		h.mu.Unlock()
		return fmt.Errorf("serve on %v: the listener did not come from Handoff.Listen, so it cannot be handed over", ln.Addr())
	}
	if at := h.attempt; at != nil {
		// A hand-off is draining: the new image will serve this listener.
		h.mu.Unlock()
		<-at.done
		h.mu.Lock()
	}
	s := &served{srv: srv, hl: hl, ln: ln, parks: parksConns(srv, h.maxConns)}
	h.servers = append(h.servers, s)
	h.hookServer(srv, s.parks)
	h.mu.Unlock()
	h.servingOnce.Do(h.markServing)

	defer func() {
		h.mu.Lock()
		h.servers = slices.DeleteFunc(h.servers, func(x *served) bool { return x == s })
		h.mu.Unlock()
	}()
	for {
		h.mu.Lock()
		cur := s.ln
		h.mu.Unlock()
		if cur == nil {
			return fmt.Errorf("serve %s: the listener could not be recreated after a failed hand-off", hl.name)
		}
		var l net.Listener = cur
		if s.parks {
			l = &handListener{Listener: cur, h: h, hl: hl, idleTimeout: cmp.Or(srv.IdleTimeout, srv.ReadTimeout)}
		}
		err := srv.Serve(l)
		h.mu.Lock()
		at, closing, counted, replaced := h.attempt, s.closing, s.counted, s.ln != cur
		s.counted = nil
		h.mu.Unlock()
		if counted != nil {
			counted.stopped.Done()
		}
		switch {
		case closing && at != nil:
			<-at.done // only a failed attempt gets here; a successful one replaced the image
		case replaced:
			// An abandoned attempt already gave this server a new listener.
		default:
			return err
		}
	}
}

// markServing runs when the first server starts: the hand-off, if any, is complete.
func (h *Handoff) markServing() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for name, fd := range h.inherited {
		h.log.Info("closing inherited listener nobody claimed", "listener", name)
		syscall.Close(fd)
	}
	h.inherited = map[string]int{}
	for name, pcs := range h.inheritedConns {
		h.log.Info("closing connections handed over on a listener nobody claimed", "listener", name, "connections", len(pcs))
		for _, pc := range pcs {
			syscall.Close(pc.fd)
		}
	}
	h.inheritedConns = map[string][]*parkedConn{}
	if h.payload != nil {
		h.status.ExecToServeSeconds = time.Since(time.Unix(0, h.payload.ExecUnixNano)).Seconds()
		h.log.Info("serving again after re-exec", "generation", h.payload.Generation,
			"execToServeSeconds", h.status.ExecToServeSeconds, "drainSeconds", h.payload.DrainSeconds)
	}
}

// Reexec re-executes the host in place with the slots' serving versions. It returns only when
// the hand-off did not happen (another one is running, the drain timed out, exec failed);
// the host then keeps serving.
func (h *Handoff) Reexec(ctx context.Context, reason string) error {
	return h.reexec(ctx, reason, nil)
}

func (h *Handoff) reexec(ctx context.Context, reason string, targets map[string]*ReexecTarget) error {
	if !h.running.CompareAndSwap(false, true) {
		return fmt.Errorf("%w: a hand-off is already running", ErrNoHandoff)
	}
	defer h.running.Store(false)
	start := time.Now()

	r, err := h.beginReexec(reason)
	if err != nil {
		return err
	}
	r.log.Info("re-exec: draining")
	r.stopAccepting()
	if err := r.drain(ctx, h.drainTimeout); err != nil {
		return r.fail(err)
	}
	drain := time.Since(start)

	// 4. Freeze the slots and record what serves.
	states, err := r.freeze(targets)
	if err != nil {
		return r.fail(fmt.Errorf("re-exec: %w", err))
	}
	payload := handoffPayload{
		Version:      1,
		Generation:   r.generation,
		Reason:       reason,
		DrainSeconds: drain.Seconds(),
		State:        states,
	}
	for _, l := range r.listeners {
		payload.Listeners = append(payload.Listeners, inheritedFD{Name: l.name, FD: l.fd})
	}
	payload.Conns = r.handedConns()
	err = r.exec(payload)
	r.thaw()
	return r.fail(err)
}

// handedConns lists the parked connections for the payload, each under its listener's index.
func (r *reexecRun) handedConns() []inheritedConn {
	parked, bytes, closedIdle := r.park.parked()
	var out []inheritedConn
	for _, pc := range parked {
		i := slices.Index(r.listeners, pc.hl)
		if i < 0 {
			// Its listener was added after the attempt began; it cannot be passed. Accepted
			// again when the servers resume (the exec failing), closed by the exec otherwise.
			r.log.Info("a parked connection's listener is not handed over", "listener", pc.hl.name)
			continue
		}
		out = append(out, inheritedConn{Listener: i, FD: pc.fd, Replay: pc.replay, Idle: pc.idle})
	}
	r.log.Info("re-exec: connections parked", "connections", len(out), "replayBytes", bytes, "idleClosedOverBound", closedIdle)
	return out
}

// A reexecRun is one re-exec attempt from its drain to its exec: the servers, listeners and
// slots it hands over, taken under the lock when it began, and the slots it froze.
type reexecRun struct {
	h          *Handoff
	at         *attempt
	park       *parkRun // connections parked by this attempt
	log        logr.Logger
	generation int
	servers    []*served
	listeners  []*handedListener
	providers  map[string]stateProvider
	frozen     []stateProvider
}

// beginReexec registers the attempt, which holds back servers started meanwhile (see Serve).
func (h *Handoff) beginReexec(reason string) (*reexecRun, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, fmt.Errorf("%w: the Handoff is shut down", ErrNoHandoff)
	}
	r := &reexecRun{
		h:          h,
		at:         &attempt{done: make(chan struct{})},
		park:       &parkRun{maxConns: max(h.maxConns, 0)},
		generation: h.status.Generation + 1,
		servers:    slices.Clone(h.servers),
		listeners:  slices.Clone(h.listeners),
		providers:  make(map[string]stateProvider, len(h.providers)),
	}
	for k, v := range h.providers {
		r.providers[k] = v
	}
	h.attempt = r.at
	h.status.InProgress = true
	r.log = h.log.WithValues("generation", r.generation, "reason", reason)
	return r, nil
}

// stopAccepting is steps 1 and 2 of the hand-off.
func (r *reexecRun) stopAccepting() {
	// 1. Connections park (those accepted from now on too). A server whose connections cannot
	// be handed over drains as before: idle connections close, responses carry
	// "Connection: close" from now on.
	r.h.reg.startRun(r.park)
	for _, s := range r.servers {
		if !s.parks {
			s.srv.SetKeepAlivesEnabled(false)
		}
	}
	// 2. Stop accepting. The socket stays open through hl.fd; new connections queue.
	r.h.mu.Lock()
	defer r.h.mu.Unlock()
	for _, s := range r.servers {
		s.closing, s.counted = true, r.at
		r.at.stopped.Add(1)
		s.ln.Close()
	}
}

// drain is step 3: every accept loop has returned, so every accepted connection is counted;
// then it waits for them to finish.
func (r *reexecRun) drain(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := waitGroupCtx(ctx, &r.at.stopped); err != nil {
		return fmt.Errorf("re-exec: accept loops did not stop: %w", err)
	}
	if err := r.h.conns.waitZero(ctx); err != nil {
		return fmt.Errorf("re-exec: drain: %w (raise HandoffOptions.DrainTimeout, or find the client holding connections open)", err)
	}
	return nil
}

// freeze freezes every slot and returns their states; when one cannot be frozen, those frozen
// already are thawed.
func (r *reexecRun) freeze(targets map[string]*ReexecTarget) (map[string]json.RawMessage, error) {
	states := map[string]json.RawMessage{}
	for name, p := range r.providers {
		b, err := p.freeze(targets[name])
		if err != nil {
			r.thaw()
			return nil, err
		}
		r.frozen = append(r.frozen, p)
		states[name] = b
	}
	return states, nil
}

func (r *reexecRun) thaw() {
	for _, p := range r.frozen {
		p.thaw()
	}
}

// exec passes the listeners and payload to the new image and execs it. It returns only when
// that failed.
func (r *reexecRun) exec(payload handoffPayload) error {
	exe := "/proc/self/exe" // the very image running, even if its file was replaced since
	if _, err := os.Stat(exe); err != nil {
		if exe, err = os.Executable(); err != nil {
			return fmt.Errorf("re-exec: find the executable: %w", err)
		}
	}
	// A descriptor passed on stays close-on-exec off until the exec, or until the attempt is
	// abandoned: then every one switched so far is switched back, so that no child the process
	// starts later inherits a listening socket or a client's connection.
	fds := make([]int, 0, len(r.listeners)+len(payload.Conns))
	for _, l := range r.listeners {
		fds = append(fds, l.fd)
	}
	for _, c := range payload.Conns {
		fds = append(fds, c.FD)
	}
	restore := func(passed []int) {
		for _, fd := range passed {
			setCloseOnExec(fd, true)
		}
	}
	for i, fd := range fds {
		if err := setCloseOnExec(fd, false); err != nil {
			restore(fds[:i])
			return fmt.Errorf("re-exec: pass descriptor %d (%s): %w", fd, r.describeFD(i), err)
		}
	}
	r.log.Info("re-exec: drained; exec", "drainSeconds", payload.DrainSeconds, "listeners", len(r.listeners), "connections", len(payload.Conns))
	payload.ExecUnixNano = time.Now().UnixNano()
	env, err := handoffEnviron(payload)
	if err == nil {
		execve := syscall.Exec
		if r.h != nil && r.h.execve != nil {
			execve = r.h.execve
		}
		err = execve(exe, os.Args, env)
	}
	// Only a failed exec gets here.
	restore(fds)
	return fmt.Errorf("re-exec: exec %s: %w", exe, err)
}

// describeFD names the i-th descriptor exec passes: a listener, then connections.
func (r *reexecRun) describeFD(i int) string {
	if i < len(r.listeners) {
		return "listener " + r.listeners[i].name
	}
	return "a parked connection"
}

// fail abandons the attempt: the servers get their listeners and keep-alives back, the
// connections parked are given back to be accepted again (with their bytes), and Serve calls
// held back by it go on. It returns err.
func (r *reexecRun) fail(err error) error {
	h := r.h
	h.reg.endRun()
	parked := r.park.take()
	h.mu.Lock()
	for _, pc := range parked {
		pc.hl.pending = append(pc.hl.pending, pc)
	}
	for _, s := range r.servers {
		if s.closing {
			ln, lerr := listenerFromFD(s.hl.fd, s.hl.name)
			if lerr != nil {
				r.log.Error(lerr, "re-exec abandoned and a listener could not be recreated", "listener", s.hl.name)
			}
			s.ln, s.closing = ln, false
		}
		s.srv.SetKeepAlivesEnabled(true)
	}
	h.attempt = nil
	h.status.InProgress = false
	h.status.LastError = err.Error()
	h.mu.Unlock()
	close(r.at.done)
	r.log.Error(err, "re-exec abandoned; serving on", "connectionsGivenBack", len(parked))
	return err
}

// maxHandoffEnv bounds the hand-off document: Linux refuses an exec whose environment
// variable is over 128 KiB (MAX_ARG_STRLEN).
const maxHandoffEnv = 120 << 10

func handoffEnviron(p handoffPayload) ([]string, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode hand-off: %w", err)
	}
	if len(b) > maxHandoffEnv {
		return nil, fmt.Errorf("encode hand-off: %d bytes for %d listeners and %d connections, over the %d an environment variable may hold; lower HandoffOptions.MaxHandedConns",
			len(b), len(p.Listeners), len(p.Conns), maxHandoffEnv)
	}
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, HandoffEnv+"=") })
	return append(env, HandoffEnv+"="+string(b)), nil
}

// Shutdown stops the servers for good with the same drain as a hand-off: no new
// connections, responses with "Connection: close", then wait for open connections to close or
// ctx to end. Unix socket files are removed. Serve calls return.
func (h *Handoff) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	servers := slices.Clone(h.servers)
	listeners := slices.Clone(h.listeners)
	h.mu.Unlock()
	for _, s := range servers {
		s.srv.SetKeepAlivesEnabled(false)
		s.ln.Close()
	}
	h.mu.Lock()
	for _, l := range listeners {
		for _, pc := range l.pending {
			syscall.Close(pc.fd)
		}
		l.pending = nil
	}
	h.mu.Unlock()
	for _, l := range listeners {
		syscall.Close(l.fd)
		if l.unixPath != "" {
			os.Remove(l.unixPath)
		}
	}
	if err := h.conns.waitZero(ctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// connCounter counts open connections and wakes waiters when the count reaches zero.
type connCounter struct {
	mu      sync.Mutex
	n       int
	waiters []chan struct{}
}

func (c *connCounter) add(d int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n += d
	if c.n == 0 {
		for _, w := range c.waiters {
			close(w)
		}
		c.waiters = nil
	}
}

func (c *connCounter) waitZero(ctx context.Context) error {
	c.mu.Lock()
	if c.n == 0 {
		c.mu.Unlock()
		return nil
	}
	w := make(chan struct{})
	c.waiters = append(c.waiters, w)
	c.mu.Unlock()
	select {
	case <-w:
		return nil
	case <-ctx.Done():
		c.mu.Lock()
		n := c.n
		c.mu.Unlock()
		return fmt.Errorf("%d connections still open: %w", n, ctx.Err())
	}
}

func waitGroupCtx(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// dupListener duplicates ln's descriptor (close-on-exec) without going through File(), which
// would switch the socket to blocking mode.
func dupListener(ln net.Listener) (int, error) {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return -1, fmt.Errorf("%T has no descriptor", ln)
	}
	return dupSyscallConn(sc)
}

func dupCloexec(fd int) (int, error) {
	r, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_DUPFD_CLOEXEC, 0)
	if errno != 0 {
		return -1, fmt.Errorf("fcntl(F_DUPFD_CLOEXEC): %w", errno)
	}
	return int(r), nil
}

func setCloseOnExec(fd int, on bool) error {
	var flag uintptr
	if on {
		flag = syscall.FD_CLOEXEC
	}
	if _, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_SETFD, flag); errno != 0 {
		return fmt.Errorf("fcntl(F_SETFD): %w", errno)
	}
	return nil
}

// listenerFromFD makes a Go listener on a duplicate of fd, leaving fd itself to the Handoff.
func listenerFromFD(fd int, name string) (net.Listener, error) {
	d, err := dupCloexec(fd)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(d), name)
	defer f.Close() // FileListener holds its own duplicate
	return net.FileListener(f)
}

// listenUnixPrivate creates a unix socket that is never reachable with looser permissions than
// 0600: it is bound inside a fresh 0700 directory, chmodded, then renamed into place.
func listenUnixPrivate(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket; remove it", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: another process is serving on it", path)
		}
		// Left by a process that died (the shared volume outlives containers).
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(path), ".splice-sock-")
	if err != nil {
		return nil, fmt.Errorf("create socket staging directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	staged := filepath.Join(tmp, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: staged, Net: "unix"})
	if err != nil {
		return nil, err
	}
	// The Handoff decides when the file goes: never on a hand-off, on Shutdown otherwise.
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(staged, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod control socket: %w", err)
	}
	if err := os.Rename(staged, path); err != nil {
		ln.Close()
		return nil, fmt.Errorf("move socket into place: %w", err)
	}
	return ln, nil
}
