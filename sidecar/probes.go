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
// /readyz answers 200 while the host serves a plugin version — the desired one, the one it
// keeps while a new one is brought in, or the one it kept or returned to when a newer one was
// refused, rolled back or crashed it — and 503 when it serves none or does not answer. The
// answer's text says which, and what became of the desired artifact; a host built with another
// Go release than the pod's splice.dev/go-version annotation names is named there too, and stays
// ready (it serves its version correctly; Strict's eviction deals with it). It follows the
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

// Readiness is /readyz's decision from the pod's annotations and the host's status: ready
// while the host serves a plugin version, whatever became of the desired artifact (see
// Handler). The text says what serves and why the desired artifact does not, when it does not.
func Readiness(ann map[string]string, st *control.Status) (bool, string) {
	why := servingText(ann, st)
	if want := ann[splicev1.AnnotationGoVersion]; want != "" {
		if got := goRelease(st.HostGoVersion); got != goRelease(want) {
			why += fmt.Sprintf("; the host was built with %s, and the pod's CompilerVersion pins %s (annotation %s): rebuild the app with that release",
				got, goRelease(want), splicev1.AnnotationGoVersion)
		}
	}
	return st.Current != "", why
}

// servingText says what the host serves, against the pod's desired target.
func servingText(ann map[string]string, st *control.Status) string {
	t, desired, err := TargetFromAnnotations(ann)
	serves := "the host serves " + st.Current
	if st.Current == "" {
		serves = "the host serves no plugin"
	}
	switch {
	case !desired && st.Current == "":
		return "no desired artifact, and the host serves no plugin"
	case !desired:
		return "no desired artifact; the host serves " + st.Current
	case err != nil:
		return serves + "; the desired-state annotations are refused: " + err.Error()
	case Satisfied(t, st):
		return "the host serves " + t.String()
	}
	switch r := reportFor(t, ann); {
	case r != nil && r.State.Failure():
		return fmt.Sprintf("%s; %s %s: %s: %s", serves, t.Digest, refusedVerb(r.State), r.Reason, r.Error)
	case r != nil && r.State == splicev1.SwapReady:
		return fmt.Sprintf("%s (canary %q at %d%%), no longer the desired %s", serves, st.Canary, st.CanaryPercent, t)
	}
	return fmt.Sprintf("%s while %s is brought in", serves, t)
}

// reportFor is the pod's report when it is about target t, else nil.
func reportFor(t Target, ann map[string]string) *splicev1.PodReport {
	raw, ok := ann[splicev1.AnnotationReport]
	if !ok {
		return nil
	}
	r, err := splicev1.DecodeReport(raw)
	if err != nil || !sameTarget(t, r) {
		return nil
	}
	return r
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
