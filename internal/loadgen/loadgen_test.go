package loadgen

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestCountsAnswersFailuresAndBounds(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%5 == 0 {
			http.Error(w, "plugin: deliberate", http.StatusInternalServerError)
			return
		}
		w.Header().Set("X-Plugin-Version", "v1")
	}))
	g := Start(Options{URL: srv.URL, Workers: 4, Interval: time.Millisecond, MaxRequests: 100})
	// The request bound ends the load by itself.
	select {
	case <-g.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the load did not stop at MaxRequests")
	}
	res := g.Stop()
	if res.Requests != 100 || res.Failures != 20 || res.Statuses[500] != 20 || res.Versions["v1"] != 80 || res.TransportErrors != 0 {
		t.Fatalf("result %+v", res)
	}
	if res.VersionsString() != "v1=80" || len(res.FirstErrors) != 10 {
		t.Fatalf("versions %q, first errors %v", res.VersionsString(), res.FirstErrors)
	}

	// A server that is gone: every request is a transport error.
	srv.Close()
	g = Start(Options{URL: srv.URL, Workers: 2, Interval: time.Millisecond, MaxRequests: 10})
	<-g.done
	res = g.Stop()
	if res.Requests != 10 || res.Failures != 10 || res.TransportErrors != 10 {
		t.Fatalf("against a closed server: %+v", res)
	}
}
