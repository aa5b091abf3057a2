package controllers

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Build metrics, served on the manager's metrics endpoint. Each build is counted once: when
// its outcome is first recorded on its Job (AnnotationBuildRecord), which an optimistic-lock
// update makes happen exactly once, whatever the number of reconciles and replicas.
var (
	// buildDuration is how long build Jobs ran, from the Job's start to its completion or
	// failure, by result (succeeded, failed).
	buildDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "splice_build_duration_seconds",
		Help: "Duration of plugin build Jobs, from start to completion or failure, by result.",
		// A warm cached build takes seconds; a cold one with module downloads minutes; the
		// default deadline is 30 minutes.
		Buckets: []float64{5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600},
	}, []string{"result"})

	// buildResults counts outcomes: for git sources result is succeeded or failed, for
	// artifact sources resolved or refused; reason is the Built condition's reason.
	buildResults = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "splice_build_results_total",
		Help: "Plugin build and artifact resolution outcomes, by source (git, artifact), result and reason.",
	}, []string{"source", "result", "reason"})
)

func init() {
	metrics.Registry.MustRegister(buildDuration, buildResults)
}
