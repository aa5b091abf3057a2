package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

// defaultWait is how long a control command waits for the controller to act before it reports
// the phase as it stands.
const defaultWait = 10 * time.Second

// action is what a control command does to one CompilerVersion.
type action struct {
	// changes are the annotations to set (a value) or remove (nil). Empty: nothing to do.
	changes map[string]*string
	// did says, for a person, what was done and what follows from it.
	did string
	// notes say what else stands in the way of the rollout.
	notes []string
	// settled reports whether the controller has acted on the change.
	settled func(*splicev1.CompilerVersion) bool
}

// decideFunc inspects the CompilerVersion and returns what to do, or an error saying why the
// control would have no effect (the controller would spend a nonce without acting on it).
type decideFunc func(cv *splicev1.CompilerVersion, ref, nonce string) (action, error)

// newControlCommand builds one control command around its decision.
func newControlCommand(flags *genericclioptions.ConfigFlags, use, short, long, example string, decide func() decideFunc) *cobra.Command {
	var wait time.Duration
	cmd := &cobra.Command{
		Use:     use,
		Short:   short,
		Long:    long,
		Example: example,
		Args:    exactlyOneName,
		RunE: func(cmd *cobra.Command, args []string) error {
			if wait < 0 {
				return usageError{fmt.Errorf("--wait must not be negative (got %s)", wait)}
			}
			s, err := newSession(flags)
			if err != nil {
				return err
			}
			return runControl(cmd.Context(), s, args[0], decide(), wait, cmd.OutOrStdout())
		},
	}
	cmd.Flags().DurationVar(&wait, "wait", defaultWait, "How long to wait for the controller to act before reporting the phase (0: do not wait).")
	return cmd
}

// runControl reads the CompilerVersion, decides, patches its annotations, waits for the
// controller and reports.
func runControl(ctx context.Context, s *session, name string, decide decideFunc, wait time.Duration, out io.Writer) error {
	cv, err := s.getCV(ctx, name)
	if err != nil {
		return err
	}
	ref := "compilerversion.splice.dev/" + name
	act, err := decide(cv, ref, newNonce())
	if err != nil {
		return err
	}
	if len(act.changes) > 0 {
		if err := s.patchAnnotations(ctx, cv, act.changes); err != nil {
			return err
		}
	}
	fmt.Fprintln(out, act.did)
	for _, n := range act.notes {
		fmt.Fprintln(out, "Note: "+n)
	}
	settled := true
	if len(act.changes) > 0 && wait > 0 {
		cv, settled, err = s.waitFor(ctx, cv, wait, act.settled)
		if err != nil {
			return err
		}
	}
	phase, reason, message := phaseLine(cv)
	line := fmt.Sprintf("Phase: %s %s", phaseIcon(phase), phase)
	if reason != "" {
		line += " (" + reason + ")"
	}
	if message != "" {
		line += ": " + message
	}
	fmt.Fprintln(out, line)
	if !settled {
		fmt.Fprintf(out, "The controller has not acted on it within %s: is the Splice manager running? The annotation stays; `kubectl splice get %s --watch -n %s` follows the rollout.\n",
			wait, name, s.namespace)
	}
	return nil
}

// newNonce is a fresh value for an edge-triggered control: the controller acts once on each new
// value. Nanoseconds keep two quick promotions apart; it fits observedControls' 64 characters.
func newNonce() string {
	return time.Now().UTC().Format(time.RFC3339Nano)
}

// patchAnnotations sets and removes annotations with a JSON merge patch of
// metadata.annotations alone: no other field, no resourceVersion (the keys it names are the
// only ones it changes, so a concurrent writer loses nothing), and never the spec.
func (s *session) patchAnnotations(ctx context.Context, cv *splicev1.CompilerVersion, changes map[string]*string) error {
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": changes}})
	if err != nil {
		return err
	}
	if err := s.client.Patch(ctx, cv, client.RawPatch(types.MergePatchType, body)); err != nil {
		return fmt.Errorf("annotate CompilerVersion %s/%s: %w", cv.Namespace, cv.Name, s.explain(err, cv.Name))
	}
	return nil
}

// waitFor watches the CompilerVersion until done says the controller has acted, or timeout.
// It returns the last version seen and whether done was reached; running out of time is not an
// error.
func (s *session) waitFor(ctx context.Context, cv *splicev1.CompilerVersion, timeout time.Duration,
	done func(*splicev1.CompilerVersion) bool) (*splicev1.CompilerVersion, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := cv
	for !done(last) {
		w, err := s.client.Watch(ctx, &splicev1.CompilerVersionList{}, &client.ListOptions{
			Namespace:     cv.Namespace,
			FieldSelector: fields.OneTermEqualSelector("metadata.name", cv.Name),
			Raw:           &metav1.ListOptions{ResourceVersion: last.ResourceVersion, AllowWatchBookmarks: true},
		})
		if err != nil {
			return last, false, unlessEnded(ctx, fmt.Errorf("watch CompilerVersion %s/%s: %w", cv.Namespace, cv.Name, err))
		}
		var expired bool
		if last, expired, err = follow(w, last, done); err != nil {
			return last, false, err
		}
		if ctx.Err() != nil {
			return last, false, nil
		}
		if expired {
			fresh, err := s.getCV(ctx, cv.Name)
			if err != nil {
				return last, false, unlessEnded(ctx, err)
			}
			last = fresh
		}
	}
	return last, true, nil
}

// follow reads one watch of the CompilerVersion cv until done holds for the newest version
// seen, the object is deleted (an error), or the watch ends; expired says it ended on an error
// event, most likely "resource version too old", after which it must be read afresh.
func follow(w watch.Interface, cv *splicev1.CompilerVersion, done func(*splicev1.CompilerVersion) bool) (last *splicev1.CompilerVersion, expired bool, err error) {
	defer w.Stop()
	last = cv
	for ev := range w.ResultChan() {
		switch ev.Type {
		case watch.Added, watch.Modified:
			if o, ok := ev.Object.(*splicev1.CompilerVersion); ok {
				last = o
				if done(last) {
					return last, false, nil
				}
			}
		case watch.Deleted:
			return last, false, fmt.Errorf("CompilerVersion %s/%s was deleted while waiting for the controller", cv.Namespace, cv.Name)
		case watch.Error:
			return last, true, nil
		}
	}
	return last, false, nil
}

// unlessEnded is err, or nil once ctx has ended: a wait that runs out of time is no error.
func unlessEnded(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// pausedByUser reports whether the controller holds the rollout for splice.dev/paused: the
// reason it gives shows it has seen the annotation.
func pausedByUser(cv *splicev1.CompilerVersion) bool {
	c := apimeta.FindStatusCondition(cv.Status.Conditions, splicev1.ConditionPaused)
	return c != nil && c.Status == metav1.ConditionTrue && c.Reason == splicev1.ReasonPausedByUser
}

func str(s string) *string { return &s }

func newPromoteCommand(flags *genericclioptions.ConfigFlags) *cobra.Command {
	var full bool
	cmd := newControlCommand(flags, "promote NAME [--full]",
		"End the current canary step's pause and go on to the next step (--full: skip every remaining step)",
		`Promote a Canary rollout: leave the current step, whether it pauses (for a while or until
promoted), is still moving pods, or holds after a failed analysis with onFailure: Pause, and go
on to the next step. With --full every remaining step is skipped and every pod moves to the new
artifact at once.

It sets splice.dev/promote (or splice.dev/promote-full) to a fresh value; the controller acts
once per value.`,
		"  kubectl splice promote greeter\n  kubectl splice promote greeter --full",
		func() decideFunc { return decidePromote(full) })
	cmd.Flags().BoolVar(&full, "full", false, "Skip every remaining step: move every pod to the new artifact now.")
	return cmd
}

func decidePromote(full bool) decideFunc {
	return func(cv *splicev1.CompilerVersion, ref, nonce string) (action, error) {
		name := cv.Name
		switch {
		case cv.Spec.Strategy.Type != splicev1.StrategyCanary:
			return action{}, fmt.Errorf("%s uses the %s strategy: only Canary rollouts have steps to promote", ref, cv.Spec.Strategy.Type)
		case cv.Aborted():
			return action{}, fmt.Errorf("%s is aborted (%s): the controller would ignore a promotion; `kubectl splice retry %s` starts the rollout again",
				ref, splicev1.AnnotationAbort, name)
		case cv.Paused():
			return action{}, fmt.Errorf("%s is paused (%s): the controller would spend the promotion without acting on it; `kubectl splice resume %s` first",
				ref, splicev1.AnnotationPaused, name)
		case !cv.RolloutActive():
			return action{}, fmt.Errorf("%s has no rollout to promote: its phase is %s (promote acts on a rollout that is Progressing or Paused)",
				ref, orDash(string(cv.Status.Phase)))
		}
		steps := 0
		if cv.Spec.Strategy.Canary != nil {
			steps = len(cv.Spec.Strategy.Canary.Steps)
		}
		canary := "the new artifact"
		if a := cv.Status.Artifact; a != nil {
			canary = shortDigest(a.Digest)
		}
		if full {
			return action{
				changes: map[string]*string{splicev1.AnnotationPromoteFull: str(nonce)},
				did: fmt.Sprintf("%s fully promoted (%s=%s): every remaining step is skipped and every pod moves to %s",
					ref, splicev1.AnnotationPromoteFull, nonce, canary),
				settled: func(cv *splicev1.CompilerVersion) bool { return cv.Status.ObservedControls.PromoteFull == nonce },
			}, nil
		}
		idx := 0
		if cv.Status.CurrentStepIndex != nil {
			idx = int(*cv.Status.CurrentStepIndex)
		}
		next := "every pod moves to " + canary
		if idx+1 < steps {
			next = fmt.Sprintf("step %d/%d begins", idx+2, steps)
		}
		return action{
			changes: map[string]*string{splicev1.AnnotationPromote: str(nonce)},
			did: fmt.Sprintf("%s promoted (%s=%s): step %d/%d ends and %s",
				ref, splicev1.AnnotationPromote, nonce, idx+1, steps, next),
			settled: func(cv *splicev1.CompilerVersion) bool { return cv.Status.ObservedControls.Promote == nonce },
		}, nil
	}
}

func newPauseCommand(flags *genericclioptions.ConfigFlags) *cobra.Command {
	return newControlCommand(flags, "pause NAME",
		"Hold the rollout where it is: no pod is told to run anything new",
		`Pause a rollout: every pod keeps the artifact it is told to run until `+"`kubectl splice resume`"+`.
With no rollout in progress, the next one holds before it moves any pod.

It sets splice.dev/paused=true.`,
		"  kubectl splice pause greeter",
		func() decideFunc { return decidePause })
}

func decidePause(cv *splicev1.CompilerVersion, ref, _ string) (action, error) {
	if cv.Paused() {
		return action{did: fmt.Sprintf("%s was already paused (%s=true); nothing changed", ref, splicev1.AnnotationPaused)}, nil
	}
	act := action{
		changes: map[string]*string{splicev1.AnnotationPaused: str("true")},
		did: fmt.Sprintf("%s paused (%s=true): pods keep what they are told to run until `kubectl splice resume %s`",
			ref, splicev1.AnnotationPaused, cv.Name),
		// Held by the annotation, or no rollout to hold (the next one will hold; an abort
		// wins over a pause). A canary already waiting for promotion does not count: the
		// controller has not necessarily seen the annotation yet.
		settled: func(cv *splicev1.CompilerVersion) bool {
			return !cv.RolloutActive() || pausedByUser(cv)
		},
	}
	if !cv.RolloutActive() {
		act.notes = append(act.notes, fmt.Sprintf("no rollout is in progress (phase %s): the next rollout holds before it moves any pod",
			orDash(string(cv.Status.Phase))))
	}
	return act, nil
}

func newResumeCommand(flags *genericclioptions.ConfigFlags) *cobra.Command {
	return newControlCommand(flags, "resume NAME",
		"Release a pause made by `kubectl splice pause`",
		`Resume a paused rollout: remove splice.dev/paused, so the rollout goes on from where it
held. A canary step that waits for promotion is not a pause of this kind: promote it.`,
		"  kubectl splice resume greeter",
		func() decideFunc { return decideResume })
}

func decideResume(cv *splicev1.CompilerVersion, ref, _ string) (action, error) {
	v, has := cv.Annotations[splicev1.AnnotationPaused]
	if !has {
		act := action{did: fmt.Sprintf("%s was not paused (no %s annotation); nothing changed", ref, splicev1.AnnotationPaused)}
		if c := apimeta.FindStatusCondition(cv.Status.Conditions, splicev1.ConditionPaused); c != nil && c.Status == metav1.ConditionTrue {
			act.notes = append(act.notes, fmt.Sprintf("it holds for another reason (%s); `kubectl splice promote %s` goes on to the next step",
				c.Reason, cv.Name))
		}
		return act, nil
	}
	did := fmt.Sprintf("%s resumed (removed %s): the rollout goes on from where it held", ref, splicev1.AnnotationPaused)
	if v != "true" {
		did = fmt.Sprintf("%s: removed %s=%q (the controller pauses only on \"true\", so it was not paused)", ref, splicev1.AnnotationPaused, v)
	}
	act := action{
		changes: map[string]*string{splicev1.AnnotationPaused: nil},
		did:     did,
		settled: func(cv *splicev1.CompilerVersion) bool { return !pausedByUser(cv) },
	}
	if cv.Aborted() {
		act.notes = append(act.notes, fmt.Sprintf("it is still aborted (%s); `kubectl splice retry %s` starts the rollout again",
			splicev1.AnnotationAbort, cv.Name))
	}
	return act, nil
}

func newAbortCommand(flags *genericclioptions.ConfigFlags) *cobra.Command {
	return newControlCommand(flags, "abort NAME",
		"Return every pod to the stable artifact and hold",
		`Abort a rollout: every targeted pod is told to run the stable artifact again, and the
rollout holds (while aborted, goVersion and the source may change) until
`+"`kubectl splice retry`"+`.

It sets splice.dev/abort=true.`,
		"  kubectl splice abort greeter",
		func() decideFunc { return decideAbort })
}

func decideAbort(cv *splicev1.CompilerVersion, ref, _ string) (action, error) {
	if cv.Aborted() {
		return action{did: fmt.Sprintf("%s was already aborted (%s=true); nothing changed", ref, splicev1.AnnotationAbort)}, nil
	}
	back := "there is no stable artifact to return to, so pods keep what they run"
	if st := cv.Status.StableArtifact; st != nil {
		back = "every pod returns to the stable artifact " + shortDigest(st.Digest)
	}
	return action{
		changes: map[string]*string{splicev1.AnnotationAbort: str("true")},
		did: fmt.Sprintf("%s aborted (%s=true): %s; the rollout holds until `kubectl splice retry %s`",
			ref, splicev1.AnnotationAbort, back, cv.Name),
		settled: func(cv *splicev1.CompilerVersion) bool { return !cv.RolloutActive() },
	}, nil
}

func newRetryCommand(flags *genericclioptions.ConfigFlags) *cobra.Command {
	return newControlCommand(flags, "retry NAME",
		"Start a failed, rolled-back or aborted rollout again from its first step",
		`Retry a rollout: start the rollout of the current artifact again from its first step. It
also lifts an abort (removes splice.dev/abort). It restarts a rollout, not a build.

It sets splice.dev/retry to a fresh value; the controller acts once per value.`,
		"  kubectl splice retry greeter",
		func() decideFunc { return decideRetry })
}

func decideRetry(cv *splicev1.CompilerVersion, ref, nonce string) (action, error) {
	a := cv.Status.Artifact
	if a == nil {
		return action{}, errors.New(ref + " has nothing to retry: no artifact is built for the current spec yet (phase " +
			orDash(string(cv.Status.Phase)) + "); retry restarts a rollout, not a build")
	}
	changes := map[string]*string{splicev1.AnnotationRetry: str(nonce)}
	did := fmt.Sprintf("%s retried (%s=%s): the rollout of %s starts again from its first step", ref, splicev1.AnnotationRetry, nonce, shortDigest(a.Digest))
	if _, has := cv.Annotations[splicev1.AnnotationAbort]; has {
		changes[splicev1.AnnotationAbort] = nil
		did += "; removed " + splicev1.AnnotationAbort
	}
	act := action{
		changes: changes,
		did:     did,
		settled: func(cv *splicev1.CompilerVersion) bool { return cv.Status.ObservedControls.Retry == nonce },
	}
	if cv.Paused() {
		act.notes = append(act.notes, fmt.Sprintf("it is still paused (%s); `kubectl splice resume %s` lets it go on",
			splicev1.AnnotationPaused, cv.Name))
	}
	return act, nil
}
