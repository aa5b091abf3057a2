package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	ctrlbuilder "sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/artifact"
	"github.com/splice-dev/splice/builder"
	"github.com/splice-dev/splice/internal/trust"
)

// BuildReconciler gives each CompilerVersion an artifact for its current spec: it runs a
// build Job for a git source and reads the registry for a prebuilt artifact. It writes only
// status.artifact and the Built condition (see doc.go); the phase that shows a build running
// or failed is derived from Built by the CompilerVersion reconciler.
type BuildReconciler struct {
	client.Client
	Recorder recorder.EventRecorder
	// Clock is the time source; tests may pin it.
	Clock clock.PassiveClock
	// Job shapes the build Jobs.
	Job BuildJobOptions
	// Pods reads build logs (pods/log); nil uses the manager's REST config.
	Pods corev1client.PodsGetter
	// RegistryOptions are passed to artifact.FetchConfig for prebuilt artifacts (credentials,
	// transport). The default reads the manager's own Docker config.
	RegistryOptions []artifact.Option
	// FetchTimeout bounds one registry read (default 30s).
	FetchTimeout time.Duration
	// Trust checks artifacts against the namespace's trust policy and signs builds.
	Trust ArtifactTrust
	// CredentialsRecheck is how soon a build refused for its Secrets' labels, or a prebuilt
	// artifact refused for its signature, is looked at again (default
	// DefaultCredentialsRecheck): neither Secrets nor signatures are watched.
	CredentialsRecheck time.Duration
	// APIReader reads what the manager does not cache (the labels of build Secrets); nil uses
	// the manager's API reader.
	APIReader client.Reader

	logs *podLogs
}

// buildScope carries what one reconcile decided, for the single status write at its end.
type buildScope struct {
	cv *splicev1.CompilerVersion
	// decision is nil when status needs no change.
	decision *buildDecision
	// onChange runs after a status write that changed the Built condition's status or
	// reason: events and metrics of outcomes that have no Job to record them once.
	onChange func()
}

// +kubebuilder:rbac:groups=splice.dev,resources=compilerversions,verbs=get;list;watch
// +kubebuilder:rbac:groups=splice.dev,resources=compilerversions/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=splice.dev,resources=compilerversions/finalizers,verbs=update
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=pods/log,verbs=get
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile decides the artifact for the CompilerVersion's current spec and writes status once.
func (r *BuildReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	cv := &splicev1.CompilerVersion{}
	if err := r.Get(ctx, req.NamespacedName, cv); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if cv.DeletionTimestamp != nil {
		return ctrl.Result{}, nil // its Jobs go with it, through their owner references
	}
	log := logf.FromContext(ctx).WithValues("compilerversion", klog.KObj(cv), "generation", cv.Generation)
	ctx = logf.IntoContext(ctx, log)

	s := &buildScope{cv: cv}
	var (
		res ctrl.Result
		err error
	)
	switch {
	case cv.Spec.Plugin.Source.Git != nil:
		res, err = r.reconcileGit(ctx, s)
	case cv.Spec.Plugin.Source.Artifact != "":
		res, err = r.reconcileArtifact(ctx, s)
	}
	// A status write that lost an optimistic-lock race (the CompilerVersion reconciler writes
	// the same object) is returned like any error: the workqueue retries it with its
	// rate-limited backoff, on fresh data.
	if err := errors.Join(err, r.writeStatus(ctx, s)); err != nil {
		return ctrl.Result{}, err
	}
	return res, nil
}

// reconcileGit finds or starts the build Job for the spec's inputs and turns its outcome
// into status.
func (r *BuildReconciler) reconcileGit(ctx context.Context, s *buildScope) (ctrl.Result, error) {
	cv := s.cv
	if upToDate(cv) {
		return ctrl.Result{}, nil
	}
	in := inputsOf(cv)
	key := in.key()
	name := buildJobName(cv.Name, key)
	log := logf.FromContext(ctx).WithValues("job", name)
	ctx = logf.IntoContext(ctx, log)

	job := &batchv1.Job{}
	err := r.Get(ctx, types.NamespacedName{Namespace: cv.Namespace, Name: name}, job)
	if apierrors.IsNotFound(err) {
		if refusal, err := r.checkCredentials(ctx, cv); err != nil || refusal != "" {
			if refusal != "" {
				// Labelling the Secret is the fix, and Secrets are not watched: look again.
				r.refuseBuild(s, ReasonCredentialsNotAllowed, refusal)
				return ctrl.Result{RequeueAfter: r.CredentialsRecheck}, nil
			}
			return ctrl.Result{}, err
		}
		return r.startBuild(ctx, s, key)
	}
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("get build Job %s: %w", name, err)
	}
	if !metav1.IsControlledBy(job, cv) || job.Annotations[AnnotationBuildKey] != key {
		if job.DeletionTimestamp != nil {
			// The Job of a deleted namesake (or of other inputs) is going away.
			return ctrl.Result{RequeueAfter: 5 * time.Second}, nil
		}
		s.decision = decided(nil, metav1.ConditionFalse, ReasonBuildJobConflict,
			fmt.Sprintf("Job %s exists but is not this CompilerVersion's build of the current spec; delete it to let the build run", name))
		return ctrl.Result{}, nil
	}

	if raw := job.Annotations[AnnotationBuildRecord]; raw != "" {
		return ctrl.Result{}, r.useRecord(ctx, s, job, raw, key)
	}

	pods, err := r.buildPods(ctx, job)
	if err != nil {
		return ctrl.Result{}, err
	}
	finished, succeeded, cond := jobOutcome(job)
	if !finished {
		s.decision = building(cv, job, pods)
		return ctrl.Result{}, nil
	}
	rec, wait := r.observeFinished(ctx, cv, job, key, succeeded, cond, pods)
	if wait {
		// The Job is complete but its pod's final status is not in the cache yet; the pod
		// watch brings it, the requeue is a safety net.
		s.decision = building(cv, job, pods)
		return ctrl.Result{RequeueAfter: 5 * time.Second}, nil
	}
	if rec.succeeded() {
		if err := r.signBuild(ctx, cv, rec.Result, key); err != nil {
			return ctrl.Result{}, err
		}
	}
	if err := r.record(ctx, job, rec); err != nil {
		return ctrl.Result{}, err
	}
	r.announce(ctx, cv, job, rec, jobDurationSeconds(job, cond))
	s.decision = decisionFromRecord(job, rec)
	if rec.succeeded() {
		r.pruneJobs(ctx, cv, job.Name)
	}
	return ctrl.Result{}, r.checkTrust(ctx, s, "git", buildSignatureAnnotations(cv, key))
}

// useRecord decides from the record of a finished build: checked again (revalidateRecord) and,
// under a trust policy, its artifact's signature with it.
func (r *BuildReconciler) useRecord(ctx context.Context, s *buildScope, job *batchv1.Job, raw, key string) error {
	rec, err := decodeRecord(raw)
	if err == nil {
		err = revalidateRecord(rec, s.cv, key)
	}
	if err != nil {
		s.decision = decided(nil, metav1.ConditionFalse, ReasonInvalidBuildResult,
			fmt.Sprintf("Job %s: the recorded build result cannot be used: %v; delete the Job to build again", job.Name, err))
		return nil
	}
	s.decision = decisionFromRecord(job, rec)
	return r.checkTrust(ctx, s, "git", buildSignatureAnnotations(s.cv, key))
}

// startBuild creates the build Job and stops builds of inputs that are no longer wanted.
func (r *BuildReconciler) startBuild(ctx context.Context, s *buildScope, key string) (ctrl.Result, error) {
	cv := s.cv
	log := logf.FromContext(ctx)
	job := newBuildJob(cv, key, r.Job)
	if err := controllerutil.SetControllerReference(cv, job, r.Scheme()); err != nil {
		return ctrl.Result{}, fmt.Errorf("own build Job %s: %w", job.Name, err)
	}
	if err := r.Create(ctx, job); err != nil {
		if apierrors.IsAlreadyExists(err) {
			// Created by an earlier pass the cache has not shown yet; its watch event
			// brings it back here.
			log.V(1).Info("build Job already exists")
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, fmt.Errorf("create build Job %s: %w", job.Name, err)
	}
	g := cv.Spec.Plugin.Source.Git
	log.Info("build started", "url", g.URL, "revision", g.Revision, "package", cv.Spec.Plugin.Package, "goVersion", cv.Spec.GoVersion)
	r.Recorder.Eventf(cv, job, corev1.EventTypeNormal, "BuildStarted", "Build",
		"Job %s builds %s at %s (%s) with Go %s", job.Name, g.URL, g.Revision, cv.Spec.Plugin.Package, cv.Spec.GoVersion)
	r.pruneJobs(ctx, cv, job.Name)
	s.decision = building(cv, job, nil)
	return ctrl.Result{}, nil
}

// building is the decision while a build runs: no artifact (the previous one was for another
// spec), Built=False, phase Building.
func building(cv *splicev1.CompilerVersion, job *batchv1.Job, pods []corev1.Pod) *buildDecision {
	g := cv.Spec.Plugin.Source.Git
	msg := fmt.Sprintf("Job %s is building %s at %s", job.Name, g.URL, g.Revision)
	if sorted := newestFirst(pods); len(sorted) > 0 {
		if w := podWaiting(sorted[0]); w != "" {
			msg += "; " + w
		}
	}
	return decided(nil, metav1.ConditionFalse, ReasonBuilding, msg)
}

func decisionFromRecord(job *batchv1.Job, rec *buildRecord) *buildDecision {
	if rec.succeeded() {
		return decided(artifactFromResult(rec.Result), metav1.ConditionTrue, ReasonBuildSucceeded,
			fmt.Sprintf("Job %s built %s (plugin path %s)", job.Name, rec.Result.Ref, rec.Result.PluginPath))
	}
	return decided(nil, metav1.ConditionFalse, rec.Reason, rec.Message)
}

// buildPods lists the pods of job (from the cache: the CompilerVersion reconciler watches pods).
func (r *BuildReconciler) buildPods(ctx context.Context, job *batchv1.Job) ([]corev1.Pod, error) {
	var list corev1.PodList
	if err := r.List(ctx, &list, client.InNamespace(job.Namespace), client.MatchingLabels{
		LabelCompilerVersionUID: job.Labels[LabelCompilerVersionUID], LabelBuildKey: job.Labels[LabelBuildKey],
	}); err != nil {
		return nil, fmt.Errorf("list pods of build Job %s: %w", job.Name, err)
	}
	pods := list.Items[:0]
	for _, p := range list.Items {
		if metav1.IsControlledBy(&p, job) {
			pods = append(pods, p)
		}
	}
	return pods, nil
}

// observeFinished turns a finished Job into a record. wait is true when a succeeded Job's
// pod is not visible yet.
func (r *BuildReconciler) observeFinished(ctx context.Context, cv *splicev1.CompilerVersion, job *batchv1.Job, key string,
	succeeded bool, cond *batchv1.JobCondition, pods []corev1.Pod) (rec *buildRecord, wait bool) {
	if succeeded {
		pod := succeededPod(pods)
		if pod == nil {
			if r.Clock.Since(cond.LastTransitionTime.Time) < time.Minute {
				return nil, true
			}
			return &buildRecord{Reason: ReasonInvalidBuildResult, Message: fmt.Sprintf(
				"build Job %s succeeded but no pod with its result is left; delete the Job to build again", job.Name)}, false
		}
		res, err := validateBuildResult(buildTerminated(pod).Message, cv, key)
		if err != nil {
			return &buildRecord{Reason: ReasonInvalidBuildResult, Message: fmt.Sprintf(
				"build Job %s succeeded but its result cannot be used: %v", job.Name, err)}, false
		}
		return &buildRecord{Result: res}, false
	}

	reason := ReasonBuildJobFailed
	msg := fmt.Sprintf("the Job gave up: %s: %s", cond.Reason, cond.Message)
	var (
		tail   string
		logErr = errors.New("no build pod is left")
	)
	if pod := latestFailedPod(pods); pod != nil {
		if rr, m, ok := podFailure(pod); ok {
			reason, msg = rr, m
		}
		tail, logErr = r.logs.tail(ctx, pod, buildContainer, logTailLines)
		if logErr != nil {
			logf.FromContext(ctx).V(1).Info("build log unavailable", "pod", klog.KObj(pod), "error", logErr.Error())
		}
	}
	return &buildRecord{Reason: reason, Message: failureMessage(job.Name, reason, msg, tail, logErr)}, false
}

// record stores the outcome on the Job with an optimistic lock: of several reconciles (or
// replicas) that see the Job finish, exactly one records it, and only that one counts and
// announces the outcome.
func (r *BuildReconciler) record(ctx context.Context, job *batchv1.Job, rec *buildRecord) error {
	raw, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode build record: %w", err)
	}
	patched := job.DeepCopy()
	if patched.Annotations == nil {
		patched.Annotations = map[string]string{}
	}
	patched.Annotations[AnnotationBuildRecord] = string(raw)
	if err := r.Patch(ctx, patched, client.MergeFromWithOptions(job, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("record the outcome on build Job %s: %w", job.Name, err)
	}
	return nil
}

// announce counts a recorded outcome and tells the user.
func (r *BuildReconciler) announce(ctx context.Context, cv *splicev1.CompilerVersion, job *batchv1.Job, rec *buildRecord, seconds float64) {
	result, reason := "succeeded", ReasonBuildSucceeded
	if !rec.succeeded() {
		result, reason = "failed", rec.Reason
	}
	buildResults.WithLabelValues("git", result, reason).Inc()
	if seconds > 0 {
		buildDuration.WithLabelValues(result).Observe(seconds)
	}
	log := logf.FromContext(ctx)
	if rec.succeeded() {
		log.Info("build succeeded", "ref", rec.Result.Ref, "pluginPath", rec.Result.PluginPath, "seconds", seconds)
		r.Recorder.Eventf(cv, job, corev1.EventTypeNormal, ReasonBuildSucceeded, "Build", "Job %s built %s (plugin path %s)",
			job.Name, rec.Result.Ref, rec.Result.PluginPath)
		return
	}
	log.Info("build failed", "reason", rec.Reason, "seconds", seconds)
	r.Recorder.Eventf(cv, job, corev1.EventTypeWarning, rec.Reason, "Build", "%s", clipMessage(rec.Message, maxEventNote))
}

// pruneJobs deletes this CompilerVersion's Jobs for other inputs: unfinished ones at once (a
// changed spec never uses a stale build), finished ones beyond the history limit.
func (r *BuildReconciler) pruneJobs(ctx context.Context, cv *splicev1.CompilerVersion, current string) {
	log := logf.FromContext(ctx)
	var list batchv1.JobList
	if err := r.List(ctx, &list, client.InNamespace(cv.Namespace), client.MatchingLabels{LabelCompilerVersionUID: string(cv.UID)}); err != nil {
		log.Error(err, "list build Jobs to prune")
		return
	}
	var finished []*batchv1.Job
	var stale []*batchv1.Job
	for i := range list.Items {
		j := &list.Items[i]
		if j.Name == current || j.DeletionTimestamp != nil || !metav1.IsControlledBy(j, cv) {
			continue
		}
		if done, _, _ := jobOutcome(j); done {
			finished = append(finished, j)
		} else {
			stale = append(stale, j)
		}
	}
	sort.Slice(finished, func(a, b int) bool { return finished[b].CreationTimestamp.Before(&finished[a].CreationTimestamp) })
	if len(finished) > r.Job.HistoryLimit {
		stale = append(stale, finished[r.Job.HistoryLimit:]...)
	}
	for _, j := range stale {
		if err := r.Delete(ctx, j, client.PropagationPolicy(metav1.DeletePropagationBackground)); client.IgnoreNotFound(err) != nil {
			log.Error(err, "delete superseded build Job", "staleJob", j.Name)
			continue
		}
		log.V(1).Info("deleted superseded build Job", "staleJob", j.Name)
	}
}

// reconcileArtifact resolves a prebuilt artifact from its config in the registry.
func (r *BuildReconciler) reconcileArtifact(ctx context.Context, s *buildScope) (ctrl.Result, error) {
	cv := s.cv
	ref := cv.Spec.Plugin.Source.Artifact
	if upToDate(cv) {
		return ctrl.Result{}, nil
	}
	if c := meta.FindStatusCondition(cv.Status.Conditions, splicev1.ConditionBuilt); c != nil && c.ObservedGeneration == cv.Generation &&
		c.Status == metav1.ConditionFalse && permanentRefusal[c.Reason] {
		return ctrl.Result{}, nil // refused for this very spec; only a spec change can help
	}
	log := logf.FromContext(ctx).WithValues("artifact", ref)

	var art *splicev1.ArtifactStatus
	if cur := cv.Status.Artifact; cur != nil && cur.Ref == ref {
		// What a digest names never changes: a spec change that keeps the reference is
		// checked against what was read before.
		art = cur.DeepCopy()
	} else {
		fetchCtx, cancel := context.WithTimeout(ctx, r.FetchTimeout)
		info, err := artifact.FetchConfig(fetchCtx, ref, r.RegistryOptions...)
		cancel()
		if err != nil {
			if permanentArtifactError(err) {
				r.refuse(s, ReasonInvalidArtifact, fmt.Sprintf("artifact %s cannot be used: %v", ref, err))
				return ctrl.Result{}, nil
			}
			s.decision = decided(nil, metav1.ConditionFalse, ReasonArtifactUnavailable,
				fmt.Sprintf("read the config of artifact %s: %v; retrying (if the registry needs credentials, give them to the manager)", ref, err))
			return ctrl.Result{}, fmt.Errorf("fetch artifact config %s: %w", ref, err)
		}
		art = artifactFromInfo(ref, info)
		log.V(1).Info("read artifact config", "digest", info.Digest, "goVersion", info.Config.GoVersion, "pluginPath", info.Config.PluginPath)
	}
	if reason, msg := checkArtifact(cv, art); reason != "" {
		r.refuse(s, reason, msg)
		return ctrl.Result{}, nil
	}
	s.decision = decided(art, metav1.ConditionTrue, ReasonArtifactResolved,
		fmt.Sprintf("artifact %s (built with %s, plugin API %s)", art.Digest, art.GoVersion, art.APIVersion))
	s.onChange = func() {
		buildResults.WithLabelValues("artifact", "resolved", ReasonArtifactResolved).Inc()
		r.Recorder.Eventf(cv, nil, corev1.EventTypeNormal, ReasonArtifactResolved, "ResolveArtifact", "resolved %s (%s)", ref, art.GoVersion)
	}
	if err := r.checkTrust(ctx, s, "artifact", nil); err != nil {
		return ctrl.Result{}, err
	}
	if s.decision.artifact == nil && s.decision.built.Reason != trust.ReasonRegistryNotAllowed {
		// Refused for its signatures: signing it is the fix, and signatures are not watched.
		// A repository outside the policy's registries needs a spec (or policy) change.
		return ctrl.Result{RequeueAfter: r.CredentialsRecheck}, nil
	}
	return ctrl.Result{}, nil
}

// permanentRefusal are the reasons for which retrying the same spec cannot help.
var permanentRefusal = map[string]bool{ReasonInvalidArtifact: true, ReasonGoVersionMismatch: true, builder.ReasonAPIVersionMismatch: true,
	builder.ReasonVulnerable: true, ReasonVulnerabilitiesNotScanned: true}

func (r *BuildReconciler) refuse(s *buildScope, reason, msg string) {
	s.decision = decided(nil, metav1.ConditionFalse, reason, msg)
	s.onChange = func() {
		buildResults.WithLabelValues("artifact", "refused", reason).Inc()
		r.Recorder.Eventf(s.cv, nil, corev1.EventTypeWarning, reason, "ResolveArtifact", "%s", clipMessage(msg, maxEventNote))
	}
}

// writeStatus patches the fields this reconciler owns, once, with an optimistic lock: the
// CompilerVersion reconciler writes other fields of the same object, and the merge patch
// replaces the whole conditions list, so a conflict (returned, and retried with backoff) is how
// neither loses the other's update. Nothing is written when nothing changed.
func (r *BuildReconciler) writeStatus(ctx context.Context, s *buildScope) error {
	if s.decision == nil {
		return nil
	}
	cv := s.cv
	next := applyBuildDecision(cv.Status, s.decision, cv.Generation, metav1.NewTime(r.Clock.Now()))
	if equality.Semantic.DeepEqual(cv.Status, next) {
		return nil
	}
	orig := cv.DeepCopy()
	prev := meta.FindStatusCondition(orig.Status.Conditions, splicev1.ConditionBuilt)
	cv.Status = next
	if err := r.Status().Patch(ctx, cv, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("patch status: %w", err)
	}
	cur := meta.FindStatusCondition(cv.Status.Conditions, splicev1.ConditionBuilt)
	if s.onChange != nil && (prev == nil || prev.Status != cur.Status || prev.Reason != cur.Reason) {
		s.onChange()
	}
	logf.FromContext(ctx).V(1).Info("build status written", "built", cur.Status, "reason", cur.Reason)
	return nil
}

// SetupWithManager registers the reconciler. CompilerVersions are watched for spec changes
// only (status writes, its own and the CompilerVersion reconciler's, do not trigger it); build Jobs
// through their owner references; build pods through their Job, for the moment they finish.
func (r *BuildReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if err := r.Job.Validate(); err != nil {
		return fmt.Errorf("build Job options: %w", err)
	}
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.FetchTimeout == 0 {
		r.FetchTimeout = 30 * time.Second
	}
	if r.CredentialsRecheck == 0 {
		r.CredentialsRecheck = DefaultCredentialsRecheck
	}
	if r.Pods == nil {
		cs, err := corev1client.NewForConfig(mgr.GetConfig())
		if err != nil {
			return fmt.Errorf("pod log client: %w", err)
		}
		r.Pods = cs
	}
	r.logs = &podLogs{pods: r.Pods}
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	isBuildPod := predicate.NewPredicateFuncs(func(o client.Object) bool {
		_, ok := o.GetLabels()[LabelBuildKey]
		return ok
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("build").
		For(&splicev1.CompilerVersion{}, ctrlbuilder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&batchv1.Job{}).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(r.compilerVersionOfPod), ctrlbuilder.WithPredicates(isBuildPod)).
		WithOptions(controller.Options{MaxConcurrentReconciles: 2}).
		Complete(r)
}

// BuildCacheOptions restrict the manager's Job cache to build Jobs (labelled LabelBuildKey): the
// build controller owns no other Jobs, and a cluster's other Jobs would only cost memory.
func BuildCacheOptions() map[client.Object]cache.ByObject {
	hasKey, err := labels.NewRequirement(LabelBuildKey, selection.Exists, nil)
	if err != nil {
		panic(err) // a constant label key
	}
	return map[client.Object]cache.ByObject{&batchv1.Job{}: {Label: labels.NewSelector().Add(*hasKey)}}
}

// compilerVersionOfPod maps a build pod to the CompilerVersion that owns its Job.
func (r *BuildReconciler) compilerVersionOfPod(ctx context.Context, o client.Object) []reconcile.Request {
	owner := metav1.GetControllerOf(o)
	if owner == nil || owner.Kind != "Job" {
		return nil
	}
	job := &batchv1.Job{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: o.GetNamespace(), Name: owner.Name}, job); err != nil {
		return nil
	}
	cvOwner := metav1.GetControllerOf(job)
	if cvOwner == nil || cvOwner.Kind != "CompilerVersion" || cvOwner.APIVersion != splicev1.GroupVersion.String() {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: cvOwner.Name}}}
}

// SetupBuildController registers the build reconciler with options from the environment
// (BuildJobOptionsFromEnv); insecureRegistries may be reached over plain HTTP, by the
// manager's reads and by the builds' pushes; t checks and signs artifacts.
func SetupBuildController(mgr ctrl.Manager, insecureRegistries []string, t ArtifactTrust) error {
	o, err := BuildJobOptionsFromEnv()
	if err != nil {
		return err
	}
	o.InsecureRegistries = insecureRegistries
	return (&BuildReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("splice-build"), Job: o, Trust: t,
		RegistryOptions: []artifact.Option{artifact.WithInsecureRegistries(insecureRegistries...)}}).SetupWithManager(mgr)
}
