package controllers

import (
	"context"
	"errors"
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

// promQuery is a canary step's Prometheus analysis, with the step it belongs to.
type promQuery struct {
	step     int32
	analysis *splicev1.PrometheusAnalysis
}

// promResult is the outcome of one Prometheus analysis query.
type promResult struct {
	// step is the canary step whose query this answers; the plan judges no other step by it.
	step  int32
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
	c, err := promapi.NewClient(promapi.Config{Address: address, Client: noRedirects})
	if err != nil {
		return 0, fmt.Errorf("prometheus client for %s: %w", address, err)
	}
	ctx, cancel := context.WithTimeout(ctx, promTimeout)
	defer cancel()
	v, _, _, err := promv1.NewAPI(c).Query(ctx, query, at)
	if err != nil {
		return 0, fmt.Errorf("query %s: %s", address, promErrorSummary(err))
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

// prometheusDue returns the Prometheus query the plan of in consults, or nil: the one whose
// gate the plan reaches, found by planning without a result. The query therefore runs exactly
// when every gate before it lets its step through, the members-swapped gate included (each
// member at the share of calls the step plans), and never while the plan stops sooner (swaps
// under way, a failure, a pause by annotation, an abort): each pod event would cost a query.
func prometheusDue(in *rolloutInput) *promQuery {
	if !queriesPrometheus(in.strategy) {
		return nil // most rollouts: no second plan to find out
	}
	probe := *in
	probe.prom = nil
	return plan(&probe).promWanted
}

// queriesPrometheus reports whether any canary step of the strategy has a Prometheus analysis.
func queriesPrometheus(st splicev1.RolloutStrategy) bool {
	if st.Type != splicev1.StrategyCanary || st.Canary == nil {
		return false
	}
	for _, step := range st.Canary.Steps {
		if step.Analysis != nil && step.Analysis.Prometheus != nil {
			return true
		}
	}
	return false
}

// runPrometheus runs the query the plan of in consults (prometheusDue), if any; the result is
// in.prom for plan to judge. A query that cannot run is a result too: the plan waits and the
// query runs again after promRetry. A query to an address outside r.PrometheusAllowlist is
// never sent: its result fails the step (PrometheusAddressNotAllowed).
func (r *CompilerVersionReconciler) runPrometheus(ctx context.Context, cv *splicev1.CompilerVersion, in *rolloutInput) *promResult {
	q := prometheusDue(in)
	if q == nil {
		return nil
	}
	if !r.PrometheusAllowlist.Allows(q.analysis.Address) {
		return &promResult{step: q.step, err: &errPromAddressNotAllowed{address: q.analysis.Address}}
	}
	v, err := queryPrometheus(ctx, q.analysis.Address, expandQuery(q.analysis.Query, cv, in.artifact.Digest), in.now)
	return &promResult{step: q.step, value: v, err: err}
}

// promVerdict judges a step's Prometheus analysis by its result: it fails the step when the
// result is over maxValue (or maxValue is no number), waits while there is no result or the
// query could not run, asking to be planned again after promRetry, and passes otherwise (nil).
func promVerdict(a *splicev1.PrometheusAnalysis, res *promResult) *verdict {
	wait := func(msg string) *verdict {
		return &verdict{kind: verdictWait, reason: splicev1.ReasonAnalysisPending, requeueAfter: promRetry, msg: msg}
	}
	fail := func(msg string) *verdict {
		return &verdict{kind: verdictFail, reason: splicev1.ReasonAnalysisFailed, msg: msg}
	}
	if res == nil {
		return wait("waiting for the Prometheus analysis")
	}
	var notAllowed *errPromAddressNotAllowed
	if errors.As(res.err, &notAllowed) {
		return &verdict{kind: verdictFail, reason: splicev1.ReasonPrometheusAddressNotAllowed, msg: notAllowed.Error()}
	}
	if res.err != nil {
		return wait(fmt.Sprintf("the Prometheus analysis could not run (retrying): %v", res.err))
	}
	maxValue, err := strconv.ParseFloat(a.MaxValue, 64)
	if err != nil {
		return fail(fmt.Sprintf("prometheus.maxValue %q is not a number", a.MaxValue))
	}
	if res.value > maxValue {
		return fail(fmt.Sprintf("Prometheus query %q returned %g, more than maxValue %s", a.Query, res.value, a.MaxValue))
	}
	return nil
}
