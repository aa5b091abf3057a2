package v1alpha1

// The reasons of the CompilerVersion's conditions. They are API: `kubectl splice` tells by them
// whether the controller has acted on a control, and people and alerts key on them. Each says
// on which condition, with which status, the controller sets it, and when.

// The Ready and Available conditions' reasons.
const (
	// ReasonNoTargetPods (Ready False, Available False): the selector matches no pod in the
	// namespace that runs or is about to.
	ReasonNoTargetPods = "NoTargetPods"
	// ReasonAwaitingArtifact (Ready False): pods are targeted, and no artifact is built or
	// resolved for the current spec yet.
	ReasonAwaitingArtifact = "AwaitingArtifact"
	// ReasonInvalidSelector (Ready False): spec.selector cannot be turned into a label selector.
	ReasonInvalidSelector = "InvalidSelector"
	// ReasonAllPodsReady (Ready True): every targeted pod runs status.artifact and passes its
	// plugin readiness. (Available True): every targeted pod passes its plugin readiness,
	// whatever it runs.
	ReasonAllPodsReady = "AllPodsReady"
	// ReasonPodsNotUpdated (Ready False): some targeted pods do not run status.artifact yet,
	// or do not pass their plugin readiness.
	ReasonPodsNotUpdated = "PodsNotUpdated"
	// ReasonPodsNotReady (Available False): some targeted pods do not pass their plugin
	// readiness.
	ReasonPodsNotReady = "PodsNotReady"
)

// The rollout conditions' reasons: Progressing, Paused and Degraded, which the rollout plan
// decides on every reconcile.
const (
	// ReasonRolloutComplete (Progressing False): every targeted pod runs the artifact and
	// passes its plugin readiness; the artifact is now status.stableArtifact.
	ReasonRolloutComplete = "RolloutComplete"
	// ReasonSwapping (Progressing True): pods are being told to run the artifact and swap to
	// it — the first rollout, Strict, a RollingPatch batch, or a canary step or its final step
	// moving its pods.
	ReasonSwapping = "Swapping"
	// ReasonWaitingForBuild (Progressing False): there is no artifact for the current spec to
	// roll out yet (no build finished, or it is not Built at the current generation); pods keep
	// the stable artifact.
	ReasonWaitingForBuild = "WaitingForBuild"
	// ReasonNoRollout (Progressing False, Paused False): nothing is moving and nothing holds —
	// what a condition says until a rollout sets it otherwise.
	ReasonNoRollout = "NoRollout"
	// ReasonPausedByUser (Paused True, Progressing False): the splice.dev/paused annotation
	// holds the rollout (CompilerVersion.Paused); every pod keeps what it is told to run.
	ReasonPausedByUser = "PausedByUser"
	// ReasonAwaitingPromotion (Paused True, Progressing True): a canary step whose pause has no
	// duration has all its pods on the artifact and waits for splice.dev/promote.
	ReasonAwaitingPromotion = "AwaitingPromotion"
	// ReasonPauseStep (Paused True, Progressing True): a canary step's timed pause is running.
	ReasonPauseStep = "PauseStep"
	// ReasonAnalysisFailed: a canary step's analysis failed — an error rate over
	// maxErrorRatePercent, a swap slower than maxSwapLatency, or a Prometheus result over
	// maxValue (Progressing False, Degraded True; the rollout rolls back). With onFailure: Pause
	// it is also the Paused condition's reason (Paused True) whatever failed, while the rollout
	// holds for a promotion or an abort.
	ReasonAnalysisFailed = "AnalysisFailed"
	// ReasonAnalysisPending (Progressing True): a canary step has its pods on the artifact and
	// waits for its analysis — fewer plugin calls reported than minCalls, or a Prometheus query
	// without an answer yet; it does not advance past its pause until judged.
	ReasonAnalysisPending = "AnalysisPending"
	// ReasonPrometheusAddressNotAllowed (Progressing False, Degraded True; the rollout rolls
	// back, or with onFailure: Pause holds): a canary step's prometheus.address is not in the
	// manager's --prometheus-allowed-addresses, so the manager sent no query.
	ReasonPrometheusAddressNotAllowed = "PrometheusAddressNotAllowed"
	// ReasonSwapFailed (Degraded True, and Progressing False when the rollout stops): pods
	// failed to swap to the artifact, rolled it back or crashed their host running it — more
	// of them than a canary step's maxFailedSwaps, any under Strict (which rolls back) or
	// RollingPatch (which rolls back or halts, as its onFailure says), and on the first rollout
	// (which stops: ReasonRolloutStopped).
	ReasonSwapFailed = "SwapFailed"
	// ReasonRolloutStopped (Progressing False, Degraded True): a swap failed during the first
	// rollout of a CompilerVersion, which has no stable artifact to roll back to, whatever the
	// policy: the rollout stopped, every pod keeps what its host serves, and no pod not yet told
	// the artifact is told it, until splice.dev/retry or a new artifact. The Degraded
	// condition says which pods failed and why.
	ReasonRolloutStopped = "RolloutStopped"
	// ReasonIncompatiblePods (Degraded True): under Strict, hosts cannot load the artifact
	// (toolchain or package mismatch, or a major plugin API change); they are evicted with
	// recreateIncompatible, once per pod template, else only reported.
	ReasonIncompatiblePods = "IncompatiblePods"
	// ReasonIncompatibleAfterRecreate (Degraded True): under Strict with recreateIncompatible,
	// a pod created from a pod template whose pods were already evicted for the artifact cannot
	// load it either: the template's image does not match, so its pods are not evicted again
	// for this artifact; the message says what the image must be.
	ReasonIncompatibleAfterRecreate = "IncompatibleAfterRecreate"
	// ReasonMajorAPIChange (Progressing False, Degraded True): RollingPatch refuses an artifact
	// whose plugin API differs in major version from the stable one's; that needs Strict. It
	// is also the reason of an Incompatible pod report (PodReport.Reason) whose host refuses
	// the artifact because its plugin API is of another major version than the host's: no host
	// swaps that in place, Strict recreates the pod (recreateIncompatible), and its image must
	// carry a host built against the artifact's major version.
	ReasonMajorAPIChange = "MajorAPIChange"
	// ReasonOverlappingSelector (Degraded True): spec.selector matches pods that another
	// CompilerVersion of the namespace also selects and owns — the oldest by creation time,
	// then by name. This one leaves them alone (it never writes their desired state); the
	// message names the other and the pods. Make the selectors disjoint.
	ReasonOverlappingSelector = "OverlappingSelector"
	// ReasonRolledBack (Progressing False, Degraded True): the rollout failed earlier and every
	// pod was returned to the stable artifact; it stays so until splice.dev/retry or a new
	// artifact. The conditions keep the failure's own reason while they still carry it.
	ReasonRolledBack = "RolledBack"
	// ReasonAborted (Progressing False, Degraded True): splice.dev/abort holds
	// (CompilerVersion.Aborted): every pod returns to the stable artifact, or, with none, keeps
	// what it runs.
	ReasonAborted = "Aborted"
	// ReasonHealthy (Degraded False): no targeted pod failed to swap or is incompatible.
	ReasonHealthy = "Healthy"
)

// The reasons of a pod report (PodReport.Reason) that the controller and the agent both know, beside
// ReasonMajorAPIChange above and ReasonInvalidDesiredArtifact (podprotocol.go).
const (
	// ReasonMinorAPIChangeNotAllowed is the reason of an Incompatible report about an artifact
	// whose plugin API is a minor change from what the host serves, when the pod's desired state
	// does not consent to one (AnnotationAllowMinorAPIChange, from
	// spec.plugin.allowMinorAPIChange). Nothing was loaded; the host keeps serving what it had.
	// Recreating the pod cannot change that, so Strict never evicts such a pod: consent is
	// given in the CompilerVersion's spec.
	ReasonMinorAPIChangeNotAllowed = "MinorAPIChangeNotAllowed"
)
