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
	// ReasonSwapFailed (Degraded True, and Progressing False when the rollout stops): pods
	// failed to swap to the artifact or rolled it back — more of them than a canary step's
	// maxFailedSwaps, any under Strict (which rolls back) or RollingPatch (which halts), and on
	// the first rollout (reported only).
	ReasonSwapFailed = "SwapFailed"
	// ReasonIncompatiblePods (Degraded True): under Strict, hosts cannot load the artifact
	// (toolchain or package mismatch); they are evicted with recreateIncompatible, else only
	// reported.
	ReasonIncompatiblePods = "IncompatiblePods"
	// ReasonMajorAPIChange (Progressing False, Degraded True): RollingPatch refuses an artifact
	// whose plugin API differs in major version from the stable one's; that needs Strict.
	ReasonMajorAPIChange = "MajorAPIChange"
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
