package sidecar

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/splice-dev/splice/host/control"
)

// Load results (the result label of splice_agent_loads_total).
const (
	LoadSuccess      = "success"      // the host loaded the plugin
	LoadIncompatible = "incompatible" // the agent refused it (preflight, plugin API step); nothing was loaded
	LoadFailed       = "failed"       // the host refused or failed the load
)

// Metrics are the agent's Prometheus metrics. The host's own figures (versions, counters, RSS)
// are exported from the last status the agent read, so a scrape never waits on the host.
type Metrics struct {
	Loads            *prometheus.CounterVec
	SymbolErrors     prometheus.Counter
	PreflightRefused *prometheus.CounterVec
	SwapLatency      prometheus.Histogram
	PullDuration     prometheus.Histogram
	PreflightTime    prometheus.Histogram
	Rollbacks        prometheus.Counter

	mu     sync.Mutex
	status *control.Status
}

// NewMetrics creates the metrics and registers them with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Loads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "splice_agent_loads_total",
			Help: "Plugin loads the agent attempted, by result (success, incompatible: refused by the agent's preflight or plugin API check, failed: refused or failed by the host).",
		}, []string{"result"}),
		SymbolErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "splice_agent_symbol_lookup_errors_total",
			Help: "Loads that failed because the plugin lacks the constructor or API version symbol, or one has the wrong type.",
		}),
		PreflightRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "splice_agent_preflight_refusals_total",
			Help: "Plugins the preflight refused, by reason (one count per distinct reason of a verdict).",
		}, []string{"reason"}),
		SwapLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "splice_agent_swap_latency_seconds",
			Help:    "Time from the agent asking the host to load (or swap, or route) to the new version serving.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		PullDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "splice_agent_pull_duration_seconds",
			Help:    "Time to pull and verify a plugin artifact (including reuse of a file already there).",
			Buckets: prometheus.ExponentialBuckets(.005, 2.5, 10),
		}),
		PreflightTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "splice_agent_preflight_duration_seconds",
			Help:    "Time to read build facts and run the preflight before a load.",
			Buckets: prometheus.ExponentialBuckets(.001, 2.5, 10),
		}),
		Rollbacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "splice_agent_rollbacks_observed_total",
			Help: "Desired versions the agent saw the host stop serving (automatic rollback or another client).",
		}),
	}
	for _, r := range []string{LoadSuccess, LoadIncompatible, LoadFailed} {
		m.Loads.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.Loads, m.SymbolErrors, m.PreflightRefused, m.SwapLatency, m.PullDuration, m.PreflightTime, m.Rollbacks, (*hostCollector)(m))
	}
	return m
}

// observeStatus records the host's latest status for the host collector.
func (m *Metrics) observeStatus(st *control.Status) {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.status = st
	m.mu.Unlock()
}

// hostCollector exports the host's figures from the last status read.
type hostCollector Metrics

var (
	descHostUp       = prometheus.NewDesc("splice_host_up", "1 when the host answered its last status request on the control socket.", nil, nil)
	descHostVersions = prometheus.NewDesc("splice_host_loaded_versions", "Plugin files the host has opened in its current image, failed ones included (memory never given back).", nil, nil)
	descHostRSS      = prometheus.NewDesc("splice_host_rss_bytes", "The host's resident set size.", nil, nil)
	descHostBaseRSS  = prometheus.NewDesc("splice_host_baseline_rss_bytes", "The host's RSS before it opened any plugin in its current image.", nil, nil)
	descCalls        = prometheus.NewDesc("splice_host_plugin_calls_total", "Calls made through the host library, per plugin version.", []string{"digest"}, nil)
	descErrors       = prometheus.NewDesc("splice_host_plugin_errors_total", "Calls that returned an error, per plugin version.", []string{"digest"}, nil)
	descPanics       = prometheus.NewDesc("splice_host_plugin_panics_total", "Plugin panics recovered by the host library, per plugin version.", []string{"digest"}, nil)
)

func (c *hostCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descHostUp, descHostVersions, descHostRSS, descHostBaseRSS, descCalls, descErrors, descPanics} {
		ch <- d
	}
}

func (c *hostCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	st := c.status
	c.mu.Unlock()
	if st == nil {
		ch <- prometheus.MustNewConstMetric(descHostUp, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(descHostUp, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(descHostVersions, prometheus.GaugeValue, float64(st.LoadedVersions))
	ch <- prometheus.MustNewConstMetric(descHostRSS, prometheus.GaugeValue, float64(st.RSSBytes))
	ch <- prometheus.MustNewConstMetric(descHostBaseRSS, prometheus.GaugeValue, float64(st.BaselineRSSBytes))
	for _, v := range st.Versions {
		ch <- prometheus.MustNewConstMetric(descCalls, prometheus.CounterValue, float64(v.Calls), v.Digest)
		ch <- prometheus.MustNewConstMetric(descErrors, prometheus.CounterValue, float64(v.Errors), v.Digest)
		ch <- prometheus.MustNewConstMetric(descPanics, prometheus.CounterValue, float64(v.Panics), v.Digest)
	}
}
