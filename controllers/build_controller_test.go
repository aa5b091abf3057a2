package controllers

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/artifact"
	"github.com/splice-dev/splice/builder"
	"github.com/splice-dev/splice/internal/testenv"
	"github.com/splice-dev/splice/internal/trust"
)

// mustPub is s's public key in PEM.
func mustPub(s *trust.Signer) string {
	pub, err := s.PublicKeyPEM()
	Expect(err).NotTo(HaveOccurred())
	return string(pub)
}

// The build controller runs in a manager of its own, next to the suite's status reconciler,
// against the same API server: both write the same status objects, as in a cluster. There is
// no kubelet and no Job controller here, so the tests play their part: they create the Job's
// pod and write its status and the Job's, with the termination message the builder would
// have left. The prebuilt artifact is a real plugin built by the builder and pushed to
// go-containerregistry's in-process registry.
var _ = Describe("Build controller", Ordered, func() {
	const testLabel = "splice.dev/test-suite"
	var (
		registryURL string
		// greeterRef is a real artifact (greeter plugin v1, built with the Go on PATH).
		greeterRef string
		greeterRes *builder.Result
		// mgrCache is the manager's cache, to see what it holds.
		mgrCache cache.Cache
	)

	BeforeAll(func() {
		srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
		DeferCleanup(srv.Close)
		registryURL = strings.TrimPrefix(srv.URL, "http://")

		var progress strings.Builder
		res, err := builder.Build(ctx, builder.Options{
			Source: testenv.RepoRoot(), Package: "./examples/greeter/plugins/v1", GoVersion: goOnPath(),
			Symbol: "Plugin", Repository: registryURL + "/team/greeter-plugin", WorkDir: GinkgoT().TempDir(), Insecure: true,
		}, &progress)
		Expect(err).NotTo(HaveOccurred(), progress.String())
		greeterRef, greeterRes = res.Ref, res

		opts := DefaultBuildJobOptions()
		opts.BuilderImage = "registry.example.com/splice/manager:test"
		mgrCache = startBuildManager("build", &BuildReconciler{
			Job:                opts,
			CredentialsRecheck: time.Second,
			RegistryOptions:    []artifact.Option{artifact.WithInsecureRegistries(registryURL)},
		})
	})

	// buildSecret creates a Secret a build may mount, labelled for builds or not: a git token,
	// and a Docker config without credentials (what the manager signs with, pushKeychain).
	buildSecret := func(ns, name string, labelled bool) *corev1.Secret {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			StringData: map[string]string{"token": "t0ken", corev1.DockerConfigJsonKey: `{"auths":{}}`}}
		if labelled {
			s.Labels = map[string]string{splicev1.LabelBuildCredentials: "true"}
		}
		Expect(k8sClient.Create(ctx, s)).To(Succeed())
		return s
	}

	// newGitCV creates the CompilerVersion "greeter" building from git in ns, with its labelled
	// Secrets; edits change it before it is created.
	newGitCV := func(ns string, edits ...func(*splicev1.CompilerVersion)) *splicev1.CompilerVersion {
		if err := k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "git-creds"}, &corev1.Secret{}); apierrors.IsNotFound(err) {
			buildSecret(ns, "git-creds", true)
			buildSecret(ns, "push-creds", true)
		}
		cv := &splicev1.CompilerVersion{
			ObjectMeta: metav1.ObjectMeta{Name: "greeter", Namespace: ns, Labels: map[string]string{testLabel: "build"}},
			Spec: splicev1.CompilerVersionSpec{
				GoVersion: "1.26.8",
				Plugin: splicev1.PluginSpec{
					Source: splicev1.PluginSource{Git: &splicev1.GitSource{
						URL: "https://git.example.com/team/greeter.git", Revision: "v1.3.0",
						SecretRef: &splicev1.LocalObjectReference{Name: "git-creds"},
					}},
					Package:       "./examples/greeter/plugins/v1",
					Repository:    "registry.example.com/team/greeter-plugin",
					PushSecretRef: &splicev1.LocalObjectReference{Name: "push-creds"},
					Tags:          []string{"prod"},
				},
				Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "greeter"}},
			},
		}
		for _, edit := range edits {
			edit(cv)
		}
		Expect(k8sClient.Create(ctx, cv)).To(Succeed())
		return cv
	}

	// jobsOf lists the build Jobs of cv.
	jobsOf := func(g Gomega, cv *splicev1.CompilerVersion) []batchv1.Job {
		var list batchv1.JobList
		g.Expect(k8sClient.List(ctx, &list, client.InNamespace(cv.Namespace), client.MatchingLabels{LabelCompilerVersionUID: string(cv.UID)})).To(Succeed())
		var live []batchv1.Job
		for _, j := range list.Items {
			if j.DeletionTimestamp == nil {
				live = append(live, j)
			}
		}
		return live
	}

	// theJob waits for cv's single build Job.
	theJob := func(cv *splicev1.CompilerVersion) *batchv1.Job {
		var job batchv1.Job
		Eventually(func(g Gomega) {
			jobs := jobsOf(g, cv)
			g.Expect(jobs).To(HaveLen(1))
			job = jobs[0]
		}).Should(Succeed())
		return &job
	}

	builtOf := func(g Gomega, cv *splicev1.CompilerVersion) (*splicev1.CompilerVersion, *metav1.Condition) {
		got := getCV(cv)(g)
		c := apimeta.FindStatusCondition(got.Status.Conditions, splicev1.ConditionBuilt)
		g.Expect(c).NotTo(BeNil(), "no Built condition yet")
		return got, c
	}

	// finishBuild plays the Job controller and the kubelet: a pod of the Job whose build
	// container terminated with exitCode and the builder's report (a builder.Result or
	// Failure) as its message, then the Job's terminal status.
	finishBuild := func(job *batchv1.Job, exitCode int32, report any) {
		raw, err := json.Marshal(report)
		Expect(err).NotTo(HaveOccurred())
		message := string(raw)
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name: job.Name + "-x7k2p", Namespace: job.Namespace,
				Labels:          job.Spec.Template.Labels,
				OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(job, batchv1.SchemeGroupVersion.WithKind("Job"))},
			},
			Spec: *job.Spec.Template.Spec.DeepCopy(),
		}
		// Bound to a node that does not exist, as a pod whose node is gone: the API server
		// cannot reach a kubelet for its log.
		pod.Spec.NodeName = "gone-node"
		Expect(k8sClient.Create(ctx, pod)).To(Succeed())
		now := metav1.Now()
		phase, reason := corev1.PodSucceeded, "Completed"
		if exitCode != 0 {
			phase, reason = corev1.PodFailed, "Error"
		}
		pod.Status = corev1.PodStatus{
			Phase: phase,
			InitContainerStatuses: []corev1.ContainerStatus{{Name: installContainer, Image: job.Spec.Template.Spec.InitContainers[0].Image,
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: now, FinishedAt: now}}}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: buildContainer, Image: job.Spec.Template.Spec.Containers[0].Image,
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
					ExitCode: exitCode, Reason: reason, Message: message, StartedAt: now, FinishedAt: now}}}},
		}
		Expect(k8sClient.Status().Update(ctx, pod)).To(Succeed())

		Eventually(func(g Gomega) {
			cur := &batchv1.Job{}
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(job), cur)).To(Succeed())
			start := metav1.NewTime(now.Add(-90 * time.Second))
			cur.Status.StartTime = &start
			if exitCode == 0 {
				cur.Status.Succeeded = 1
				cur.Status.CompletionTime = &now
				cur.Status.Conditions = []batchv1.JobCondition{
					{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, Reason: "CompletionsReached", LastTransitionTime: now, LastProbeTime: now},
					{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, Reason: "CompletionsReached", LastTransitionTime: now, LastProbeTime: now},
				}
			} else {
				cur.Status.Failed = 1
				cur.Status.Conditions = []batchv1.JobCondition{
					{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded", Message: "Job has reached the specified backoff limit", LastTransitionTime: now, LastProbeTime: now},
					{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded", Message: "Job has reached the specified backoff limit", LastTransitionTime: now, LastProbeTime: now},
				}
			}
			g.Expect(k8sClient.Status().Update(ctx, cur)).To(Succeed())
		}).Should(Succeed())
	}

	// rewriteRecord plays whoever may patch Jobs: the build record of job with from replaced
	// by to. Then a spec change (to strategy) makes the controller read the record again.
	rewriteRecord := func(cv *splicev1.CompilerVersion, job *batchv1.Job, from, to string, strategy splicev1.StrategyType) {
		recorded := &batchv1.Job{}
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(job), recorded)).To(Succeed())
		forged := strings.ReplaceAll(recorded.Annotations[AnnotationBuildRecord], from, to)
		Expect(forged).NotTo(Equal(recorded.Annotations[AnnotationBuildRecord]))
		patched := recorded.DeepCopy()
		patched.Annotations[AnnotationBuildRecord] = forged
		Expect(k8sClient.Patch(ctx, patched, client.MergeFrom(recorded))).To(Succeed())
		Eventually(func(g Gomega) {
			got := getCV(cv)(g)
			got.Spec.Strategy = splicev1.RolloutStrategy{Type: strategy}
			g.Expect(k8sClient.Update(ctx, got)).To(Succeed())
		}).Should(Succeed())
	}

	eventFor := func(g Gomega, cv *splicev1.CompilerVersion, reason string) *eventsv1.Event {
		var events eventsv1.EventList
		g.Expect(k8sClient.List(ctx, &events, client.InNamespace(cv.Namespace))).To(Succeed())
		for i, e := range events.Items {
			if e.Regarding.Name == cv.Name && e.Regarding.Kind == "CompilerVersion" && e.Reason == reason {
				return &events.Items[i]
			}
		}
		g.Expect(reason).To(BeEmpty(), "no %s event among %d events", reason, len(events.Items))
		return nil
	}

	It("creates one Job per build inputs, of the expected shape, owned by the CompilerVersion", func() {
		ns := newNamespace()
		cv := newGitCV(ns)
		job := theJob(cv)
		cv = getCV(cv)(Default)
		key := inputsOf(cv).key()

		Expect(job.Name).To(Equal(buildJobName("greeter", key)))
		Expect(job.OwnerReferences).To(ConsistOf(And(
			HaveField("Kind", "CompilerVersion"), HaveField("Name", "greeter"), HaveField("UID", cv.UID),
			HaveField("Controller", HaveValue(BeTrue())), HaveField("BlockOwnerDeletion", HaveValue(BeTrue())))))
		spec := job.Spec.Template.Spec
		Expect(spec.InitContainers).To(ConsistOf(And(
			HaveField("Image", "registry.example.com/splice/manager:test"),
			HaveField("Command", Equal([]string{"/builder", "install", builderInPod})))))
		Expect(spec.Containers).To(HaveLen(1))
		c := spec.Containers[0]
		Expect(c.Image).To(Equal("golang:1.26.8"))
		o := parseBuilderArgs(GinkgoT(), c)
		Expect(o.GitURL).To(Equal("https://git.example.com/team/greeter.git"))
		Expect(o.BuildKey).To(Equal(key))
		Expect(o.GitCredentials).To(Equal(gitCredentialsDir))
		Expect(o.Tags).To(Equal([]string{"prod"}))
		Expect(spec.Volumes).To(ContainElements(
			And(HaveField("Name", "git-credentials"), HaveField("Secret.SecretName", "git-creds")),
			And(HaveField("Name", "push-credentials"), HaveField("Secret.SecretName", "push-creds"))))
		Expect(c.VolumeMounts).To(ContainElements(
			And(HaveField("Name", "git-credentials"), HaveField("ReadOnly", true)),
			And(HaveField("Name", "push-credentials"), HaveField("ReadOnly", true), HaveField("MountPath", dockerConfigDir))))
		Expect(*spec.SecurityContext.RunAsNonRoot).To(BeTrue())
		Expect(*c.SecurityContext.AllowPrivilegeEscalation).To(BeFalse())
		Expect(*c.SecurityContext.ReadOnlyRootFilesystem).To(BeTrue())
		Expect(c.SecurityContext.Capabilities.Drop).To(Equal([]corev1.Capability{"ALL"}))
		Expect(*job.Spec.ActiveDeadlineSeconds).To(BeNumerically(">", 0))
		Expect(job.Spec.BackoffLimit).NotTo(BeNil())
		Expect(c.Resources.Limits).To(HaveKey(corev1.ResourceMemory))

		Eventually(func(g Gomega) {
			got, built := builtOf(g, cv)
			g.Expect(built.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(built.Reason).To(Equal(ReasonBuilding))
			g.Expect(built.Message).To(ContainSubstring(job.Name))
			g.Expect(got.Status.Phase).To(Equal(splicev1.PhaseBuilding))
			g.Expect(got.Status.Artifact).To(BeNil())
		}).Should(Succeed())
		Eventually(func(g Gomega) { eventFor(g, cv, "BuildStarted") }).Should(Succeed())

		// A change outside the build inputs is reconciled (the condition follows the new
		// generation) and finds the same Job: no second build.
		Eventually(func(g Gomega) {
			got := getCV(cv)(g)
			got.Spec.Selector.MatchLabels = map[string]string{"app": "greeter", "track": "stable"}
			g.Expect(k8sClient.Update(ctx, got)).To(Succeed())
		}).Should(Succeed())
		Eventually(func(g Gomega) {
			got, built := builtOf(g, cv)
			g.Expect(got.Generation).To(BeNumerically(">", cv.Generation))
			g.Expect(built.ObservedGeneration).To(Equal(got.Generation))
		}).Should(Succeed())
		Expect(jobsOf(Default, cv)).To(ConsistOf(HaveField("Name", job.Name)))

		// A new revision is a new build; the running one for the old revision is stopped.
		Eventually(func(g Gomega) {
			got := getCV(cv)(g)
			got.Spec.Plugin.Source.Git.Revision = "v1.3.1"
			g.Expect(k8sClient.Update(ctx, got)).To(Succeed())
		}).Should(Succeed())
		var next *batchv1.Job
		Eventually(func(g Gomega) {
			jobs := jobsOf(g, cv)
			g.Expect(jobs).To(HaveLen(1))
			g.Expect(jobs[0].Name).NotTo(Equal(job.Name))
			next = &jobs[0]
		}).Should(Succeed())
		Expect(next.Name).To(Equal(buildJobName("greeter", inputsOf(getCV(cv)(Default)).key())))
		o = parseBuilderArgs(GinkgoT(), next.Spec.Template.Spec.Containers[0])
		Expect(o.Revision).To(Equal("v1.3.1"))
	})

	It("caches build Jobs only", func() {
		ns := newNamespace()
		cv := newGitCV(ns)
		job := theJob(cv)
		Eventually(func() error { return mgrCache.Get(ctx, client.ObjectKeyFromObject(job), &batchv1.Job{}) }).Should(Succeed())
		other := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "not-a-build", Namespace: ns}, Spec: *job.Spec.DeepCopy()}
		other.Spec.Selector, other.Spec.Template.Labels = nil, nil
		Expect(k8sClient.Create(ctx, other)).To(Succeed())
		// The Job exists; the cache, which saw the build Job at once, never holds it.
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(other), &batchv1.Job{})).To(Succeed())
		Consistently(func() bool {
			return apierrors.IsNotFound(mgrCache.Get(ctx, client.ObjectKeyFromObject(other), &batchv1.Job{}))
		}).WithTimeout(2 * time.Second).Should(BeTrue())
	})

	It("turns a successful build into status.artifact, Built=True, an Event and metrics", func() {
		ns := newNamespace()
		cv := newGitCV(ns)
		job := theJob(cv)
		key := job.Annotations[AnnotationBuildKey]
		succeeded := func() float64 {
			return testutil.ToFloat64(buildResults.WithLabelValues("git", "succeeded", ReasonBuildSucceeded))
		}
		before, beforeCount := succeeded(), histogramCount("succeeded")

		digest := "sha256:" + strings.Repeat("5e", 32)
		result := builder.Result{
			Ref: "registry.example.com/team/greeter-plugin@" + digest, Digest: digest, GoVersion: "go1.26.8", APIVersion: "1.0.0",
			PluginPath: "github.com/splice-dev/splice/examples/greeter/plugins/v1/splice-0123456789abcdef", SourceHash: strings.Repeat("01", 32),
			BuiltAt: time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC), BuildKey: key,
		}
		finishBuild(job, 0, result)

		Eventually(func(g Gomega) {
			got, built := builtOf(g, cv)
			g.Expect(built.Status).To(Equal(metav1.ConditionTrue))
			g.Expect(built.Reason).To(Equal(ReasonBuildSucceeded))
			g.Expect(built.ObservedGeneration).To(Equal(got.Generation))
			g.Expect(got.Status.Artifact).NotTo(BeNil())
			g.Expect(*got.Status.Artifact).To(And(
				HaveField("Ref", result.Ref), HaveField("Digest", digest), HaveField("GoVersion", "go1.26.8"),
				HaveField("APIVersion", "1.0.0"), HaveField("BuiltAt.Time", BeTemporally("==", result.BuiltAt))))
			// The build's phases are gone; what comes next is the rollout's to say.
			g.Expect(got.Status.Phase).NotTo(BeElementOf(splicev1.PhaseBuilding, splicev1.PhaseBuildFailed))
			// The status reconciler's fields are there too: both writers coexist.
			g.Expect(apimeta.FindStatusCondition(got.Status.Conditions, splicev1.ConditionReady)).NotTo(BeNil())
		}).Should(Succeed())
		Eventually(func(g Gomega) { eventFor(g, cv, ReasonBuildSucceeded) }).Should(Succeed())
		recorded := &batchv1.Job{}
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(job), recorded)).To(Succeed())
		Expect(recorded.Annotations).To(HaveKeyWithValue(AnnotationBuildRecord, ContainSubstring(digest)))
		Expect(succeeded() - before).To(Equal(1.0))
		Expect(histogramCount("succeeded") - beforeCount).To(Equal(uint64(1)))

		// An unrelated spec change keeps the artifact (read back from the Job's record) and
		// starts nothing.
		Eventually(func(g Gomega) {
			got := getCV(cv)(g)
			got.Spec.Strategy = splicev1.RolloutStrategy{Type: splicev1.StrategyStrict}
			g.Expect(k8sClient.Update(ctx, got)).To(Succeed())
		}).Should(Succeed())
		Eventually(func(g Gomega) {
			got, built := builtOf(g, cv)
			g.Expect(built.ObservedGeneration).To(Equal(got.Generation))
			g.Expect(built.Status).To(Equal(metav1.ConditionTrue))
			g.Expect(got.Status.Artifact).To(HaveField("Digest", digest))
		}).Should(Succeed())
		Expect(jobsOf(Default, cv)).To(ConsistOf(HaveField("Name", job.Name)))
		Expect(succeeded()-before).To(Equal(1.0), "the reused build was counted again")

		// The record is checked again on every read: rewritten to name an artifact of another
		// repository, it is refused at the next spec change, as the termination message would be.
		rewriteRecord(cv, job, "team/greeter-plugin@", "attacker/plugin@", splicev1.StrategyRollingPatch)
		Eventually(func(g Gomega) {
			got, built := builtOf(g, cv)
			g.Expect(built.ObservedGeneration).To(Equal(got.Generation))
			g.Expect(built.Reason).To(Equal(ReasonInvalidBuildResult))
			g.Expect(built.Message).To(And(ContainSubstring("recorded build result"), ContainSubstring("spec.plugin.repository")))
			g.Expect(got.Status.Artifact).To(BeNil())
		}).Should(Succeed())

		// A new revision never keeps the artifact of the old one: it is cleared while the
		// new build runs.
		Eventually(func(g Gomega) {
			got := getCV(cv)(g)
			got.Spec.Plugin.Source.Git.Revision = "v1.4.0"
			g.Expect(k8sClient.Update(ctx, got)).To(Succeed())
		}).Should(Succeed())
		Eventually(func(g Gomega) {
			got, built := builtOf(g, cv)
			g.Expect(built.ObservedGeneration).To(Equal(got.Generation))
			g.Expect(built.Reason).To(Equal(ReasonBuilding))
			g.Expect(got.Status.Artifact).To(BeNil())
			g.Expect(got.Status.Phase).To(Equal(splicev1.PhaseBuilding))
		}).Should(Succeed())
		// The finished build of the old revision stays as history.
		Expect(jobsOf(Default, cv)).To(ConsistOf(HaveField("Name", job.Name),
			HaveField("Name", buildJobName("greeter", inputsOf(getCV(cv)(Default)).key()))))
	})

	It("starts no build with Secrets not labelled for builds, and starts it once they are", func() {
		ns := newNamespace()
		buildSecret(ns, "git-creds", true)
		push := buildSecret(ns, "push-creds", false)
		cv := newGitCV(ns)
		Eventually(func(g Gomega) {
			_, built := builtOf(g, cv)
			g.Expect(built.Reason).To(Equal(ReasonCredentialsNotAllowed))
			g.Expect(built.Message).To(And(ContainSubstring("spec.plugin.pushSecretRef"), ContainSubstring(splicev1.LabelBuildCredentials+"=true")))
			g.Expect(built.Message).NotTo(ContainSubstring("git.secretRef"))
		}).Should(Succeed())
		Eventually(func(g Gomega) { eventFor(g, cv, ReasonCredentialsNotAllowed) }).Should(Succeed())
		Consistently(func(g Gomega) { g.Expect(jobsOf(g, cv)).To(BeEmpty()) }, "2s").Should(Succeed())

		push.Labels = map[string]string{splicev1.LabelBuildCredentials: "true"}
		Expect(k8sClient.Update(ctx, push)).To(Succeed())
		theJob(cv)
		Eventually(func(g Gomega) {
			_, built := builtOf(g, cv)
			g.Expect(built.Reason).To(Equal(ReasonBuilding))
		}).Should(Succeed())
	})

	It("reports a failed build with the builder's reason, the log's fate and an Event", func() {
		ns := newNamespace()
		cv := newGitCV(ns)
		job := theJob(cv)
		failed := func() float64 {
			return testutil.ToFloat64(buildResults.WithLabelValues("git", "failed", builder.ReasonCompileFailed))
		}
		before := failed()
		f := builder.Failure{Reason: builder.ReasonCompileFailed, Error: "build plugin ./examples/greeter/plugins/v1: go build: exit status 1:\n./main.go:12:9: undefined: greet", BuildKey: job.Annotations[AnnotationBuildKey]}
		finishBuild(job, 1, f)

		Eventually(func(g Gomega) {
			got, built := builtOf(g, cv)
			g.Expect(built.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(built.Reason).To(Equal(builder.ReasonCompileFailed))
			g.Expect(built.Message).To(ContainSubstring("undefined: greet"))
			// No kubelet serves logs here: the message says so instead of failing.
			g.Expect(built.Message).To(ContainSubstring("build log unavailable"))
			g.Expect(got.Status.Phase).To(Equal(splicev1.PhaseBuildFailed))
			g.Expect(got.Status.Artifact).To(BeNil())
		}).Should(Succeed())
		Eventually(func(g Gomega) {
			e := eventFor(g, cv, builder.ReasonCompileFailed)
			g.Expect(e.Type).To(Equal(corev1.EventTypeWarning))
			g.Expect(e.Note).To(ContainSubstring("undefined: greet"))
		}).Should(Succeed())
		Expect(failed() - before).To(Equal(1.0))
	})

	It("refuses a build result that does not match the spec", func() {
		ns := newNamespace()
		cv := newGitCV(ns)
		job := theJob(cv)
		digest := "sha256:" + strings.Repeat("6f", 32)
		finishBuild(job, 0, builder.Result{
			Ref: "registry.example.com/someone-else/plugin@" + digest, Digest: digest, GoVersion: "go1.26.8", APIVersion: "1.0.0",
			PluginPath: "example.com/p/splice-0123456789abcdef", SourceHash: strings.Repeat("01", 32), BuiltAt: time.Now(),
			BuildKey: job.Annotations[AnnotationBuildKey],
		})
		Eventually(func(g Gomega) {
			got, built := builtOf(g, cv)
			g.Expect(built.Reason).To(Equal(ReasonInvalidBuildResult))
			g.Expect(built.Message).To(ContainSubstring("spec.plugin.repository"))
			g.Expect(got.Status.Artifact).To(BeNil())
		}).Should(Succeed())
	})

	newArtifactCV := func(ns, goVersion string) *splicev1.CompilerVersion {
		cv := &splicev1.CompilerVersion{
			ObjectMeta: metav1.ObjectMeta{Name: "prebuilt", Namespace: ns, Labels: map[string]string{testLabel: "build"}},
			Spec: splicev1.CompilerVersionSpec{
				GoVersion: goVersion,
				Plugin:    splicev1.PluginSpec{Source: splicev1.PluginSource{Artifact: greeterRef}},
				Selector:  metav1.LabelSelector{MatchLabels: map[string]string{"app": "greeter"}},
			},
		}
		Expect(k8sClient.Create(ctx, cv)).To(Succeed())
		return cv
	}

	It("resolves a prebuilt artifact from the registry, without a Job", func() {
		ns := newNamespace()
		cv := newArtifactCV(ns, strings.TrimPrefix(greeterRes.GoVersion, "go"))
		Eventually(func(g Gomega) {
			got, built := builtOf(g, cv)
			g.Expect(built.Status).To(Equal(metav1.ConditionTrue))
			g.Expect(built.Reason).To(Equal(ReasonArtifactResolved))
			g.Expect(got.Status.Artifact).NotTo(BeNil())
			g.Expect(*got.Status.Artifact).To(And(
				HaveField("Ref", greeterRef), HaveField("Digest", greeterRes.Digest),
				HaveField("GoVersion", greeterRes.GoVersion), HaveField("APIVersion", "1.0.0"),
				HaveField("BuiltAt.Time", BeTemporally("==", greeterRes.BuiltAt))))
		}).Should(Succeed())
		Eventually(func(g Gomega) { eventFor(g, cv, ReasonArtifactResolved) }).Should(Succeed())
		Expect(jobsOf(Default, getCV(cv)(Default))).To(BeEmpty())

		// The same reference under another goVersion is refused without asking the
		// registry again (a digest's content never changes).
		Eventually(func(g Gomega) {
			got := getCV(cv)(g)
			got.Spec.GoVersion = "1.26.7"
			g.Expect(k8sClient.Update(ctx, got)).To(Succeed())
		}).Should(Succeed())
		Eventually(func(g Gomega) {
			got, built := builtOf(g, cv)
			g.Expect(built.Reason).To(Equal(ReasonGoVersionMismatch))
			g.Expect(got.Status.Artifact).To(BeNil())
		}).Should(Succeed())
	})

	It("refuses a prebuilt artifact built by another Go release", func() {
		ns := newNamespace()
		cv := newArtifactCV(ns, "1.25.4")
		Eventually(func(g Gomega) {
			got, built := builtOf(g, cv)
			g.Expect(built.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(built.Reason).To(Equal(ReasonGoVersionMismatch))
			g.Expect(built.Message).To(And(ContainSubstring(greeterRes.GoVersion), ContainSubstring("spec.goVersion is 1.25.4")))
			g.Expect(got.Status.Artifact).To(BeNil())
			g.Expect(got.Status.Phase).To(Equal(splicev1.PhaseBuildFailed))
		}).Should(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(eventFor(g, cv, ReasonGoVersionMismatch).Type).To(Equal(corev1.EventTypeWarning))
		}).Should(Succeed())
	})

	It("says when the registry cannot be read", func() {
		ns := newNamespace()
		cv := &splicev1.CompilerVersion{
			ObjectMeta: metav1.ObjectMeta{Name: "unreachable", Namespace: ns, Labels: map[string]string{testLabel: "build"}},
			Spec: splicev1.CompilerVersionSpec{
				GoVersion: "1.26.8",
				Plugin:    splicev1.PluginSpec{Source: splicev1.PluginSource{Artifact: "127.0.0.1:1/team/greeter@" + digestA}},
				Selector:  metav1.LabelSelector{MatchLabels: map[string]string{"app": "greeter"}},
			},
		}
		Expect(k8sClient.Create(ctx, cv)).To(Succeed())
		Eventually(func(g Gomega) {
			_, built := builtOf(g, cv)
			g.Expect(built.Reason).To(Equal(ReasonArtifactUnavailable))
			g.Expect(built.Message).To(ContainSubstring("127.0.0.1:1"))
		}).Should(Succeed())
	})

	It("passes the vulnerability policy to the build, records the findings, and holds a prebuilt artifact to Block", func() {
		ns := newNamespace()
		cv := newGitCV(ns)
		job := theJob(cv)
		args := job.Spec.Template.Spec.Containers[0].Args
		Expect(args).NotTo(ContainElement(HavePrefix("--" + builder.FlagVulnPolicy)))
		// A result with findings (under Warn) reaches status.
		digest := "sha256:" + strings.Repeat("7a", 32)
		finishBuild(job, 0, builder.Result{
			Ref: "registry.example.com/team/greeter-plugin@" + digest, Digest: digest, GoVersion: "go1.26.8", APIVersion: "1.0.0",
			PluginPath: "github.com/splice-dev/splice/examples/greeter/plugins/v1/splice-0123456789abcdef", SourceHash: strings.Repeat("01", 32),
			BuiltAt: time.Now(), BuildKey: job.Annotations[AnnotationBuildKey],
			Vulnerabilities: &artifact.Vulnerabilities{Database: "https://vuln.example.com", Found: 1, IDs: []string{"GO-2099-0001"}},
		})
		Eventually(func(g Gomega) {
			got, built := builtOf(g, cv)
			g.Expect(built.Reason).To(Equal(ReasonBuildSucceeded))
			g.Expect(got.Status.Artifact).NotTo(BeNil())
			g.Expect(got.Status.Artifact.Vulnerabilities).To(Equal(&splicev1.VulnerabilitySummary{
				Database: "https://vuln.example.com", Found: 1, IDs: []string{"GO-2099-0001"}}))
		}).Should(Succeed())

		// Block is another build, and the builder is told.
		Eventually(func(g Gomega) {
			got := getCV(cv)(g)
			got.Spec.Plugin.VulnerabilityPolicy = splicev1.VulnerabilityPolicyBlock
			g.Expect(k8sClient.Update(ctx, got)).To(Succeed())
		}).Should(Succeed())
		Eventually(func(g Gomega) {
			jobs := jobsOf(g, cv)
			g.Expect(jobs).To(ContainElement(HaveField("Spec.Template.Spec.Containers", ContainElement(
				HaveField("Args", ContainElement("--"+builder.FlagVulnPolicy+"="+builder.VulnPolicyBlock))))))
		}).Should(Succeed())

		// A prebuilt artifact whose config records a finding: resolved under Warn, refused
		// under Block; one that records no scan is refused under Block too.
		pulled, err := artifact.Pull(ctx, greeterRef, GinkgoT().TempDir(), artifact.WithInsecureRegistries(registryURL))
		Expect(err).NotTo(HaveOccurred())
		scanned, _, err := artifact.Push(ctx, registryURL+"/team/scanned", pulled.Path, artifact.Config{
			Facts: *pulled.Facts, APIVersion: "1.0.0", BuiltAt: greeterRes.BuiltAt,
			Vulnerabilities: &artifact.Vulnerabilities{Database: "https://vuln.example.com", Found: 2, IDs: []string{"GO-2099-0001", "GO-2099-0002"}},
		}, artifact.WithInsecureRegistries(registryURL))
		Expect(err).NotTo(HaveOccurred())
		prebuilt := &splicev1.CompilerVersion{
			ObjectMeta: metav1.ObjectMeta{Name: "scanned", Namespace: ns, Labels: map[string]string{testLabel: "build"}},
			Spec: splicev1.CompilerVersionSpec{
				GoVersion: goOnPath(),
				Plugin:    splicev1.PluginSpec{Source: splicev1.PluginSource{Artifact: scanned}},
				Selector:  metav1.LabelSelector{MatchLabels: map[string]string{"app": "scanned"}},
			},
		}
		Expect(k8sClient.Create(ctx, prebuilt)).To(Succeed())
		Eventually(func(g Gomega) {
			got, built := builtOf(g, prebuilt)
			g.Expect(built.Reason).To(Equal(ReasonArtifactResolved))
			g.Expect(got.Status.Artifact).NotTo(BeNil())
			g.Expect(got.Status.Artifact.Vulnerabilities).To(HaveField("Found", int32(2)))
		}).Should(Succeed())
		block := func(ref, reason, says string) {
			Eventually(func(g Gomega) {
				got := getCV(prebuilt)(g)
				got.Spec.Plugin.Source.Artifact = ref
				got.Spec.Plugin.VulnerabilityPolicy = splicev1.VulnerabilityPolicyBlock
				g.Expect(k8sClient.Update(ctx, got)).To(Succeed())
			}).Should(Succeed())
			Eventually(func(g Gomega) {
				got, built := builtOf(g, prebuilt)
				g.Expect(built.ObservedGeneration).To(Equal(got.Generation))
				g.Expect(built.Reason).To(Equal(reason))
				g.Expect(built.Message).To(ContainSubstring(says))
				g.Expect(got.Status.Artifact).To(BeNil())
			}).Should(Succeed())
		}
		block(scanned, builder.ReasonVulnerable, "GO-2099-0001, GO-2099-0002")
		block(greeterRef, ReasonVulnerabilitiesNotScanned, "records no vulnerability scan")
	})

	// With a trust policy for one namespace, the build controller signs what its Jobs push and
	// holds every artifact of that namespace to the policy: in its own manager (its own
	// CompilerVersions), against the suite's real registry.
	Context("with a trust policy", Ordered, func() {
		const trustLabel = "build-trust"
		var (
			covered, uncovered string
			signer, teamKey    *trust.Signer
			other              *trust.Signer
			repo               string
		)
		keyPair := func() (*trust.Signer, string) {
			priv, pub, err := trust.GenerateKeyPair(nil)
			Expect(err).NotTo(HaveOccurred())
			s, err := trust.LoadSigner(priv, nil)
			Expect(err).NotTo(HaveOccurred())
			return s, string(pub)
		}
		BeforeAll(func() {
			covered, uncovered = newNamespace(), newNamespace()
			repo = registryURL + "/team/greeter-plugin"
			var managerPub, teamPub string
			signer, managerPub = keyPair()
			teamKey, teamPub = keyPair()
			other, _ = keyPair()
			opts := DefaultBuildJobOptions()
			opts.BuilderImage = "registry.example.com/splice/manager:test"
			startBuildManager(trustLabel, &BuildReconciler{
				Job:                opts,
				CredentialsRecheck: time.Second,
				RegistryOptions:    []artifact.Option{artifact.WithInsecureRegistries(registryURL)},
				Trust: ArtifactTrust{Signer: signer, Policies: &trust.Config{Policies: []trust.Policy{{
					Name: "team", Namespaces: []string{covered}, Registries: []string{registryURL + "/team/"},
					Keys: []string{managerPub, teamPub},
				}}}},
			})
		})
		sign := func(ref string, s *trust.Signer, annotations map[string]string) {
			Expect(trust.Sign(ctx, ref, s, annotations, artifact.WithInsecureRegistries(registryURL))).To(Succeed())
		}
		prebuilt := func(ns, name, ref string) *splicev1.CompilerVersion {
			cv := &splicev1.CompilerVersion{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{testLabel: trustLabel}},
				Spec: splicev1.CompilerVersionSpec{
					GoVersion: goOnPath(),
					Plugin:    splicev1.PluginSpec{Source: splicev1.PluginSource{Artifact: ref}},
					Selector:  metav1.LabelSelector{MatchLabels: map[string]string{"app": "greeter"}},
				},
			}
			Expect(k8sClient.Create(ctx, cv)).To(Succeed())
			return cv
		}
		// copyOf pushes another artifact of the same plugin to repo (one more manifest
		// annotation, so another digest).
		copyOf := func(ref, note string) string {
			d, err := name.NewDigest(ref)
			Expect(err).NotTo(HaveOccurred())
			img, err := remote.Image(d)
			Expect(err).NotTo(HaveOccurred())
			img = mutate.Annotations(img, map[string]string{"test.splice.dev/copy": note}).(v1.Image)
			dg, err := img.Digest()
			Expect(err).NotTo(HaveOccurred())
			to := d.Context().Digest(dg.String())
			Expect(remote.Write(to, img)).To(Succeed())
			return to.String()
		}

		It("refuses a prebuilt artifact no trusted key signed, and resolves it once one has", func() {
			ref := copyOf(greeterRef, "prebuilt")
			cv := prebuilt(covered, "prebuilt", ref)
			Eventually(func(g Gomega) {
				got, built := builtOf(g, cv)
				g.Expect(built.Status).To(Equal(metav1.ConditionFalse))
				g.Expect(built.Reason).To(Equal(trust.ReasonSignatureMissing))
				g.Expect(built.Message).To(And(ContainSubstring("trust policy team"), ContainSubstring("splice sign")))
				g.Expect(got.Status.Artifact).To(BeNil())
			}).Should(Succeed())
			Eventually(func(g Gomega) {
				g.Expect(eventFor(g, cv, trust.ReasonSignatureMissing).Type).To(Equal(corev1.EventTypeWarning))
			}).Should(Succeed())

			// A signature by a key the policy does not hold changes nothing but the reason.
			sign(ref, other, nil)
			Eventually(func(g Gomega) {
				got, built := builtOf(g, cv)
				g.Expect(built.Reason).To(Equal(trust.ReasonSignatureUntrusted))
				g.Expect(built.Message).To(ContainSubstring(other.Fingerprint()))
				g.Expect(got.Status.Artifact).To(BeNil())
			}).Should(Succeed())

			// Signed by the team's key, it resolves (signatures are looked at again without a
			// spec change), and status says who signed.
			sign(ref, teamKey, nil)
			Eventually(func(g Gomega) {
				got, built := builtOf(g, cv)
				g.Expect(built.Status).To(Equal(metav1.ConditionTrue))
				g.Expect(built.Reason).To(Equal(ReasonArtifactResolved))
				g.Expect(built.Message).To(ContainSubstring("signed by " + teamKey.Fingerprint()))
				g.Expect(got.Status.Artifact).NotTo(BeNil())
				g.Expect(got.Status.Artifact.Signature).To(Equal(&splicev1.SignatureStatus{Policy: "team", Key: teamKey.Fingerprint()}))
			}).Should(Succeed())
		})

		It("refuses an artifact outside the policy's registries, signed or not", func() {
			d, err := name.NewDigest(greeterRef)
			Expect(err).NotTo(HaveOccurred())
			img, err := remote.Image(d)
			Expect(err).NotTo(HaveOccurred())
			dg, err := img.Digest()
			Expect(err).NotTo(HaveOccurred())
			teammate, err := name.NewRepository(registryURL + "/teammate/greeter-plugin")
			Expect(err).NotTo(HaveOccurred())
			elsewhere := teammate.Digest(dg.String())
			Expect(remote.Write(elsewhere, img)).To(Succeed())
			sign(elsewhere.String(), teamKey, nil)
			cv := prebuilt(covered, "elsewhere", elsewhere.String())
			Eventually(func(g Gomega) {
				got, built := builtOf(g, cv)
				g.Expect(built.Reason).To(Equal(trust.ReasonRegistryNotAllowed))
				g.Expect(built.Message).To(ContainSubstring(registryURL + "/team/"))
				g.Expect(got.Status.Artifact).To(BeNil())
			}).Should(Succeed())
		})

		It("checks nothing in a namespace no policy covers, and says so", func() {
			cv := prebuilt(uncovered, "prebuilt", copyOf(greeterRef, "uncovered"))
			Eventually(func(g Gomega) {
				got, built := builtOf(g, cv)
				g.Expect(built.Status).To(Equal(metav1.ConditionTrue))
				g.Expect(built.Message).To(ContainSubstring("signature not checked: no trust policy covers namespace " + uncovered))
				g.Expect(got.Status.Artifact).NotTo(BeNil())
				g.Expect(got.Status.Artifact.Signature).To(BeNil())
			}).Should(Succeed())
		})

		It("signs what a build pushed, for this CompilerVersion and build, and refuses a record rewritten to another signed artifact", func() {
			cv := newGitCV(covered, func(cv *splicev1.CompilerVersion) {
				cv.Name, cv.Labels[testLabel] = "built", trustLabel
				cv.Spec.GoVersion, cv.Spec.Plugin.Repository = goOnPath(), repo
			})
			job := theJob(cv)
			key := job.Annotations[AnnotationBuildKey]
			pushed := copyOf(greeterRef, "built")
			res := *greeterRes
			res.Ref, res.BuildKey = pushed, key
			res.Digest = strings.TrimPrefix(pushed, repo+"@")
			finishBuild(job, 0, res)

			Eventually(func(g Gomega) {
				got, built := builtOf(g, cv)
				g.Expect(built.Status).To(Equal(metav1.ConditionTrue))
				g.Expect(built.Reason).To(Equal(ReasonBuildSucceeded))
				g.Expect(got.Status.Artifact).NotTo(BeNil())
				g.Expect(got.Status.Artifact.Signature).To(Equal(&splicev1.SignatureStatus{Policy: "team", Key: signer.Fingerprint()}))
			}).Should(Succeed())
			// The signature is in the registry, for this CompilerVersion and build only.
			got := getCV(cv)(Default)
			p := &trust.Policy{Name: "check", Namespaces: []string{"*"}, Keys: []string{mustPub(signer)}}
			v, err := p.Verify(ctx, pushed, buildSignatureAnnotations(got, key), artifact.WithInsecureRegistries(registryURL))
			Expect(err).NotTo(HaveOccurred())
			Expect(v.Annotations).To(HaveKeyWithValue(SignatureAnnotationCompilerVersionUID, string(got.UID)))

			// Another artifact of the same repository, signed by the same manager for another
			// CompilerVersion: a record rewritten to name it passes every check but the
			// signature's, and is refused at the next read.
			stolen := copyOf(greeterRef, "another build")
			sign(stolen, signer, map[string]string{
				SignatureAnnotationCompilerVersion: covered + "/other", SignatureAnnotationCompilerVersionUID: "0b1e5c1d-0000-4000-8000-000000000000",
				SignatureAnnotationBuildKey: key,
			})
			rewriteRecord(cv, job, strings.TrimPrefix(pushed, repo+"@"), strings.TrimPrefix(stolen, repo+"@"), splicev1.StrategyStrict)
			Eventually(func(g Gomega) {
				got, built := builtOf(g, cv)
				g.Expect(built.ObservedGeneration).To(Equal(got.Generation))
				g.Expect(built.Reason).To(Equal(trust.ReasonSignatureInvalid))
				g.Expect(built.Message).To(And(ContainSubstring("it lacks the annotation "+SignatureAnnotationCompilerVersion), ContainSubstring(covered+"/other")))
				g.Expect(got.Status.Artifact).To(BeNil())
			}).Should(Succeed())
		})
	})
})

// startBuildManager runs r in a manager of its own that sees only the CompilerVersions labelled
// splice.dev/test-suite=label, until the spec container ends; it returns the manager's cache.
func startBuildManager(label string, r *BuildReconciler) cache.Cache {
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:  scheme,
		Metrics: metricsserver.Options{BindAddress: "0"},
		// Two build managers (with and without a trust policy) run the same controller.
		Controller: ctrlconfig.Controller{SkipNameValidation: ptr.To(true)},
		Cache: cache.Options{ByObject: func() map[client.Object]cache.ByObject {
			by := BuildCacheOptions()
			by[&splicev1.CompilerVersion{}] = cache.ByObject{Label: labels.SelectorFromSet(labels.Set{"splice.dev/test-suite": label})}
			return by
		}()},
	})
	Expect(err).NotTo(HaveOccurred())
	r.Client = mgr.GetClient()
	r.Recorder = mgr.GetEventRecorder("splice-build-test")
	Expect(r.SetupWithManager(mgr)).To(Succeed())
	mctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer GinkgoRecover()
		defer close(done)
		Expect(mgr.Start(mctx)).To(Succeed())
	}()
	DeferCleanup(func() {
		stop()
		<-done
	})
	return mgr.GetCache()
}

// histogramCount is the number of observations of the build duration histogram for result.
func histogramCount(result string) uint64 {
	var m dto.Metric
	Expect(buildDuration.WithLabelValues(result).(prometheus.Histogram).Write(&m)).To(Succeed())
	return m.GetHistogram().GetSampleCount()
}

// goOnPath is the Go release building this test, which `go test` puts first on PATH.
func goOnPath() string { return strings.TrimPrefix(runtime.Version(), "go") }
