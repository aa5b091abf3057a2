package main

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/splice-dev/splice/examples/greeter/greeterproc"
)

// failurePause is how long a client waits after a failed request before the next one. Without
// it a refused connection returns at once and a client would count thousands of failures per
// second of downtime; with it, failures measure downtime × clients / 10 ms.
const failurePause = 10 * time.Millisecond

// loadGen drives POST /greet from several clients and records every outcome.
type loadGen struct {
	addr    string
	clients int

	total  atomic.Int64
	failed atomic.Int64

	mu        sync.Mutex
	latencies []time.Duration
	firstSeen map[string]time.Time // digest -> first answer from it
	errs      map[string]int

	stop chan struct{}
	wg   sync.WaitGroup
}

func startLoad(addr string, clients int, keepAlive bool) *loadGen {
	g := &loadGen{addr: addr, clients: clients, firstSeen: map[string]time.Time{}, errs: map[string]int{}, stop: make(chan struct{})}
	for i := 0; i < clients; i++ {
		tr := &http.Transport{DisableKeepAlives: !keepAlive, MaxIdleConnsPerHost: 1}
		c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
		g.wg.Add(1)
		go g.client(i, c)
	}
	return g
}

func (g *loadGen) client(id int, c *http.Client) {
	defer g.wg.Done()
	var lat []time.Duration
	defer func() {
		g.mu.Lock()
		g.latencies = append(g.latencies, lat...)
		g.mu.Unlock()
	}()
	for n := 0; ; n++ {
		select {
		case <-g.stop:
			return
		default:
		}
		name := fmt.Sprintf("c%d-%d", id, n)
		start := time.Now()
		digest, err := g.greet(c, name)
		d := time.Since(start)
		g.total.Add(1)
		if err != nil {
			g.failed.Add(1)
			g.mu.Lock()
			g.errs[errClass(err)]++
			g.mu.Unlock()
			select {
			case <-g.stop:
				return
			case <-time.After(failurePause):
			}
			continue
		}
		lat = append(lat, d)
		g.mu.Lock()
		if _, ok := g.firstSeen[digest]; !ok {
			g.firstSeen[digest] = time.Now()
		}
		g.mu.Unlock()
	}
}

func (g *loadGen) greet(c *http.Client, name string) (string, error) {
	a := greeterproc.Greet(c, g.addr, name, "")
	if a.Err != nil {
		return "", a.Err
	}
	if a.Status != http.StatusOK {
		return "", fmt.Errorf("status %d", a.Status)
	}
	if a.Digest == "" || !strings.Contains(a.Body, name) {
		return "", fmt.Errorf("answer without a version or for another request: %q", a.Body)
	}
	return a.Digest, nil
}

// seen returns when the first answer from digest arrived.
func (g *loadGen) seen(digest string) (time.Time, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	t, ok := g.firstSeen[digest]
	return t, ok
}

func (g *loadGen) finish() {
	close(g.stop)
	g.wg.Wait()
}

// errClass shortens an error to its kind, for the summary.
func errClass(err error) string {
	s := err.Error()
	for _, k := range []string{"connection refused", "connection reset", "EOF", "timeout", "status 5", "status 4"} {
		if strings.Contains(s, k) {
			return k
		}
	}
	if len(s) > 60 {
		s = s[:60]
	}
	return s
}

type latencyStats struct{ p50, p99, max time.Duration }

func percentiles(ds []time.Duration) latencyStats {
	if len(ds) == 0 {
		return latencyStats{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(q float64) time.Duration {
		i := int(q*float64(len(s))+0.5) - 1
		return s[min(max(i, 0), len(s)-1)]
	}
	return latencyStats{p50: at(0.50), p99: at(0.99), max: s[len(s)-1]}
}
