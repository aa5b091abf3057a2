package host

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
)

// connTestHost is a Handoff serving one HTTP server on loopback, whose exec is replaced: each
// re-exec records the hand-off document and fails, so the attempt is abandoned and the parked
// connections must be served again by this process — which is where a wrong replay shows.
type connTestHost struct {
	h       *Handoff
	addr    string
	block   chan struct{} // /block waits for it
	entered chan struct{} // /block has been called

	mu       sync.Mutex
	payloads []handoffPayload
	cloexec  []bool // per handed connection, at the exec: close-on-exec (must be off)
}

func startConnTestHost(t *testing.T) *connTestHost {
	return startConnTestHostTimeout(t, 10*time.Second)
}

// startConnTestHostTimeout starts a host whose server has the given ReadHeaderTimeout.
func startConnTestHostTimeout(t *testing.T, readHeaderTimeout time.Duration) *connTestHost {
	t.Helper()
	h, err := NewHandoff(HandoffOptions{DrainTimeout: 5 * time.Second, Logger: testr.NewWithOptions(t, testr.Options{Verbosity: 1})})
	if err != nil {
		t.Fatal(err)
	}
	th := &connTestHost{h: h, block: make(chan struct{}), entered: make(chan struct{}, 8)}
	h.execve = th.execve
	ln, err := h.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	th.addr = ln.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "echo:%s", b)
	})
	mux.HandleFunc("/block", func(w http.ResponseWriter, r *http.Request) {
		th.entered <- struct{}{}
		<-th.block
		io.WriteString(w, "unblocked")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: readHeaderTimeout}
	go h.Serve(srv, ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h.Shutdown(ctx)
	})
	return th
}

var errTestExec = errors.New("test: exec replaced")

func (th *connTestHost) execve(_ string, _, env []string) error {
	for _, kv := range env {
		v, ok := strings.CutPrefix(kv, HandoffEnv+"=")
		if !ok {
			continue
		}
		var p handoffPayload
		if err := json.Unmarshal([]byte(v), &p); err != nil {
			return err
		}
		th.mu.Lock()
		th.payloads = append(th.payloads, p)
		for _, c := range p.Conns {
			flags, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(c.FD), syscall.F_GETFD, 0)
			th.cloexec = append(th.cloexec, errno != 0 || flags&syscall.FD_CLOEXEC != 0)
		}
		th.mu.Unlock()
	}
	return errTestExec
}

// reexec runs a hand-off in the background; the returned channel gets its error.
func (th *connTestHost) reexec(t *testing.T) <-chan error {
	t.Helper()
	errc := make(chan error, 1)
	var finished atomic.Bool
	go func() {
		err := th.h.Reexec(context.Background(), "test")
		finished.Store(true)
		errc <- err
	}()
	waitCond(t, "the hand-off to start", func() bool { return th.h.Status().InProgress || finished.Load() })
	return errc
}

func (th *connTestHost) lastPayload(t *testing.T) handoffPayload {
	t.Helper()
	th.mu.Lock()
	defer th.mu.Unlock()
	if len(th.payloads) == 0 {
		t.Fatal("the hand-off never reached the exec")
	}
	for i, on := range th.cloexec {
		if on {
			t.Errorf("handed connection %d was close-on-exec at the exec: the new image would not get it", i)
		}
	}
	return th.payloads[len(th.payloads)-1]
}

// conns are the connections the Handoff holds, with what each recorded.
func (th *connTestHost) conns() []*handConn {
	g := &th.h.reg
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []*handConn
	for c := range g.live {
		out = append(out, c)
	}
	return out
}

// waitRecorded waits until some connection of the host recorded exactly want since its last
// clean point: the server has read it.
func (th *connTestHost) waitRecorded(t *testing.T, want string) {
	waitCond(t, fmt.Sprintf("the server to read %q", want), func() bool {
		for _, c := range th.conns() {
			c.mu.Lock()
			got := string(c.since)
			c.mu.Unlock()
			if got == want {
				return true
			}
		}
		return false
	})
}

type rawConn struct {
	t *testing.T
	net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &rawConn{t: t, Conn: c, br: bufio.NewReader(c)}
}

func post(path, body string) string {
	return fmt.Sprintf("POST %s HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s", path, len(body), body)
}

func (c *rawConn) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.Conn, s); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// expect reads one response: 200 with body want; it returns whether the response said
// "Connection: close".
func (c *rawConn) expect(want string) bool {
	c.t.Helper()
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.t.Fatalf("no answer where %q was due: %v", want, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || string(b) != want {
		c.t.Fatalf("answer %d %q (%v); want 200 %q", resp.StatusCode, b, err, want)
	}
	return resp.Close
}

// Idle keep-alive connections, connections whose request is half sent (up to a line's end, or
// mid-line and completing the line during the hand-off), a new connection that sent nothing and
// one handling a request are all handed over, each with exactly the bytes its server had read
// and not answered; given back by the abandoned hand-off, each is served on the same TCP
// connection as if nothing happened.
func TestHandoffParksConnectionsWithTheirBytes(t *testing.T) {
	th := startConnTestHost(t)
	idle := dialRaw(t, th.addr)
	idle.send(post("/echo", "a1"))
	if idle.expect("echo:a1") {
		t.Fatal("keep-alive response said Connection: close before any hand-off")
	}
	half := dialRaw(t, th.addr)
	partial := "POST /echo HTTP/1.1\r\nHost: t\r\n"
	half.send(partial)
	th.waitRecorded(t, partial)
	midLine := dialRaw(t, th.addr)
	midLine.send(partial + "Content-Le")
	th.waitRecorded(t, partial+"Content-Le")
	fresh := dialRaw(t, th.addr)
	busy := dialRaw(t, th.addr)
	busy.send(post("/block", ""))
	<-th.entered
	waitCond(t, "five connections", func() bool { return len(th.conns()) == 5 })

	errc := th.reexec(t)
	// Mid-line the server cannot be interrupted (it would parse the partial line and answer
	// 400); the rest of the line arrives, and the connection parks at its end.
	midLine.send("ngth: 2\r\n")
	close(th.block)
	if busy.expect("unblocked") {
		t.Error("the request in flight was answered with Connection: close; it should stay open and be handed over")
	}
	if err := <-errc; !errors.Is(err, errTestExec) {
		t.Fatalf("re-exec: %v; want the test's exec error", err)
	}
	p := th.lastPayload(t)
	replays := map[string]int{}
	for _, c := range p.Conns {
		replays[string(c.Replay)]++
	}
	if len(p.Conns) != 5 || replays[""] != 3 || replays[partial] != 1 || replays[partial+"Content-Length: 2\r\n"] != 1 {
		t.Fatalf("handed over %d connections with replays %v; want 5: three with nothing, one with %q, one with %q",
			len(p.Conns), replays, partial, partial+"Content-Length: 2\r\n")
	}
	t.Logf("handed over %d connections, replays %v", len(p.Conns), replays)

	// The abandoned hand-off gave them back: each goes on where it was.
	half.send("Content-Length: 2\r\n\r\nhi")
	half.expect("echo:hi")
	midLine.send("\r\nhm")
	midLine.expect("echo:hm")
	idle.send(post("/echo", "a2"))
	idle.expect("echo:a2")
	fresh.send(post("/echo", "f"))
	fresh.expect("echo:f")
	busy.send(post("/echo", "b"))
	busy.expect("echo:b")
}

// An idle keep-alive connection handed over is served as idle, not as new: the server's header
// timeout (which net/http starts at once on a new connection) must not close it under a client
// that keeps it idle for longer, then uses it.
func TestHandoffIdleConnectionStaysIdle(t *testing.T) {
	const headerTimeout = 200 * time.Millisecond
	th := startConnTestHostTimeout(t, headerTimeout)
	c := dialRaw(t, th.addr)
	c.send(post("/echo", "1"))
	c.expect("echo:1")
	waitCond(t, "the connection to be idle", func() bool {
		hc := th.conns()[0]
		hc.mu.Lock()
		defer hc.mu.Unlock()
		return hc.served
	})
	if err := <-th.reexec(t); !errors.Is(err, errTestExec) {
		t.Fatalf("re-exec: %v; want the test's exec error", err)
	}
	if p := th.lastPayload(t); len(p.Conns) != 1 || !p.Conns[0].Idle {
		t.Fatalf("handed over %+v; want one idle connection", p.Conns)
	}
	time.Sleep(4 * headerTimeout) // idle, across the header timeout
	c.send(post("/echo", "2"))
	c.expect("echo:2")
}

// A client that pipelines leaves bytes in net/http's read buffer, which the Handoff cannot see:
// its connection must not be handed over (a replay would miss those bytes), but drained — every
// request it sent answered, the last with Connection: close. Both a complete pipelined request
// and one cut at a header line (where the server's next read looks like a fresh one) are tried.
func TestHandoffDrainsPipelinedConnection(t *testing.T) {
	for name, second := range map[string][]string{
		"complete":        {post("/echo", "hi")},
		"cut at a header": {"POST /echo HTTP/1.1\r\nHost: t\r\n", "Content-Length: 2\r\n\r\nhi"},
	} {
		t.Run(name, func(t *testing.T) {
			th := startConnTestHost(t)
			c := dialRaw(t, th.addr)
			c.send("GET /block HTTP/1.1\r\nHost: t\r\n\r\n" + second[0])
			<-th.entered
			hc := th.conns()[0]
			errc := th.reexec(t)
			close(th.block)
			c.expect("unblocked")
			if len(second) > 1 {
				// The server is in readRequest, having parsed the buffered lines, and reads on (or
				// it let the connection go).
				waitCond(t, "the server to read on", func() bool {
					hc.mu.Lock()
					defer hc.mu.Unlock()
					return hc.gone || hc.served && !hc.idleWait
				})
				c.send(second[1])
			}
			if !c.expect("echo:hi") {
				t.Errorf("the pipelined request was answered without Connection: close; it should drain")
			}
			if _, err := c.br.ReadByte(); err != io.EOF {
				t.Errorf("after Connection: close the server sent more or did not close: %v", err)
			}
			if err := <-errc; !errors.Is(err, errTestExec) {
				t.Fatalf("re-exec: %v; want the test's exec error", err)
			}
			if p := th.lastPayload(t); len(p.Conns) != 0 {
				t.Fatalf("a pipelining connection was handed over: %+v", p.Conns)
			}
		})
	}
}

// The rules for a clean record, on the calls net/http makes: after StateIdle, one
// SetReadDeadline then a read into an empty buffer is clean, anything else dirty; and a clean
// keep-alive Peek gets at most 4 bytes, so that readRequest reads the rest.
func TestHandConnCleanAfterIdle(t *testing.T) {
	cases := []struct {
		name      string
		deadlines int
		readLen   int
		clean     bool
	}{
		{"peek into an empty buffer", 1, 4096, true},
		{"buffer holds a byte", 1, 4095, false},
		{"peek satisfied from the buffer, readRequest reads", 2, 4096, false},
		{"no deadline before the read", 0, 4096, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			const next = "GET / HTTP/1.1\r\n"
			server, client := net.Pipe()
			defer server.Close()
			defer client.Close()
			g := &connRegistry{live: map[*handConn]struct{}{}}
			c := g.add(server, &handedListener{name: "test"}, nil, 0)
			go func() {
				io.WriteString(client, post("/x", "body"))
				io.WriteString(client, next)
			}()
			buf := make([]byte, 4096)
			if _, err := c.Read(buf); err != nil { // request 1, into the server's empty buffer
				t.Fatal(err)
			}
			c.state(http.StateActive)
			c.state(http.StateIdle)
			for range tc.deadlines {
				c.SetReadDeadline(time.Time{})
			}
			n, err := c.Read(buf[:tc.readLen])
			if err != nil {
				t.Fatal(err)
			}
			c.mu.Lock()
			clean, since := c.clean, string(c.since)
			c.mu.Unlock()
			if clean != tc.clean {
				t.Fatalf("clean %v; want %v", clean, tc.clean)
			}
			if tc.clean && (n != peekSize || since != next) {
				t.Fatalf("clean peek delivered %d bytes and recorded %q; want %d and %q", n, since, peekSize, next)
			}
		})
	}
}

func waitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
