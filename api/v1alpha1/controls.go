package v1alpha1

// Rollout controls. People (and `kubectl splice`) steer a rollout by annotating the
// CompilerVersion, never by editing its spec, so GitOps tools that own the spec do not revert
// them (they do not remove annotations they never set). Edge-triggered controls carry a nonce:
// the controller acts once per new value and records the value it handled in
// status.observedControls, so a restarted manager never acts twice. Level-triggered controls
// hold while their value is "true"; any other value is none. The methods below are the one
// reading of them that the controller, the webhook and `kubectl splice` share.
const (
	// AnnotationPromote (nonce): end the current step's pause (or a failed analysis held by
	// onFailure: Pause) and go on to the next step.
	AnnotationPromote = "splice.dev/promote"
	// AnnotationPromoteFull (nonce): skip every remaining step and move all pods at once.
	AnnotationPromoteFull = "splice.dev/promote-full"
	// AnnotationRetry (nonce): start a failed, rolled-back or aborted rollout again from its
	// first step.
	AnnotationRetry = "splice.dev/retry"
	// AnnotationPaused ("true", level): hold the rollout where it is while it says "true".
	AnnotationPaused = "splice.dev/paused"
	// AnnotationAbort ("true", level): return every pod to the stable artifact and hold while
	// it says "true". While a rollout is aborted, goVersion and the source may change.
	AnnotationAbort = "splice.dev/abort"
)

// Aborted reports whether splice.dev/abort is "true": the controller then returns every pod to
// the stable artifact and holds (ReasonAborted), and the webhook lets what a rollout in progress
// protects change. Any other value, or none, is no abort.
func (cv *CompilerVersion) Aborted() bool { return cv.Annotations[AnnotationAbort] == "true" }

// Paused reports whether splice.dev/paused is "true": the controller then holds the rollout
// where it stands, or the next one before it moves any pod (ReasonPausedByUser). It is not the
// phase Paused, which a canary step's own pause and a failed analysis held by onFailure: Pause
// also record. Any other value, or none, is no pause.
func (cv *CompilerVersion) Paused() bool { return cv.Annotations[AnnotationPaused] == "true" }

// RolloutActive reports whether status records a rollout under way under the current spec:
// phase Progressing (pods are being moved, or a step waits for its analysis) or Paused (held
// mid-way, by a step's pause, a held analysis failure or splice.dev/paused). It reads what the
// controller last recorded, so a control set since then shows only once the controller has
// acted on it. Every other phase (Pending, Building, BuildFailed, Completed, Degraded,
// RolledBack) has no rollout under way.
func (cv *CompilerVersion) RolloutActive() bool {
	return cv.Status.Phase == PhaseProgressing || cv.Status.Phase == PhasePaused
}

// PromoteRequested reports whether splice.dev/promote holds a nonce the controller has not
// acted on yet (status.observedControls.promote records another one). An empty value is none.
func (cv *CompilerVersion) PromoteRequested() bool {
	return newNonce(cv.Annotations[AnnotationPromote], cv.Status.ObservedControls.Promote)
}

// PromoteFullRequested reports whether splice.dev/promote-full holds a nonce the controller has
// not acted on yet (status.observedControls.promoteFull records another one). An empty value is
// none.
func (cv *CompilerVersion) PromoteFullRequested() bool {
	return newNonce(cv.Annotations[AnnotationPromoteFull], cv.Status.ObservedControls.PromoteFull)
}

// RetryRequested reports whether splice.dev/retry holds a nonce the controller has not acted on
// yet (status.observedControls.retry records another one). An empty value is none.
func (cv *CompilerVersion) RetryRequested() bool {
	return newNonce(cv.Annotations[AnnotationRetry], cv.Status.ObservedControls.Retry)
}

func newNonce(value, handled string) bool { return value != "" && value != handled }
