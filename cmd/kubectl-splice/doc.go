// Command kubectl-splice is the kubectl plugin that shows and steers Splice rollouts. Installed
// on the PATH as kubectl-splice, it runs as `kubectl splice ...`:
//
//	kubectl splice get NAME [--watch]     the rollout as a live tree: state, step, artifacts, one line per pod
//	kubectl splice promote NAME [--full]  end the current canary pause (--full: skip every remaining step)
//	kubectl splice pause NAME             hold the rollout where it is
//	kubectl splice resume NAME            release a pause made by `pause`
//	kubectl splice abort NAME             return every pod to the stable artifact and hold
//	kubectl splice retry NAME             start a failed, rolled-back or aborted rollout again
//
// It takes kubectl's connection flags (--kubeconfig, --context, -n, ...).
//
// What it may not touch: it steers a rollout only through the control annotations that
// api/v1alpha1 defines on the CompilerVersion (splice.dev/promote, promote-full, retry,
// paused, abort), written with a JSON merge patch of metadata.annotations alone. It never
// writes the spec (GitOps tools own it and would revert the change), status (the controller
// owns it) or pods (the controller and the agents own their annotations). What a control
// means is decided by the controller (controllers/rollout_plan.go); this command only sets it,
// waits for the controller to act and reports the phase.
//
// Rendering is a pure function (render.go) with golden files (testdata; `go test -run
// TestRender -update` rewrites them); the commands run in-process against a real API server
// (envtest) through a kubeconfig file. steer_test.go steers a canary driven by the real
// CompilerVersion reconciler and simulated agents through every command (the end-to-end suite,
// test/e2e, runs get, promote and abort against the real cluster):
//
//	go test ./cmd/kubectl-splice -run TestCanarySteeredByCLI -v
package main
