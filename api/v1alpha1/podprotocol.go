package v1alpha1

import (
	"cmp"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/splice-dev/splice/host/control"
)

// The pod protocol: how the rollout controller, the admission webhook and the agent sidecar talk
// through the Pod object itself. The controller writes the desired state into annotations; the
// agent, which may only get/watch/patch its own pod, answers with a report annotation and the
// plugin-ready condition that backs the readiness gate.
const (
	// LabelInject opts a pod ("true") or a namespace ("true") into agent injection; "false" on a
	// pod opts it out even inside an opted-in namespace.
	LabelInject = "splice.dev/inject"

	// AnnotationDesiredArtifact is written by the rollout controller: the artifact the pod must
	// run, as an OCI reference pinned by digest ("registry/repo@sha256:<64 hex>").
	AnnotationDesiredArtifact = "splice.dev/desired-artifact"
	// AnnotationStableArtifact is written by the rollout controller next to the desired artifact
	// while a request-level canary runs: the version that keeps the rest of the traffic.
	AnnotationStableArtifact = "splice.dev/stable-artifact"
	// AnnotationTrafficPercent is the share (0-100) of in-pod requests the desired artifact
	// receives while the stable one is still loaded; absent means 100.
	AnnotationTrafficPercent = "splice.dev/traffic-percent"
	// AnnotationCountersInterval is set by the controller on the canary pods of a step whose
	// analysis judges their error rate: the agent writes its call counters at least this often
	// (a Go duration of 1s or more) rather than every --report-counters-interval, so that the
	// analysis judges fresh figures. Absent on every other pod.
	AnnotationCountersInterval = "splice.dev/counters-interval"
	// AnnotationAllowMinorAPIChange ("true") is set by the controller beside the desired
	// artifact when the managing CompilerVersion consents to a minor plugin API change
	// (spec.plugin.allowMinorAPIChange); absent, the agent refuses one. A patch change never
	// needs consent; a major change is never swapped in place.
	AnnotationAllowMinorAPIChange = "splice.dev/allow-minor-api-change"
	// AnnotationMaxLoadedVersions is spec.maxLoadedVersions, written by the controller beside
	// the desired artifact; the agent hands it to the host, whose own bound it replaces.
	AnnotationMaxLoadedVersions = "splice.dev/max-loaded-versions"
	// AnnotationCompilerVersion names the CompilerVersion that manages the pod.
	AnnotationCompilerVersion = "splice.dev/compiler-version"
	// AnnotationGoVersion is the Go release the managing CompilerVersion pins; the agent's
	// /readyz names a host built with another one in its answer (it stays ready while the host
	// serves a version: Strict's eviction deals with the mismatch).
	AnnotationGoVersion = "splice.dev/go-version"
	// AnnotationAppContainers lists (comma-separated) the containers that link the host library
	// and get the shared volume; the default is the pod's first container.
	AnnotationAppContainers = "splice.dev/app-containers"
	// AnnotationRegistrySecret names a Secret of type kubernetes.io/dockerconfigjson in the
	// pod's namespace with the credentials the agent pulls artifacts with (as imagePullSecrets
	// does for images). The webhook mounts it into the agent container only, never into the app
	// containers.
	AnnotationRegistrySecret = "splice.dev/registry-secret"
	// AnnotationReport is written by the agent: a JSON PodReport.
	AnnotationReport = "splice.dev/report"

	// PodConditionPluginReady backs the readiness gate the webhook injects. It means "the host
	// serves correctly": True while the host serves a plugin version, whatever became of a newer
	// desired artifact — still being brought in (Pending, Pulling, Swapping), or refused
	// (Incompatible, Failed, consent refused), rolled back by the host, or Crashed (the restarted
	// host serves its own version). A refused artifact shows in the report (state, reason,
	// error) and in this condition's reason (the report's state) and message ("the host serves
	// X; Y was refused: ..."), never as a hole in a Service: a first rollout or Strict moves
	// every pod at once, and one bad artifact must not take every endpoint out. It is False
	// only when the host serves no plugin at all (or does not answer): then nothing serves
	// correctly. That includes the first rollout into a host that started without a plugin:
	// when its first artifact is refused, the pod stays unready — it has nothing to serve.
	// Whether a pod runs the desired artifact is in its report, not in this condition.
	PodConditionPluginReady corev1.PodConditionType = "splice.dev/plugin-ready"

	// MaxReportBytes bounds the report annotation; the API server caps all annotations of an
	// object at 256 KiB together, and a report is a few hundred bytes.
	MaxReportBytes = 16 << 10
)

// SwapState is where a pod stands with its desired artifact.
type SwapState string

const (
	// SwapPending: the agent has seen the desired artifact and not yet started.
	SwapPending SwapState = "Pending"
	// SwapPulling: the artifact is being pulled and its digest verified.
	SwapPulling SwapState = "Pulling"
	// SwapIncompatible: the preflight predicts that plugin.Open would fail or load an unsupported
	// build (toolchain, GOAMD64, package hashes); nothing was loaded.
	SwapIncompatible SwapState = "Incompatible"
	// SwapSwapping: the host is loading and swapping.
	SwapSwapping SwapState = "Swapping"
	// SwapReady: the host serves the desired artifact.
	SwapReady SwapState = "Ready"
	// SwapFailed: the pull, the load or the swap failed; the host keeps serving what it had.
	SwapFailed SwapState = "Failed"
	// SwapRolledBack: the host swapped, then rolled back on its own (panics past its threshold).
	SwapRolledBack SwapState = "RolledBack"
	// SwapCrashed: the host process died (its container restarted) while it was opening or
	// routing calls to the artifact. The agent never has that pod's host load it again; the
	// rollout controller treats it as a failed swap. The report's reason is HostCrashed and its
	// error says how the app container ended, when the pod's status shows it.
	SwapCrashed SwapState = "Crashed"
)

var swapStates = map[SwapState]bool{
	SwapPending: true, SwapPulling: true, SwapIncompatible: true, SwapSwapping: true,
	SwapReady: true, SwapFailed: true, SwapRolledBack: true, SwapCrashed: true,
}

// Terminal reports whether the state is an outcome (no further progress without a new desired
// artifact).
func (s SwapState) Terminal() bool {
	switch s {
	case SwapIncompatible, SwapReady, SwapFailed, SwapRolledBack, SwapCrashed:
		return true
	}
	return false
}

// Failure reports whether the state is an outcome that refuses its artifact: the preflight or
// the host refused it, the host rolled it back, or the host died running it.
func (s SwapState) Failure() bool { return s.Terminal() && s != SwapReady }

// RuntimeSnapshot is a host's runtime/metrics reading, taken around a swap.
// +kubebuilder:object:generate=true
type RuntimeSnapshot struct {
	// gcCycles is /gc/cycles/total:gc-cycles.
	GCCycles uint64 `json:"gcCycles"`
	// heapLiveBytes is /gc/heap/live:bytes.
	HeapLiveBytes uint64 `json:"heapLiveBytes"`
	// heapGoalBytes is /gc/heap/goal:bytes.
	HeapGoalBytes uint64 `json:"heapGoalBytes"`
	// scanGlobalsBytes is /gc/scan/globals:bytes: it grows with every plugin loaded.
	ScanGlobalsBytes uint64 `json:"scanGlobalsBytes"`
	// goroutines is /sched/goroutines:goroutines.
	Goroutines uint64 `json:"goroutines"`
	// gcPauses is the number of stop-the-world GC pauses counted in /sched/pauses/total/gc:seconds.
	GCPauses uint64 `json:"gcPauses"`
	// gcPauseP99Seconds is the 99th percentile of those pauses (bucket upper bound).
	GCPauseP99Seconds float64 `json:"gcPauseP99Seconds"`
	// rssBytes is the host's resident set size, from /proc/self/statm.
	RSSBytes uint64 `json:"rssBytes,omitempty"`
}

// PodReport is the JSON the agent writes into AnnotationReport.
// +kubebuilder:object:generate=false
type PodReport struct {
	// Artifact is the desired artifact this report is about (ref pinned by digest).
	Artifact string `json:"artifact"`
	// Digest is the artifact's manifest digest ("sha256:<64 hex>"). It is empty only in a
	// Failed report about a desired-artifact annotation that names no digest at all (a tag,
	// or garbage): the agent must still be able to say so.
	Digest string `json:"digest"`
	// State is where the pod stands with Artifact.
	State SwapState `json:"state"`
	// Reason is a CamelCase machine-readable cause for Incompatible, Failed, RolledBack and
	// Crashed (MinorAPIChangeNotAllowed and MajorAPIChange: the plugin API step was refused).
	Reason string `json:"reason,omitempty"`
	// Error is the human-readable failure, naming what to fix.
	Error string `json:"error,omitempty"`
	// Running is the digest the host serves now (may differ from Digest while failed).
	Running string `json:"running,omitempty"`
	// HostGoVersion is the Go release the host binary was built with ("go1.26.8").
	HostGoVersion string `json:"hostGoVersion,omitempty"`
	// SwapLatencySeconds is the time from the agent asking for the load to the new version
	// serving.
	SwapLatencySeconds float64 `json:"swapLatencySeconds,omitempty"`
	// Before and After are the host's runtime snapshots around the swap.
	Before *RuntimeSnapshot `json:"before,omitempty"`
	After  *RuntimeSnapshot `json:"after,omitempty"`
	// GCDuringSwap is true when a GC cycle completed between Before and After.
	GCDuringSwap bool `json:"gcDuringSwap,omitempty"`
	// LoadedVersions is how many plugin versions the host holds (nothing is ever unloaded).
	LoadedVersions int `json:"loadedVersions,omitempty"`
	// Calls, Errors and Panics count plugin calls made through the host library on one
	// version: Digest's while the host routes the canary share of calls to it (see
	// CountsDigest), else Running's.
	Calls  uint64 `json:"calls,omitempty"`
	Errors uint64 `json:"errors,omitempty"`
	Panics uint64 `json:"panics,omitempty"`
	// TrafficPercent is the share of in-pod requests the desired artifact receives while a
	// request-level canary routes between it and the stable artifact.
	TrafficPercent *int32 `json:"trafficPercent,omitempty"`
	// ObservedAt is when the agent wrote the report.
	ObservedAt metav1.Time `json:"observedAt"`
}

// CountsDigest reports whether the report's call counters are Digest's: the host serves Digest
// to every call (Running), or, in state Ready with a TrafficPercent above 0, to the canary share
// of calls while Running stays the stable artifact.
func (r *PodReport) CountsDigest() bool {
	if r.Digest == "" {
		return false
	}
	return r.Running == r.Digest || (r.State == SwapReady && r.TrafficPercent != nil && *r.TrafficPercent > 0)
}

var reasonRE = regexp.MustCompile(`^[A-Z][A-Za-z0-9]{0,63}$`)

// ValidReason reports whether s may be a report's reason: CamelCase, at most 64 characters.
func ValidReason(s string) bool { return reasonRE.MatchString(s) }

// DigestOf returns the digest of a pinned reference "repository@sha256:…" (the desired and
// stable artifact annotations, an artifact status's ref), or "" when it names none.
func DigestOf(ref string) string {
	if i := strings.LastIndex(ref, "@"); i >= 0 {
		return ref[i+1:]
	}
	return ""
}

// DigestPattern is the pattern every artifact digest must match. It is control.DigestPattern:
// the rule has one statement, in the one package that the host library, the builder and this
// API can all import.
const DigestPattern = control.DigestPattern

// ValidDigest reports whether d matches DigestPattern ("sha256:" and 64 lower-case hex digits).
func ValidDigest(d string) bool { return control.ValidDigest(d) }

// PinnedRefPattern is the pattern of a reference pinned by digest, "registry/repo@sha256:<64
// hex>" (a tag may come before the digest; the digest decides). It is the CRD's rule for
// spec.plugin.source.artifact (its marker repeats it as a literal, and TestCRDPatterns holds
// the two equal) and the syntax of the desired-state annotations' artifacts. The registry's
// full grammar is checked where an artifact is pulled.
const PinnedRefPattern = `^[^@\s]+@` + control.DigestExpr + `$`

var pinnedRefRE = regexp.MustCompile(PinnedRefPattern)

// ValidPinnedRef reports whether ref matches PinnedRefPattern.
func ValidPinnedRef(ref string) bool { return pinnedRefRE.MatchString(ref) }

// Validate checks a report as the controller must before trusting it: the agent runs in the
// user's pod, so the annotation is untrusted input.
func (r *PodReport) Validate() error {
	if !ValidDigest(r.Digest) && (r.Digest != "" || r.State != SwapFailed) {
		return fmt.Errorf("report.digest %q must match %s (it may be empty only when the state is Failed)", r.Digest, DigestPattern)
	}
	if !swapStates[r.State] {
		return fmt.Errorf("report.state %q must be one of Pending, Pulling, Incompatible, Swapping, Ready, Failed, RolledBack, Crashed", r.State)
	}
	if r.Reason != "" && !ValidReason(r.Reason) {
		return fmt.Errorf("report.reason %q must be CamelCase, at most 64 characters", r.Reason)
	}
	if r.Running != "" && !ValidDigest(r.Running) {
		return fmt.Errorf("report.running %q must match %s", r.Running, DigestPattern)
	}
	if r.SwapLatencySeconds < 0 || r.SwapLatencySeconds > float64(time.Hour/time.Second) {
		return fmt.Errorf("report.swapLatencySeconds %v must be between 0 and 3600", r.SwapLatencySeconds)
	}
	if r.TrafficPercent != nil && (*r.TrafficPercent < 0 || *r.TrafficPercent > 100) {
		return fmt.Errorf("report.trafficPercent %d must be between 0 and 100", *r.TrafficPercent)
	}
	if len(r.Error) > 4096 {
		return fmt.Errorf("report.error is %d bytes; at most 4096", len(r.Error))
	}
	return nil
}

// DecodeReport parses and validates the report annotation. It refuses oversized input, unknown
// fields and trailing data, so a malformed or hostile annotation never reaches status. It
// accepts only what Encode can write back: a report that validates and whose encoding fits
// MaxReportBytes too (the encoder escapes some characters longer than they may arrive).
func DecodeReport(s string) (*PodReport, error) {
	if len(s) > MaxReportBytes {
		return nil, fmt.Errorf("report is %d bytes; at most %d", len(s), MaxReportBytes)
	}
	var r PodReport
	if err := control.DecodeOne([]byte(s), &r); err != nil {
		return nil, fmt.Errorf("decode report: %w", err)
	}
	if _, err := r.Encode(); err != nil {
		return nil, err
	}
	return &r, nil
}

// Encode renders the report for the annotation.
func (r *PodReport) Encode() (string, error) {
	if err := r.Validate(); err != nil {
		return "", err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return "", err
	}
	if len(b) > MaxReportBytes {
		return "", fmt.Errorf("report is %d bytes; at most %d", len(b), MaxReportBytes)
	}
	return string(b), nil
}

// DesiredState is what the rollout controller asks of one pod, as the pod's desired-state
// annotations (AnnotationDesiredArtifact, AnnotationStableArtifact, AnnotationTrafficPercent and
// AnnotationCountersInterval) carry it. The controller writes it with Encode; the agent, the
// controller reading a pod back, the simulated agent and `kubectl splice` read it with
// ParseDesiredState, so all of them agree on what a pod was asked.
// +kubebuilder:object:generate=false
type DesiredState struct {
	// Artifact is the artifact the pod must run, pinned by digest. Empty: the pod is not
	// managed, and its host keeps what it runs.
	Artifact string
	// Stable is the artifact that takes the calls Artifact does not while a request-level
	// canary splits them; it is set exactly when Split is true.
	Stable string
	// TrafficPercent is Artifact's share of the pod's calls, 0-100; nil means all of them.
	TrafficPercent *int32
	// CountersInterval asks the agent to write its call counters at least this often, 1s or
	// more; 0 leaves the agent's own interval.
	CountersInterval time.Duration
	// AllowMinorAPIChange consents to Artifact declaring a minor plugin API change from what
	// the host serves (AnnotationAllowMinorAPIChange).
	AllowMinorAPIChange bool
	// MaxLoadedVersions is the bound the host re-execs at (AnnotationMaxLoadedVersions), 2-100;
	// 0 leaves the host's own.
	MaxLoadedVersions int32
}

// Split reports whether the state splits calls between Artifact and Stable: a traffic share
// below 100. A share of exactly 100 is no split.
func (d DesiredState) Split() bool { return d.TrafficPercent != nil && *d.TrafficPercent < 100 }

// ReasonInvalidDesiredArtifact is the reason of the Failed report an agent writes about
// desired-state annotations that ParseDesiredState (or the registry's reading of a reference)
// refuses; the report's error says what is wrong.
const ReasonInvalidDesiredArtifact = "InvalidDesiredArtifact"

// maxQuoted bounds how much of an annotation's value an error quotes: the annotation is input
// anyone who may edit the pod controls.
const maxQuoted = 200

// ParseDesiredState reads the desired-state annotations from a pod's annotations. Surrounding
// spaces are trimmed from every value. No desired artifact and no other desired-state
// annotation is the zero state (an unmanaged pod). It refuses, naming the annotation and what to
// write instead: an annotation that is present but empty; a desired or stable artifact not
// pinned by digest (PinnedRefPattern); a traffic percent that is not an integer from 0 to 100;
// a split (traffic below 100) without a stable artifact, a stable artifact without a split, or
// both naming the same digest; a counters interval that is not a Go duration of at least 1s;
// and any of them without a desired artifact. Even with an error, the state holds what could be
// read (the values trimmed; the traffic percent and interval when they are well-formed), so
// that the agent can report about the artifact it was asked for.
func ParseDesiredState(ann map[string]string) (DesiredState, error) {
	var d DesiredState
	var errArtifact, errStable, errTraffic, errInterval error
	d.Artifact, errArtifact = nonEmptyAnnotation(ann, AnnotationDesiredArtifact)
	d.Stable, errStable = nonEmptyAnnotation(ann, AnnotationStableArtifact)
	d.TrafficPercent, errTraffic = trafficAnnotation(ann)
	d.CountersInterval, errInterval = countersIntervalAnnotation(ann)
	var errMinor, errMax error
	d.AllowMinorAPIChange, errMinor = allowMinorAnnotation(ann)
	d.MaxLoadedVersions, errMax = maxLoadedAnnotation(ann)
	if err := cmp.Or(errArtifact, errTraffic, errStable, errInterval, errMinor, errMax); err != nil {
		return d, err
	}
	return d, d.Validate()
}

// Validate checks the state against ParseDesiredState's rules: what Validate refuses, Encode
// refuses to write and ParseDesiredState refuses to read.
func (d DesiredState) Validate() error {
	if d.Artifact == "" {
		if d.Stable != "" || d.TrafficPercent != nil || d.CountersInterval != 0 || d.AllowMinorAPIChange || d.MaxLoadedVersions != 0 {
			return fmt.Errorf("annotations %s, %s, %s, %s and %s go with %s, which is not set: name the desired artifact, or remove them",
				AnnotationStableArtifact, AnnotationTrafficPercent, AnnotationCountersInterval, AnnotationAllowMinorAPIChange,
				AnnotationMaxLoadedVersions, AnnotationDesiredArtifact)
		}
		return nil
	}
	if !ValidPinnedRef(d.Artifact) {
		return notPinned(AnnotationDesiredArtifact, d.Artifact)
	}
	if p := d.TrafficPercent; p != nil && (*p < 0 || *p > 100) {
		return fmt.Errorf("annotation %s is %d; want an integer from 0 to 100", AnnotationTrafficPercent, *p)
	}
	if err := d.validateSplit(); err != nil {
		return err
	}
	if d.CountersInterval != 0 && d.CountersInterval < time.Second {
		return fmt.Errorf("annotation %s is %s; want a Go duration of 1s or more, such as 10s", AnnotationCountersInterval, d.CountersInterval)
	}
	if m := d.MaxLoadedVersions; m != 0 && (m < MinMaxLoadedVersions || m > MaxMaxLoadedVersions) {
		return fmt.Errorf("annotation %s is %d; want an integer from %d to %d", AnnotationMaxLoadedVersions, m, MinMaxLoadedVersions, MaxMaxLoadedVersions)
	}
	return nil
}

// validateSplit checks that the stable artifact comes with a split, and only with one.
func (d DesiredState) validateSplit() error {
	switch {
	case d.Split() && d.Stable == "":
		return fmt.Errorf("annotation %s is %d but %s is not set: a traffic split needs the stable artifact that keeps the other %d%%",
			AnnotationTrafficPercent, *d.TrafficPercent, AnnotationStableArtifact, 100-*d.TrafficPercent)
	case d.Stable == "":
		return nil
	case !d.Split():
		return fmt.Errorf("annotation %s is set but %s does not split the calls (absent, or 100): the stable artifact only serves a traffic split; remove it, or set a share below 100",
			AnnotationStableArtifact, AnnotationTrafficPercent)
	case !ValidPinnedRef(d.Stable):
		return notPinned(AnnotationStableArtifact, d.Stable)
	case DigestOf(d.Stable) == DigestOf(d.Artifact):
		return fmt.Errorf("annotations %s and %s name the same digest %s; a traffic split needs two artifacts",
			AnnotationDesiredArtifact, AnnotationStableArtifact, DigestOf(d.Artifact))
	}
	return nil
}

// Encode returns the annotation values that carry d, as a JSON merge patch of the pod's
// annotations wants them: every desired-state annotation, with its value, or nil where d leaves
// it unset (the patch removes it). It refuses a state Validate refuses, so that no pod is asked
// for what its agent would reject. ParseDesiredState reads back exactly d.
func (d DesiredState) Encode() (map[string]*string, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	out := map[string]*string{
		AnnotationDesiredArtifact: nil, AnnotationStableArtifact: nil,
		AnnotationTrafficPercent: nil, AnnotationCountersInterval: nil,
		AnnotationAllowMinorAPIChange: nil, AnnotationMaxLoadedVersions: nil,
	}
	set := func(key, value string) {
		if value != "" {
			out[key] = &value
		}
	}
	set(AnnotationDesiredArtifact, d.Artifact)
	set(AnnotationStableArtifact, d.Stable)
	if d.TrafficPercent != nil {
		set(AnnotationTrafficPercent, strconv.Itoa(int(*d.TrafficPercent)))
	}
	if d.CountersInterval != 0 {
		set(AnnotationCountersInterval, d.CountersInterval.String())
	}
	if d.AllowMinorAPIChange {
		set(AnnotationAllowMinorAPIChange, "true")
	}
	if d.MaxLoadedVersions != 0 {
		set(AnnotationMaxLoadedVersions, strconv.Itoa(int(d.MaxLoadedVersions)))
	}
	return out, nil
}

// nonEmptyAnnotation is an annotation's trimmed value; present and blank is an error (a merge
// patch removes an annotation, it never blanks it).
func nonEmptyAnnotation(ann map[string]string, key string) (string, error) {
	v, ok := ann[key]
	v = strings.TrimSpace(v)
	if ok && v == "" {
		return "", fmt.Errorf("annotation %s is set but empty: give it a value, or remove it", key)
	}
	return v, nil
}

func trafficAnnotation(ann map[string]string) (*int32, error) {
	raw, ok := ann[AnnotationTrafficPercent]
	if !ok {
		return nil, nil
	}
	p, err := strconv.ParseInt(strings.TrimSpace(raw), 10, 32)
	if err != nil || p < 0 || p > 100 {
		return nil, fmt.Errorf("annotation %s is %q; want an integer from 0 to 100", AnnotationTrafficPercent, control.Truncate(raw, maxQuoted))
	}
	v := int32(p)
	return &v, nil
}

func countersIntervalAnnotation(ann map[string]string) (time.Duration, error) {
	raw, ok := ann[AnnotationCountersInterval]
	if !ok {
		return 0, nil
	}
	d, err := time.ParseDuration(strings.TrimSpace(raw))
	if err != nil || d < time.Second {
		return 0, fmt.Errorf("annotation %s is %q; want a Go duration of 1s or more, such as 10s", AnnotationCountersInterval, control.Truncate(raw, maxQuoted))
	}
	return d, nil
}

// allowMinorAnnotation reads AnnotationAllowMinorAPIChange: "true", or absent. Anything else
// (including "false", which a merge patch never needs to write) is refused, so that a typo never
// reads as consent or as its absence.
func allowMinorAnnotation(ann map[string]string) (bool, error) {
	raw, ok := ann[AnnotationAllowMinorAPIChange]
	if !ok {
		return false, nil
	}
	if strings.TrimSpace(raw) != "true" {
		return false, fmt.Errorf("annotation %s is %q; want \"true\", or remove it to refuse minor API changes", AnnotationAllowMinorAPIChange, control.Truncate(raw, maxQuoted))
	}
	return true, nil
}

func maxLoadedAnnotation(ann map[string]string) (int32, error) {
	raw, ok := ann[AnnotationMaxLoadedVersions]
	if !ok {
		return 0, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(raw), 10, 32)
	if err != nil || n < int64(MinMaxLoadedVersions) || n > int64(MaxMaxLoadedVersions) {
		return 0, fmt.Errorf("annotation %s is %q; want an integer from %d to %d", AnnotationMaxLoadedVersions, control.Truncate(raw, maxQuoted), MinMaxLoadedVersions, MaxMaxLoadedVersions)
	}
	return int32(n), nil
}

func notPinned(key, ref string) error {
	return fmt.Errorf("annotation %s is %q; want a reference pinned by digest, registry/repo@sha256:<64 lower-case hex>", key, control.Truncate(ref, maxQuoted))
}
