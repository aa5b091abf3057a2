// Package loadgen sends bounded HTTP traffic to a service and counts what comes back: the
// load the end-to-end suite and the cluster demo run while they roll plugins out.
//
// Every request is a POST on a fresh connection, so each one goes through the Service's choice
// of endpoint (kube-proxy) and a pod leaving or joining the Service is felt at once. The load
// is bounded in time and in count: it stops at Stop, after MaxDuration, or after MaxRequests.
package loadgen

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options shape the load.
type Options struct {
	// URL receives the POSTs.
	URL string
	// Workers send concurrently (default 8), each one request every Interval (default 50ms).
	Workers  int
	Interval time.Duration
	// MaxDuration (default 2m) and MaxRequests (default: what the workers send in
	// MaxDuration, Workers*MaxDuration/Interval) bound the load, in time and in count.
	MaxDuration time.Duration
	MaxRequests int64
	// Timeout bounds each request (default 5s).
	Timeout time.Duration
	// VersionHeader names the response header that says which version answered (default
	// X-Plugin-Version); answers are counted by its value.
	VersionHeader string
}

func (o *Options) defaults() {
	if o.Workers <= 0 {
		o.Workers = 8
	}
	if o.Interval <= 0 {
		o.Interval = 50 * time.Millisecond
	}
	if o.MaxDuration <= 0 {
		o.MaxDuration = 2 * time.Minute
	}
	if o.MaxRequests <= 0 {
		o.MaxRequests = int64(o.Workers) * int64(o.MaxDuration/o.Interval)
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.VersionHeader == "" {
		o.VersionHeader = "X-Plugin-Version"
	}
}

// Result is what a load counted.
type Result struct {
	Requests, Failures int64
	// TransportErrors are failures without an HTTP answer (refused, reset, timed out).
	TransportErrors int64
	// Statuses counts the answers other than 200 by status code.
	Statuses map[int]int64
	// Versions counts the 200 answers by the version header's value.
	Versions map[string]int64
	// FirstErrors are the first ten failures, with their time since the start.
	FirstErrors []string
	Duration    time.Duration
}

// VersionsString lists Versions as "v1=10 v2=3", sorted.
func (r *Result) VersionsString() string {
	vs := make([]string, 0, len(r.Versions))
	for v, n := range r.Versions {
		vs = append(vs, fmt.Sprintf("%s=%d", v, n))
	}
	sort.Strings(vs)
	return strings.Join(vs, " ")
}

// Generator is a running load.
type Generator struct {
	opts               Options
	start              time.Time
	requests, failures atomic.Int64
	stop               chan struct{}
	stopOnce           sync.Once
	done               chan struct{}

	mu          sync.Mutex
	transport   int64
	statuses    map[int]int64
	versions    map[string]int64
	firstErrors []string
}

// Start starts the load.
func Start(opts Options) *Generator {
	opts.defaults()
	g := &Generator{opts: opts, start: time.Now(), stop: make(chan struct{}), done: make(chan struct{}),
		statuses: map[int]int64{}, versions: map[string]int64{}}
	var wg sync.WaitGroup
	for w := range opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.worker(w)
		}()
	}
	go func() {
		wg.Wait()
		close(g.done)
	}()
	return g
}

func (g *Generator) worker(w int) {
	c := &http.Client{Timeout: g.opts.Timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := g.start.Add(g.opts.MaxDuration)
	tick := time.NewTicker(g.opts.Interval)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-g.stop:
			return
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			return
		}
		if n := g.requests.Add(1); n > g.opts.MaxRequests {
			g.requests.Add(-1)
			return
		}
		g.one(c, fmt.Sprintf("w%d-%d", w, i))
	}
}

func (g *Generator) one(c *http.Client, body string) {
	resp, err := c.Post(g.opts.URL, "text/plain", strings.NewReader(body))
	if err != nil {
		g.fail(0, err.Error())
		return
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	switch {
	case err != nil:
		g.fail(0, "read body: "+err.Error())
	case resp.StatusCode != http.StatusOK:
		g.fail(resp.StatusCode, fmt.Sprintf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(b))))
	default:
		g.mu.Lock()
		g.versions[resp.Header.Get(g.opts.VersionHeader)]++
		g.mu.Unlock()
	}
}

// fail counts a failure: status 0 is one without an HTTP answer.
func (g *Generator) fail(status int, msg string) {
	g.failures.Add(1)
	g.mu.Lock()
	defer g.mu.Unlock()
	if status == 0 {
		g.transport++
	} else {
		g.statuses[status]++
	}
	if len(g.firstErrors) < 10 {
		g.firstErrors = append(g.firstErrors, time.Since(g.start).Round(time.Millisecond).String()+": "+msg)
	}
}

// Counts returns the requests sent and failed so far.
func (g *Generator) Counts() (requests, failures int64) {
	return g.requests.Load(), g.failures.Load()
}

// Snapshot returns what was counted so far; the load goes on.
func (g *Generator) Snapshot() *Result {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := &Result{Requests: g.requests.Load(), Failures: g.failures.Load(), TransportErrors: g.transport,
		Statuses: map[int]int64{}, Versions: map[string]int64{}, FirstErrors: append([]string(nil), g.firstErrors...),
		Duration: time.Since(g.start)}
	for k, v := range g.statuses {
		r.Statuses[k] = v
	}
	for k, v := range g.versions {
		r.Versions[k] = v
	}
	return r
}

// Stop ends the load (it may have ended by its bounds already), waits for the requests in
// flight and returns the result. It may be called more than once.
func (g *Generator) Stop() *Result {
	g.stopOnce.Do(func() { close(g.stop) })
	<-g.done
	return g.Snapshot()
}
