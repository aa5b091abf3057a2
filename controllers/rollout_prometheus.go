package controllers

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

// promTimeout bounds one analysis query, so a slow Prometheus cannot hold a reconcile.
const promTimeout = 10 * time.Second

// promRetry is how soon an analysis that could not be evaluated is tried again.
const promRetry = 15 * time.Second

// promResult is the outcome of one Prometheus analysis query.
type promResult struct {
	value float64
	err   error
}

// expandQuery fills the placeholders a query may use.
func expandQuery(q string, cv *splicev1.CompilerVersion, digest string) string {
	return strings.NewReplacer("{{digest}}", digest, "{{namespace}}", cv.Namespace, "{{name}}", cv.Name).Replace(q)
}

// queryPrometheus runs an instant query and returns its single number: a scalar, or a vector
// of exactly one sample. Anything else is an error that says what the query returned.
func queryPrometheus(ctx context.Context, address, query string, at time.Time) (float64, error) {
	c, err := promapi.NewClient(promapi.Config{Address: address})
	if err != nil {
		return 0, fmt.Errorf("prometheus client for %s: %w", address, err)
	}
	ctx, cancel := context.WithTimeout(ctx, promTimeout)
	defer cancel()
	v, _, _, err := promv1.NewAPI(c).Query(ctx, query, at)
	if err != nil {
		return 0, fmt.Errorf("query %s: %w", address, err)
	}
	switch r := v.(type) {
	case *model.Scalar:
		return float64(r.Value), nil
	case model.Vector:
		if len(r) != 1 {
			return 0, fmt.Errorf("query %q returned %d series; it must return exactly one number", query, len(r))
		}
		return float64(r[0].Value), nil
	default:
		return 0, fmt.Errorf("query %q returned a %s; it must return a scalar or a one-element vector", query, v.Type())
	}
}

// evaluatePrometheus runs the current canary step's Prometheus analysis when the plan will need
// it: the rollout is on a canary step that has one. The result feeds the pure plan.
func (r *CompilerVersionReconciler) evaluatePrometheus(ctx context.Context, s *scope, art *splicev1.ArtifactStatus) *promResult {
	cv := s.cv
	if art == nil || cv.Spec.Strategy.Type != splicev1.StrategyCanary || cv.Spec.Strategy.Canary == nil ||
		cv.Status.CurrentStepIndex == nil || cv.Status.RolloutDigest != art.Digest {
		return nil
	}
	i := int(*cv.Status.CurrentStepIndex)
	steps := cv.Spec.Strategy.Canary.Steps
	if i >= len(steps) || steps[i].Analysis == nil || steps[i].Analysis.Prometheus == nil {
		return nil
	}
	// Query only once every pod told to run the artifact serves it: before that the plan waits
	// for the swaps anyway, and each pod event would cost a query.
	for _, pod := range s.pods {
		if pod.onArtifact(art) && !pod.done(art, pod.target.Traffic) {
			return nil
		}
	}
	p := steps[i].Analysis.Prometheus
	v, err := queryPrometheus(ctx, p.Address, expandQuery(p.Query, cv, art.Digest), r.Clock.Now())
	return &promResult{value: v, err: err}
}

// promVerdict judges a step's Prometheus analysis: fail with a reason and message, wait (the
// result is not there yet), or pass.
func promVerdict(a *splicev1.PrometheusAnalysis, res *promResult) (fail bool, wait bool, msg string) {
	if res == nil {
		return false, true, "waiting for the Prometheus analysis"
	}
	if res.err != nil {
		return false, true, fmt.Sprintf("the Prometheus analysis could not run (retrying): %v", res.err)
	}
	maxValue, err := strconv.ParseFloat(a.MaxValue, 64)
	if err != nil {
		return true, false, fmt.Sprintf("prometheus.maxValue %q is not a number", a.MaxValue)
	}
	if res.value > maxValue {
		return true, false, fmt.Sprintf("Prometheus query %q returned %g, more than maxValue %s", a.Query, res.value, a.MaxValue)
	}
	return false, false, ""
}
