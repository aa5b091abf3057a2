package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// CompilerVersionSpec pins a Go toolchain, the plugin built with it, the pods that run it and how
// the plugin is rolled out to them.
//
// +kubebuilder:validation:XValidation:rule="!has(self.plugin.source.git) || has(self.plugin.package)",message="spec.plugin.package is required with spec.plugin.source.git: name the plugin's main package directory in the repository, e.g. ./plugins/greeter",fieldPath=".plugin.package"
// +kubebuilder:validation:XValidation:rule="!has(self.plugin.source.git) || has(self.plugin.repository)",message="spec.plugin.repository is required with spec.plugin.source.git: name the OCI repository the built artifact is pushed to, e.g. registry.example.com/team/greeter-plugin",fieldPath=".plugin.repository"
type CompilerVersionSpec struct {
	// goVersion is the exact Go release every plugin and every targeted host must be built with,
	// such as "1.26.8". Go loads plugins only into hosts built by the identical toolchain, so a
	// minor version ("1.26"), a "go" prefix or "latest" is refused.
	// +required
	// +kubebuilder:validation:MinLength=5
	// +kubebuilder:validation:MaxLength=16
	// +kubebuilder:validation:XValidation:rule="self.matches('^1\\\\.(0|[1-9][0-9]*)\\\\.(0|[1-9][0-9]*)$')",message="spec.goVersion must be an exact Go release such as 1.26.8 (not 1.26, go1.26.8 or latest)"
	GoVersion string `json:"goVersion"`

	// plugin says where the plugin comes from and how hosts find it.
	// +required
	Plugin PluginSpec `json:"plugin"`

	// selector selects the pods, in this CompilerVersion's namespace, whose hosts load the plugin.
	// It must not be empty: an empty selector would target every pod in the namespace.
	// +required
	// +kubebuilder:validation:XValidation:rule="(has(self.matchLabels) && size(self.matchLabels) > 0) || (has(self.matchExpressions) && size(self.matchExpressions) > 0)",message="spec.selector must not be empty: set matchLabels or matchExpressions to the labels of the pods that load this plugin"
	Selector metav1.LabelSelector `json:"selector"`

	// The default type is DefaultStrategyType, repeated as a literal in both default markers
	// (this one and RolloutStrategy.Type's) for controller-gen; TestCRDDefaults holds them equal.

	// strategy is how the plugin reaches the selected pods.
	// +optional
	// +kubebuilder:default={type: RollingPatch}
	Strategy RolloutStrategy `json:"strategy,omitempty"`

	// The default is DefaultMaxLoadedVersions, repeated as a literal in the marker for
	// controller-gen; TestCRDDefaults holds them equal.

	// maxLoadedVersions is how many plugin versions a host may hold before it re-execs itself
	// (same PID, listeners handed over) and loads only the current one and the one it would
	// roll back to. Go never unloads a plugin: each version costs about 1.4 MB of RSS and
	// memory every GC cycle scans. It reaches every targeted host through its pod (annotation
	// splice.dev/max-loaded-versions) and replaces the bound the application set.
	// +optional
	// +kubebuilder:default=8
	// +kubebuilder:validation:Minimum=2
	// +kubebuilder:validation:Maximum=100
	MaxLoadedVersions *int32 `json:"maxLoadedVersions,omitempty"`
}

// PluginSpec describes the plugin.
type PluginSpec struct {
	// source is where the plugin comes from: a git revision that Splice builds, or an artifact
	// that is already built.
	// +required
	Source PluginSource `json:"source"`

	// package is the directory of the plugin's main package inside the git repository, relative
	// to its root (for example "./plugins/greeter"). Required with a git source.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('/') && !self.contains('..')",message="spec.plugin.package must be a path inside the repository, relative to its root, without '..' (e.g. ./plugins/greeter)"
	Package string `json:"package,omitempty"`

	// The default is DefaultSymbol, repeated as a literal in the marker for controller-gen;
	// TestCRDDefaults holds them equal.

	// symbol is the exported name the host looks up in the plugin (plugin.Lookup).
	// +optional
	// +kubebuilder:default=Plugin
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Z][A-Za-z0-9_]*$')",message="spec.plugin.symbol must be an exported Go identifier such as Plugin"
	Symbol string `json:"symbol,omitempty"`

	// apiVersion is the semantic version of the contract between host and plugin (the shared
	// interface package), such as "1.4.0". RollingPatch refuses a change of major version.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^v?(0|[1-9][0-9]*)\\\\.(0|[1-9][0-9]*)\\\\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$')",message="spec.plugin.apiVersion must be a semantic version such as 1.4.0"
	APIVersion string `json:"apiVersion,omitempty"`

	// tags are the build tags the plugin is built with. Hosts and plugins must agree on tags that
	// add files to shared packages.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=64
	// +kubebuilder:validation:items:Pattern=`^[A-Za-z0-9_.]+$`
	Tags []string `json:"tags,omitempty"`

	// repository is the OCI repository built artifacts are pushed to, without tag or digest (for
	// example "registry.example.com/team/greeter-plugin"). Required with a git source.
	// +optional
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]+([._-][a-z0-9]+)*(\\\\.[a-z0-9-]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)+$')",message="spec.plugin.repository must be an OCI repository such as registry.example.com/team/plugin, in lower case, without tag or digest"
	Repository string `json:"repository,omitempty"`

	// allowMinorAPIChange consents to rolling out an artifact whose declared apiVersion is a
	// minor change (1.4.x to 1.5.0) from the version a host serves. Without it such an
	// artifact is refused in every pod (the report says MinorAPIChangeNotAllowed) and the
	// hosts keep serving what they had. A patch change never needs consent; a major change is
	// never swapped in place (Strict recreates the pods from their template).
	// +optional
	AllowMinorAPIChange bool `json:"allowMinorAPIChange,omitempty"`

	// pushSecretRef names a Secret of type kubernetes.io/dockerconfigjson, in this namespace,
	// with credentials to push to repository. The Secret must carry the label
	// splice.dev/build-credentials=true (LabelBuildCredentials): a build uses only Secrets
	// their owner released to builds.
	// +optional
	PushSecretRef *LocalObjectReference `json:"pushSecretRef,omitempty"`

	// vulnerabilityPolicy decides what a known vulnerability the plugin calls does, as the
	// vulnerability scan (govulncheck in binary mode on the built plugin, against the
	// manager's database: --vuln-db, the chart's build.vulnDB) finds it. Warn (the default)
	// records the findings in status.artifact.vulnerabilities and rolls out. Block fails the
	// build (reason Vulnerable) and pushes nothing; it also refuses a build when the manager
	// has no database, and a prebuilt artifact whose config records no scan or any finding.
	// +optional
	VulnerabilityPolicy VulnerabilityPolicy `json:"vulnerabilityPolicy,omitempty"`
}

// VulnerabilityPolicy is Warn or Block.
// +kubebuilder:validation:Enum=Warn;Block
type VulnerabilityPolicy string

const (
	// VulnerabilityPolicyWarn records findings and rolls out.
	VulnerabilityPolicyWarn VulnerabilityPolicy = "Warn"
	// VulnerabilityPolicyBlock refuses an artifact with findings, or without a scan.
	VulnerabilityPolicyBlock VulnerabilityPolicy = "Block"
)

// LabelBuildCredentials must be "true" on a Secret named by spec.plugin.source.git.secretRef or
// spec.plugin.pushSecretRef: whoever may edit a CompilerVersion could otherwise send any Secret
// of the namespace to a server of their choosing.
const LabelBuildCredentials = "splice.dev/build-credentials"

// PluginSource is exactly one of git or artifact.
// +kubebuilder:validation:XValidation:rule="has(self.git) != has(self.artifact)",message="spec.plugin.source must set exactly one of git (build from a revision) or artifact (a prebuilt OCI reference)"
type PluginSource struct {
	// git builds the plugin from a revision of a git repository.
	// +optional
	Git *GitSource `json:"git,omitempty"`

	// The rule's pattern is PinnedRefPattern, repeated as a literal for controller-gen;
	// TestCRDPatterns holds them equal.

	// artifact is a prebuilt plugin artifact, pinned by digest:
	// "registry.example.com/team/plugin@sha256:<64 hex digits>". A tag is refused because it
	// could point at another build tomorrow.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="self.matches('^[^@\\\\s]+@sha256:[a-f0-9]{64}$')",message="spec.plugin.source.artifact must be pinned by digest: registry/repository@sha256:<64 lower-case hex digits>, not a tag"
	Artifact string `json:"artifact,omitempty"`
}

// GitSource is a revision of a git repository.
type GitSource struct {
	// url is the repository's clone URL (https://, ssh://, git://, file:// or user@host:path).
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.matches('^(https?|ssh|git|file)://[^\\\\s]+$') || self.matches('^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\\\\s]+$')",message="spec.plugin.source.git.url must be a clone URL such as https://git.example.com/team/plugins.git or git@git.example.com:team/plugins.git"
	URL string `json:"url"`

	// revision is the commit, tag or branch to build. A full commit SHA makes the build
	// reproducible; a branch is resolved once per build.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z0-9][A-Za-z0-9._/-]*$')",message="spec.plugin.source.git.revision must be a commit SHA, tag or branch name without spaces"
	Revision string `json:"revision"`

	// secretRef names a Secret in this namespace with git credentials (keys "username" and
	// "password", or "ssh-privatekey" and optionally "known_hosts").
	// +optional
	SecretRef *LocalObjectReference `json:"secretRef,omitempty"`
}

// LocalObjectReference names an object in the CompilerVersion's namespace.
type LocalObjectReference struct {
	// name of the object.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// StrategyType names a rollout policy.
// +kubebuilder:validation:Enum=Strict;RollingPatch;Canary
type StrategyType string

const (
	// StrategyStrict enforces an exact toolchain and package match: incompatible pods are reported
	// and optionally recreated; any failed swap rolls every pod back.
	StrategyStrict StrategyType = "Strict"
	// StrategyRollingPatch swaps in place in batches of maxUnavailable; only for plugin API
	// changes of minor or patch level.
	StrategyRollingPatch StrategyType = "RollingPatch"
	// StrategyCanary runs ordered steps of pod share, in-pod traffic share, pause and analysis.
	StrategyCanary StrategyType = "Canary"
)

// RolloutStrategy is the rollout policy and its parameters; only the block matching type may be
// set.
// +kubebuilder:validation:XValidation:rule="self.type != 'Canary' || (has(self.canary) && has(self.canary.steps) && size(self.canary.steps) > 0)",message="spec.strategy.canary.steps is required when spec.strategy.type is Canary: list at least one step"
// +kubebuilder:validation:XValidation:rule="!has(self.canary) || self.type == 'Canary'",message="spec.strategy.canary may only be set when spec.strategy.type is Canary"
// +kubebuilder:validation:XValidation:rule="!has(self.rollingPatch) || self.type == 'RollingPatch'",message="spec.strategy.rollingPatch may only be set when spec.strategy.type is RollingPatch"
// +kubebuilder:validation:XValidation:rule="!has(self.strict) || self.type == 'Strict'",message="spec.strategy.strict may only be set when spec.strategy.type is Strict"
type RolloutStrategy struct {
	// The default is DefaultStrategyType (see CompilerVersionSpec.Strategy).

	// type is the rollout policy: Strict, RollingPatch (the default) or Canary.
	// +optional
	// +kubebuilder:default=RollingPatch
	Type StrategyType `json:"type,omitempty"`

	// strict holds Strict's parameters.
	// +optional
	Strict *StrictStrategy `json:"strict,omitempty"`

	// rollingPatch holds RollingPatch's parameters.
	// +optional
	RollingPatch *RollingPatchStrategy `json:"rollingPatch,omitempty"`

	// canary holds Canary's steps.
	// +optional
	Canary *CanaryStrategy `json:"canary,omitempty"`
}

// StrictStrategy parameters.
type StrictStrategy struct {
	// recreateIncompatible evicts (through the Eviction API, so PodDisruptionBudgets hold) pods
	// whose host cannot load the artifact, so their controller recreates them with a matching
	// image. When false they are only reported Incompatible.
	// +optional
	RecreateIncompatible bool `json:"recreateIncompatible,omitempty"`
}

// RollingPatchStrategy parameters.
type RollingPatchStrategy struct {
	// The default is DefaultMaxUnavailable, repeated as a literal in the marker for
	// controller-gen; TestCRDDefaults holds them equal.

	// maxUnavailable is how many pods (a number, or a percentage of the targeted pods rounded
	// up) may be swapping at once; each batch is Ready before the next starts. Default 25%.
	// +optional
	// +kubebuilder:default="25%"
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:MaxLength=4
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 1 : self.matches('^([1-9][0-9]?|100)%$')",message="spec.strategy.rollingPatch.maxUnavailable must be a number of pods of at least 1 or a percentage from 1% to 100%"
	MaxUnavailable *intstr.IntOrString `json:"maxUnavailable,omitempty"`

	// The default is DefaultRollingPatchOnFailure, repeated as a literal in the marker for
	// controller-gen; TestCRDDefaults holds them equal.

	// onFailure is what happens when a pod's swap fails (Failed, RolledBack or Crashed) or its
	// host cannot load the artifact (Incompatible): Rollback (the default) returns every pod to
	// the stable artifact; Pause halts the rollout where it stands, the failed pods serving what
	// they had, until splice.dev/retry or splice.dev/abort.
	// +optional
	// +kubebuilder:default=Rollback
	OnFailure FailurePolicy `json:"onFailure,omitempty"`
}

// FailurePolicy is what Canary and RollingPatch do when a swap or an analysis fails.
// +kubebuilder:validation:Enum=Rollback;Pause
type FailurePolicy string

const (
	// FailureRollback returns every pod to the stable artifact.
	FailureRollback FailurePolicy = "Rollback"
	// FailurePause freezes the rollout where it is until a person resumes or aborts it.
	FailurePause FailurePolicy = "Pause"
)

// CanaryStrategy parameters.
type CanaryStrategy struct {
	// steps run in order; the rollout is complete after the last one.
	// +required
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=20
	Steps []CanaryStep `json:"steps"`

	// The default is DefaultOnFailure, repeated as a literal in the marker for controller-gen;
	// TestCRDDefaults holds them equal.

	// onFailure is what happens when an analysis fails: Rollback (the default) or Pause.
	// +optional
	// +kubebuilder:default=Rollback
	OnFailure FailurePolicy `json:"onFailure,omitempty"`
}

// CanaryStep is one step of a canary.
type CanaryStep struct {
	// setWeight is the share of targeted pods, in percent, that run the new artifact in this step.
	// Pods are chosen by a stable hash of their name, so membership survives reschedules.
	// +required
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	SetWeight int32 `json:"setWeight"`

	// trafficPercent is the share of requests, in percent, that updated pods route to the new
	// version while keeping the stable one loaded (by a hash of a request key). Unset means all.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	TrafficPercent *int32 `json:"trafficPercent,omitempty"`

	// pause holds the rollout after this step: for duration, or until promoted when duration is
	// empty. Unset means no pause.
	// +optional
	Pause *CanaryPause `json:"pause,omitempty"`

	// analysis gates the step on what the agents report.
	// +optional
	Analysis *CanaryAnalysis `json:"analysis,omitempty"`
}

// CanaryPause is a timed or indefinite pause.
type CanaryPause struct {
	// duration of the pause, such as "5m"; empty waits until the rollout is promoted.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$') && duration(self) <= duration('168h')",message="pause.duration must be a Go duration such as 30s or 5m, at most 168h"
	Duration *metav1.Duration `json:"duration,omitempty"`
}

// CanaryAnalysis bounds what a step may observe before it fails.
// +kubebuilder:validation:XValidation:rule="!has(self.minCalls) || has(self.maxErrorRatePercent)",message="analysis.minCalls only sets when maxErrorRatePercent is judged: set maxErrorRatePercent or remove minCalls"
type CanaryAnalysis struct {
	// maxFailedSwaps is how many pods may fail to swap in this step before it fails.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	MaxFailedSwaps *int32 `json:"maxFailedSwaps,omitempty"`

	// maxErrorRatePercent is the highest share of plugin calls, in percent, that may return an
	// error or panic on the new version.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	MaxErrorRatePercent *int32 `json:"maxErrorRatePercent,omitempty"`

	// minCalls is how many plugin calls the step's pods must have reported on the new version
	// before maxErrorRatePercent is judged, either way: until then the step waits
	// (AnalysisPending), even past its pause, so that a step is never passed or failed on a
	// handful of calls. Agents report their counters 10s after a swap, then every minute.
	// Default 100 when maxErrorRatePercent is set; 0 judges at once.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100000000
	MinCalls *int32 `json:"minCalls,omitempty"`

	// maxSwapLatency is the longest a pod's swap may take, such as "500ms".
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$')",message="analysis.maxSwapLatency must be a Go duration such as 500ms or 2s"
	MaxSwapLatency *metav1.Duration `json:"maxSwapLatency,omitempty"`

	// prometheus gates the step on a PromQL query as well: once the step's pods all run the
	// artifact, the query runs and the step fails when its result exceeds maxValue.
	// +optional
	Prometheus *PrometheusAnalysis `json:"prometheus,omitempty"`
}

// PrometheusAnalysis is a PromQL query whose result must stay at or under a bound.
type PrometheusAnalysis struct {
	// address is the Prometheus HTTP API's base URL, such as http://prometheus.monitoring:9090.
	// +required
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="self.matches('^https?://[^\\\\s]+$')",message="prometheus.address must be an http:// or https:// URL such as http://prometheus.monitoring:9090"
	Address string `json:"address"`
	// query is PromQL returning one number (a scalar or a one-element vector). The
	// placeholders {{digest}}, {{namespace}} and {{name}} are replaced by the canary's artifact
	// digest and the CompilerVersion's namespace and name.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	Query string `json:"query"`
	// maxValue is the largest acceptable result, as a decimal number such as "0.01".
	// +required
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^-?[0-9]+(\\\\.[0-9]+)?$')",message="prometheus.maxValue must be a decimal number such as 0.01"
	MaxValue string `json:"maxValue"`
}

// Phase is the CompilerVersion's place in its life cycle.
// +kubebuilder:validation:Enum=Pending;Building;BuildFailed;Progressing;Paused;Completed;Degraded;RolledBack
type Phase string

const (
	// PhasePending: no artifact to roll out yet, or no pods selected.
	PhasePending Phase = "Pending"
	// PhaseBuilding: a build Job is running.
	PhaseBuilding Phase = "Building"
	// PhaseBuildFailed: the last build failed; see the Built condition.
	PhaseBuildFailed Phase = "BuildFailed"
	// PhaseProgressing: pods are being moved to the artifact.
	PhaseProgressing Phase = "Progressing"
	// PhasePaused: the rollout waits for a promotion, a resume, or an analysis decision.
	PhasePaused Phase = "Paused"
	// PhaseCompleted: every targeted pod runs the artifact, which is now stable.
	PhaseCompleted Phase = "Completed"
	// PhaseDegraded: pods failed or are incompatible and the rollout cannot go on by itself.
	PhaseDegraded Phase = "Degraded"
	// PhaseRolledBack: the rollout failed and every pod was returned to the stable artifact.
	PhaseRolledBack Phase = "RolledBack"
)

// Condition types. Each is documented with exactly when it is True.
const (
	// ConditionReady is True when every targeted pod runs status.artifact and reports Ready.
	ConditionReady = "Ready"
	// ConditionBuilt is True when status.artifact holds a built (or resolved prebuilt) artifact
	// for the current spec.
	ConditionBuilt = "Built"
	// ConditionProgressing is True while pods are being moved to status.artifact.
	ConditionProgressing = "Progressing"
	// ConditionAvailable is True when every targeted pod serves some artifact and passes readiness.
	ConditionAvailable = "Available"
	// ConditionPaused is True while the rollout is paused.
	ConditionPaused = "Paused"
	// ConditionDegraded is True when pods failed to swap or are incompatible.
	ConditionDegraded = "Degraded"
)

// ArtifactStatus identifies a plugin artifact.
type ArtifactStatus struct {
	// ref is the artifact's OCI reference, pinned by digest.
	// +required
	// +kubebuilder:validation:MaxLength=512
	Ref string `json:"ref"`
	// digest is the artifact's manifest digest, "sha256:<64 hex>".
	// +required
	// +kubebuilder:validation:MaxLength=71
	Digest string `json:"digest"`
	// goVersion is the Go release the plugin was built with, e.g. "go1.26.8".
	// +optional
	// +kubebuilder:validation:MaxLength=32
	GoVersion string `json:"goVersion,omitempty"`
	// apiVersion is the plugin's declared API version.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	APIVersion string `json:"apiVersion,omitempty"`
	// builtAt is when the artifact was built.
	// +optional
	BuiltAt *metav1.Time `json:"builtAt,omitempty"`
	// signature says who signed the artifact, as the trust policy checked it; empty when no
	// trust policy covers the namespace (the Built condition's message then says the signature
	// was not checked).
	// +optional
	Signature *SignatureStatus `json:"signature,omitempty"`
	// vulnerabilities are what the vulnerability scan of the build found; empty when no scan
	// ran.
	// +optional
	Vulnerabilities *VulnerabilitySummary `json:"vulnerabilities,omitempty"`
}

// SignatureStatus is a verified signature.
type SignatureStatus struct {
	// policy is the name of the trust policy that covers the namespace.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Policy string `json:"policy"`
	// key is the SHA-256 fingerprint of the public key whose signature verified.
	// +required
	// +kubebuilder:validation:MaxLength=128
	Key string `json:"key"`
}

// VulnerabilitySummary is what a build's vulnerability scan found.
type VulnerabilitySummary struct {
	// database is the vulnerability database scanned against.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Database string `json:"database,omitempty"`
	// found is how many known vulnerabilities the plugin calls.
	// +optional
	Found int32 `json:"found"`
	// ids are their identifiers (GO-YYYY-NNNN), sorted, at most 16.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=64
	IDs []string `json:"ids,omitempty"`
}

// PodFailure is a recent failure of one pod.
type PodFailure struct {
	// pod is the pod's name.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Pod string `json:"pod"`
	// digest is the artifact the pod failed with.
	// +optional
	// +kubebuilder:validation:MaxLength=71
	Digest string `json:"digest,omitempty"`
	// state is the pod's reported state (Failed, Incompatible, RolledBack or Crashed).
	// +optional
	// +kubebuilder:validation:MaxLength=32
	State SwapState `json:"state,omitempty"`
	// reason is a CamelCase cause.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Reason string `json:"reason,omitempty"`
	// message says what went wrong and what to fix.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
	// time is when the failure was reported.
	// +optional
	Time *metav1.Time `json:"time,omitempty"`
}

// MaxRecentFailures bounds status.recentFailures.
const MaxRecentFailures = 10

// MaxPodSummaries bounds status.pods.
const MaxPodSummaries = 25

// ObservedControls records which control nonces were handled.
type ObservedControls struct {
	// promote is the last splice.dev/promote value acted on.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Promote string `json:"promote,omitempty"`
	// promoteFull is the last splice.dev/promote-full value acted on.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	PromoteFull string `json:"promoteFull,omitempty"`
	// retry is the last splice.dev/retry value acted on.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Retry string `json:"retry,omitempty"`
}

// PodSwapSummary is the headline of one pod's latest swap.
type PodSwapSummary struct {
	// pod is the pod's name.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Pod string `json:"pod"`
	// digest is the artifact the swap was about.
	// +optional
	// +kubebuilder:validation:MaxLength=71
	Digest string `json:"digest,omitempty"`
	// state is the pod's reported state.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	State SwapState `json:"state,omitempty"`
	// swapLatency is how long the swap took, as the agent measured it.
	// +optional
	SwapLatency *metav1.Duration `json:"swapLatency,omitempty"`
	// gcCyclesDuringSwap is how many GC cycles completed while the swap ran.
	// +optional
	GCCyclesDuringSwap int64 `json:"gcCyclesDuringSwap,omitempty"`
	// heapLiveDeltaBytes is the change of the live heap across the swap.
	// +optional
	HeapLiveDeltaBytes int64 `json:"heapLiveDeltaBytes,omitempty"`
	// scanGlobalsDeltaBytes is the change of the globals every GC cycle scans: it grows with
	// each plugin loaded and never shrinks.
	// +optional
	ScanGlobalsDeltaBytes int64 `json:"scanGlobalsDeltaBytes,omitempty"`
	// loadedVersions is how many plugin versions the host holds.
	// +optional
	LoadedVersions int32 `json:"loadedVersions,omitempty"`
	// time is when the pod reported.
	// +optional
	Time *metav1.Time `json:"time,omitempty"`
}

// MaxEvictedPods bounds the pods status.incompatibleEvictions records, across its templates.
const MaxEvictedPods = 500

// IncompatibleEvictions records, for one artifact, the pods Strict evicted because their host
// could not load it, by pod template. A pod template's pods are evicted once: a pod of a
// recorded template that is not recorded and cannot load the artifact either was created from
// the same template since, which proves the template's image does not match, and it is left
// as it is.
type IncompatibleEvictions struct {
	// digest is the artifact the pods were evicted for. A new artifact, or splice.dev/retry,
	// starts a new record.
	// +required
	// +kubebuilder:validation:MaxLength=71
	Digest string `json:"digest"`
	// templates are the pod templates whose pods were evicted, in name order.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=500
	Templates []EvictedTemplate `json:"templates,omitempty"`
}

// EvictedTemplate is one pod template whose pods Strict evicted.
type EvictedTemplate struct {
	// template names the pod template: the kind and name of the pods' controller and the
	// pod-template-hash or controller-revision-hash label they carry
	// ("ReplicaSet/greeter-5d8f9c@5d8f9c"), or "Pod/<name>" for a pod without a controller.
	// +required
	// +kubebuilder:validation:MaxLength=400
	Template string `json:"template"`
	// podUIDs are the pods evicted: every pod of the template that could not load the artifact
	// once all of the template's pods had reported.
	// +required
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=500
	// +kubebuilder:validation:items:MaxLength=64
	PodUIDs []string `json:"podUIDs"`
}

// CompilerVersionStatus is what Splice observed and did.
type CompilerVersionStatus struct {
	// observedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// phase summarizes the life cycle.
	// +optional
	Phase Phase `json:"phase,omitempty"`

	// artifact is the artifact built for (or named by) the current spec.
	// +optional
	Artifact *ArtifactStatus `json:"artifact,omitempty"`

	// stableArtifact is the last artifact that completed a rollout; rollbacks return to it.
	// +optional
	StableArtifact *ArtifactStatus `json:"stableArtifact,omitempty"`

	// rolloutDigest is the artifact digest the rollout state (phase, step, times) belongs to.
	// A new artifact in status.artifact starts a new rollout from the first step.
	// +optional
	// +kubebuilder:validation:MaxLength=71
	RolloutDigest string `json:"rolloutDigest,omitempty"`

	// currentStepIndex is the canary step in progress.
	// +optional
	CurrentStepIndex *int32 `json:"currentStepIndex,omitempty"`

	// stepStartTime is when the current step (or, for RollingPatch and Strict, the rollout)
	// began.
	// +optional
	StepStartTime *metav1.Time `json:"stepStartTime,omitempty"`

	// pauseStartTime is when the current step's pause began: its pods were all swapped and its
	// analysis passed. Unset while no pause runs.
	// +optional
	PauseStartTime *metav1.Time `json:"pauseStartTime,omitempty"`

	// observedControls are the nonces of the edge-triggered control annotations (promote,
	// promote-full, retry) the controller has already acted on.
	// +optional
	ObservedControls ObservedControls `json:"observedControls,omitempty"`

	// targeted is the number of pods the selector matches.
	// +optional
	Targeted int32 `json:"targeted"`
	// updated is the number of targeted pods that run status.artifact.
	// +optional
	Updated int32 `json:"updated"`
	// ready is the number of targeted pods whose plugin-ready condition is True: pods serving
	// a plugin that passed, the desired one or, while a swap is in progress, the one before.
	// +optional
	Ready int32 `json:"ready"`
	// failed is the number of targeted pods whose last swap failed, rolled back or crashed
	// their host.
	// +optional
	Failed int32 `json:"failed"`
	// incompatible is the number of targeted pods whose host cannot load the artifact.
	// +optional
	Incompatible int32 `json:"incompatible"`

	// progress is "updated/targeted", for display.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	Progress string `json:"progress,omitempty"`

	// recentFailures are the latest pod failures, newest first, at most 10.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=10
	RecentFailures []PodFailure `json:"recentFailures,omitempty"`

	// incompatibleEvictions is what Strict remembers of the pods it evicted because their host
	// could not load status.artifact (spec.strategy.strict.recreateIncompatible), so that it
	// evicts the pods of a pod template at most once per artifact.
	// +optional
	IncompatibleEvictions *IncompatibleEvictions `json:"incompatibleEvictions,omitempty"`

	// pods summarizes the latest swaps, newest first, at most 25.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=25
	Pods []PodSwapSummary `json:"pods,omitempty"`

	// conditions: Ready, Built, Progressing, Available, Paused, Degraded.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// CompilerVersion pins the Go toolchain a plugin is built with, the pods that load it, and the
// policy that rolls it out to them without restarting them.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=cv,categories=splice
// +kubebuilder:printcolumn:name="Go",type=string,JSONPath=`.spec.goVersion`
// +kubebuilder:printcolumn:name="Strategy",type=string,JSONPath=`.spec.strategy.type`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Updated",type=string,JSONPath=`.status.progress`,description="updated/targeted pods"
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Artifact",type=string,JSONPath=`.status.artifact.digest`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type CompilerVersion struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec CompilerVersionSpec `json:"spec"`

	// +optional
	Status CompilerVersionStatus `json:"status,omitempty"`
}

// CompilerVersionList is a list of CompilerVersions.
//
// +kubebuilder:object:root=true
type CompilerVersionList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []CompilerVersion `json:"items"`
}
