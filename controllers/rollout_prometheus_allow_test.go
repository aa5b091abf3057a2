package controllers

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

// promServer is a loopback HTTP server that counts the requests it receives and answers each
// with code and body.
func promServer(t *testing.T, code int, contentType, body string) (string, *atomic.Int32) {
	t.Helper()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(code)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &hits
}

// planWithProm runs the controller's query for a canary step analysed by address (as
// runPrometheus does in a reconcile) under allowed, and plans with its result.
func planWithProm(t *testing.T, allowed []string, address string) *rolloutPlan {
	t.Helper()
	list, err := ParsePrometheusAllowlist(allowed)
	if err != nil {
		t.Fatalf("allowlist %q: %v", allowed, err)
	}
	r := &CompilerVersionReconciler{PrometheusAllowlist: list}
	prom := &splicev1.PrometheusAnalysis{Address: address, Query: "up", MaxValue: "1"}
	in := atShareStep(prom, true)
	cv := &splicev1.CompilerVersion{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "greeter"}}
	in.prom = r.runPrometheus(context.Background(), cv, in)
	if in.prom == nil {
		t.Fatal("the plan consults no Prometheus query")
	}
	return plan(in)
}

// An address outside the manager's allowlist is refused without a request: the step fails
// with PrometheusAddressNotAllowed, naming the flag that lists the allowed addresses.
func TestPrometheusAddressNotAllowed(t *testing.T) {
	addr, hits := promServer(t, http.StatusOK, "application/json", `{"status":"success","data":{"resultType":"scalar","result":[0,"0"]}}`)
	for _, tt := range []struct {
		name    string
		allowed []string
		address string
	}{
		{name: "no allowlist allows nothing", address: addr},
		{name: "another host", allowed: []string{"http://prometheus.monitoring:9090"}, address: addr},
		{name: "another port", allowed: []string{"http://127.0.0.1:1"}, address: addr},
		{name: "another scheme", allowed: []string{strings.Replace(addr, "http://", "https://", 1)}, address: addr},
		{name: "outside the allowed path", allowed: []string{addr + "/prom"}, address: addr + "/promx"},
		{name: "a dot segment out of the allowed path", allowed: []string{addr + "/prom"}, address: addr + "/prom/../admin"},
		{name: "an escaped dot segment", allowed: []string{addr + "/prom"}, address: addr + "/prom/%2e%2e/admin"},
		{name: "userinfo naming an allowed host", allowed: []string{"http://prometheus.monitoring:9090"},
			address: strings.Replace(addr, "http://", "http://prometheus.monitoring:9090@", 1)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pl := planWithProm(t, tt.allowed, tt.address)
			if pl.progressing.Reason != splicev1.ReasonPrometheusAddressNotAllowed || pl.phase != splicev1.PhaseRolledBack {
				t.Fatalf("phase %s reason %s (%s); want %s, rolled back", pl.phase, pl.progressing.Reason, pl.message,
					splicev1.ReasonPrometheusAddressNotAllowed)
			}
			if !strings.Contains(pl.message, "--prometheus-allowed-addresses") {
				t.Errorf("message %q does not name the flag to change", pl.message)
			}
			if n := hits.Load(); n != 0 {
				t.Fatalf("the server received %d requests; an address outside the allowlist must receive none", n)
			}
		})
	}
	// The same address, listed, is queried.
	for _, allowed := range [][]string{{addr}, {addr + "/"}, {strings.ToUpper(addr)}} {
		if pl := planWithProm(t, allowed, addr); pl.progressing.Reason == splicev1.ReasonPrometheusAddressNotAllowed || hits.Load() == 0 {
			t.Fatalf("allowed %q: reason %s (%s), %d requests; want the query run", allowed, pl.progressing.Reason, pl.message, hits.Load())
		}
	}
	if pl := planWithProm(t, []string{addr + "/prom"}, addr+"/prom/sub"); pl.progressing.Reason == splicev1.ReasonPrometheusAddressNotAllowed {
		t.Fatalf("a path under an allowed prefix is refused: %s", pl.message)
	}
}

// Whatever Prometheus answers never reaches status raw: the message holds a bounded, escaped
// summary, never the body's lines.
func TestPrometheusAnswerNotEchoed(t *testing.T) {
	long := strings.Repeat("SECRET line of the answer\n", 400)
	for _, tt := range []struct {
		name, contentType, body string
		code                    int
	}{
		{name: "plain-text error page", code: http.StatusInternalServerError, contentType: "text/plain", body: long},
		{name: "API error", code: http.StatusUnprocessableEntity, contentType: "application/json",
			body: `{"status":"error","errorType":"execution","error":` + jsonString(long) + `}`},
		{name: "error with a success code", code: http.StatusOK, contentType: "application/json",
			body: `{"status":"error","errorType":"bad_data","error":` + jsonString(long) + `}`},
		{name: "not JSON", code: http.StatusOK, contentType: "text/html", body: "<html>\n" + long},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addr, hits := promServer(t, tt.code, tt.contentType, tt.body)
			pl := planWithProm(t, []string{addr}, addr)
			if hits.Load() == 0 {
				t.Fatal("the allowed address was not queried")
			}
			if pl.progressing.Reason != splicev1.ReasonAnalysisPending {
				t.Fatalf("reason %s (%s); want %s", pl.progressing.Reason, pl.message, splicev1.ReasonAnalysisPending)
			}
			for _, s := range []string{pl.message, pl.progressing.Message} {
				if strings.Contains(s, "\n") || strings.Count(s, "SECRET") > 8 || len(s) > 1024 {
					t.Fatalf("the status message holds the answer raw (%d bytes): %q", len(s), s)
				}
			}
		})
	}
}

func jsonString(s string) string {
	return `"` + strings.ReplaceAll(s, "\n", `\n`) + `"`
}

func TestParsePrometheusAllowlist(t *testing.T) {
	for _, bad := range []string{"", "prometheus:9090", "ftp://p:21", "http://", "http://u:p@p:9090", "http://p:9090/?q=1", "http://p:9090/#f", "http://p :9090"} {
		if _, err := ParsePrometheusAllowlist([]string{bad}); err == nil || !strings.Contains(err.Error(), "--prometheus-allowed-addresses") {
			t.Errorf("%q: error %v; want a refusal naming the flag", bad, err)
		}
	}
	if _, err := ParsePrometheusAllowlist([]string{"http://prometheus.monitoring:9090", "https://thanos.example.com/prom"}); err != nil {
		t.Fatal(err)
	}
}

// An allowed Prometheus cannot send the query on elsewhere: a redirect is an answer, never
// followed.
func TestPrometheusRedirectNotFollowed(t *testing.T) {
	elsewhere, hits := promServer(t, http.StatusOK, "application/json", `{"status":"success","data":{"resultType":"scalar","result":[0,"0"]}}`)
	srv := httptest.NewServer(http.RedirectHandler(elsewhere+"/api/v1/query", http.StatusTemporaryRedirect))
	t.Cleanup(srv.Close)
	pl := planWithProm(t, []string{srv.URL}, srv.URL)
	if n := hits.Load(); n != 0 {
		t.Fatalf("the redirect was followed: %d requests elsewhere", n)
	}
	if pl.progressing.Reason != splicev1.ReasonAnalysisPending {
		t.Fatalf("reason %s (%s); want %s", pl.progressing.Reason, pl.message, splicev1.ReasonAnalysisPending)
	}
}
