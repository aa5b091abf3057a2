package sidecar

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/host/control"
)

// Handler serves /readyz, /livez and, when g is not nil, /metrics from g.
//
// /readyz answers 200 when the host was built with the Go release the pod's
// splice.dev/go-version annotation names (when it names one) and serves the pod's desired
// target, or, while that target is still being brought in (no terminal report for it yet),
// goes on serving a plugin; with no target desired, when it serves any plugin. It follows the
// plugin-ready condition's rule (splicev1.PodConditionPluginReady). The webhook points the
// agent container's readiness probe at it.
//
// /livez answers 200 when the host answers its control socket within the probe timeout and
// no load, swap or route has been waiting on it past --wedge-after. The pod's containers share
// a network namespace, so a liveness probe on the app container can point at it: the kubelet
// then restarts the host, which is what helps when the host is wedged.
func (a *Agent) Handler(g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(PathReadyz, a.readyz)
	mux.HandleFunc(PathLivez, a.livez)
	if g != nil {
		mux.Handle(PathMetrics, promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	}
	return mux
}

func (a *Agent) readyz(w http.ResponseWriter, r *http.Request) {
	pod := a.pod.Load()
	if pod == nil {
		probeAnswer(w, false, "the agent has not read its pod yet")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.opts.ProbeTimeout)
	defer cancel()
	st, err := a.sw.Status(ctx)
	if err != nil {
		probeAnswer(w, false, err.Error())
		return
	}
	ok, why := Readiness(pod.Annotations, st)
	probeAnswer(w, ok, why)
}

func (a *Agent) livez(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), a.opts.ProbeTimeout)
	defer cancel()
	if _, err := a.sw.Status(ctx); err != nil {
		probeAnswer(w, false, err.Error())
		return
	}
	if d := a.sw.BusyFor(); d > a.opts.WedgeAfter {
		probeAnswer(w, false, fmt.Sprintf("the host has not answered a load/swap/route request for %v (bound %v): it is wedged", d.Round(1e9), a.opts.WedgeAfter))
		return
	}
	probeAnswer(w, true, "the host answers its control socket")
}

func probeAnswer(w http.ResponseWriter, ok bool, why string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	io.WriteString(w, why+"\n")
}

// Readiness is /readyz's decision from the pod's annotations and the host's status.
func Readiness(ann map[string]string, st *control.Status) (bool, string) {
	if want := ann[splicev1.AnnotationGoVersion]; want != "" {
		if got := goRelease(st.HostGoVersion); got != goRelease(want) {
			return false, fmt.Sprintf("the host was built with %s; the pod's CompilerVersion pins %s (annotation %s): rebuild the app with that release",
				got, goRelease(want), splicev1.AnnotationGoVersion)
		}
	}
	t, desired, err := TargetFromAnnotations(ann)
	switch {
	case !desired && st.Current == "":
		return false, "no desired artifact, and the host serves no plugin"
	case !desired:
		return true, "no desired artifact; the host serves " + st.Current
	case err != nil:
		return false, err.Error()
	case !Satisfied(t, st):
		if st.Current != "" && inProgress(t, ann) {
			return true, fmt.Sprintf("the host serves %s while %s is brought in", st.Current, t)
		}
		return false, fmt.Sprintf("the host serves %q (canary %q at %d%%), not the desired %s", st.Current, st.Canary, st.CanaryPercent, t)
	}
	return true, "the host serves " + t.String()
}

// inProgress reports whether the pod's report leaves target t still to be brought in: no
// report, a report about another target, or one in a state that is not terminal.
func inProgress(t Target, ann map[string]string) bool {
	raw, ok := ann[splicev1.AnnotationReport]
	if !ok {
		return true
	}
	r, err := splicev1.DecodeReport(raw)
	return err != nil || !sameTarget(t, r) || !r.State.Terminal()
}

// goRelease normalizes "go1.26.8", "1.26.8" and "go1.26.8 X:exp" to "go1.26.8".
func goRelease(v string) string {
	f := strings.Fields(v)
	if len(f) == 0 {
		return ""
	}
	if !strings.HasPrefix(f[0], "go") {
		return "go" + f[0]
	}
	return f[0]
}
