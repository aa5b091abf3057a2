package main

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/internal/testio"
)

// createRollout stores canaryCV and canaryPods in ns, status included, as the controller and
// the agents would have left them: a canary paused at its second step awaiting promotion.
func createRollout(t *testing.T, c client.Client, ns string) *splicev1.CompilerVersion {
	t.Helper()
	ctx := context.Background()
	cv := canaryCV(ns)
	status := cv.Status
	cv.Generation, cv.Status = 0, splicev1.CompilerVersionStatus{}
	if err := c.Create(ctx, cv); err != nil {
		t.Fatalf("create CompilerVersion: %v", err)
	}
	cv.Status = status
	cv.Status.ObservedGeneration = cv.Generation
	if err := c.Status().Update(ctx, cv); err != nil {
		t.Fatalf("set CompilerVersion status: %v", err)
	}
	for _, p := range canaryPods(t, ns) {
		createPod(t, c, p)
	}
	return cv
}

func createPod(t *testing.T, c client.Client, p corev1.Pod) {
	t.Helper()
	ctx := context.Background()
	st := p.Status
	if err := c.Create(ctx, &p); err != nil {
		t.Fatalf("create pod %s: %v", p.Name, err)
	}
	p.Status = st
	if err := c.Status().Update(ctx, &p); err != nil {
		t.Fatalf("set pod %s status: %v", p.Name, err)
	}
}

func TestGet(t *testing.T) {
	c := apiServer(t)
	ctx := context.Background()
	ns := newNamespace(t, c)
	createRollout(t, c, ns)
	// A pod the selector does not match is not shown.
	createPod(t, c, testPod(ns, "billing-0", podOpts{labels: map[string]string{"app": "billing"}}))

	code, out, errOut := kubectlSplice(ctx, "get", "greeter", "-n", ns)
	if code != 0 {
		t.Fatalf("get: exit %d, stderr %s", code, errOut)
	}
	// The output is render's, of what the API server holds.
	var cv splicev1.CompilerVersion
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "greeter"}, &cv); err != nil {
		t.Fatal(err)
	}
	var pods corev1.PodList
	if err := c.List(ctx, &pods, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if want := render(&cv, pods.Items, time.Now()); out != want {
		t.Errorf("get printed\n%s\nwant\n%s", out, want)
	}
	for _, want := range []string{
		"Namespace:  " + ns,
		"Status:     ॥ Paused (AwaitingPromotion)",
		"  Step:     2/3: setWeight 50%, trafficPercent 10%, pause until promoted, analysis (failed swaps <= 0, errors <= 1% over >= 100 calls, swap <= 500ms)",
		"  Stable:   1a2b3c4d5e6f  registry.example.com/team/greeter-plugin",
		"  Canary:   9f8e7d6c5b4a  registry.example.com/team/greeter-plugin",
		"Pods:       4 targeted, 2 updated, 4 ready, 0 failed, 0 incompatible",
	} {
		if !strings.Contains(out, want+"\n") && !strings.Contains(out, want+" ") {
			t.Errorf("get output lacks %q:\n%s", want, out)
		}
	}
	podLine := regexp.MustCompile(`(?m)^greeter-7d9f-4xk2p\s+Running\s+9f8e7d6c5b4a \(canary\)\s+10%\s+✔ Ready\s+1a2b3c4d5e6f\+9f8e7d6c5b4a\s+182ms\s+1\s+\+96KiB\s+✔ True$`)
	if !podLine.MatchString(out) {
		t.Errorf("get output lacks the canary pod's line:\n%s", out)
	}
	if strings.Contains(out, "billing-0") {
		t.Errorf("get shows a pod the selector does not match:\n%s", out)
	}

	// kubectl's ways of naming the resource give the same tree.
	for _, args := range [][]string{{"get", "cv", "greeter"}, {"get", "cv/greeter"}, {"get", "compilerversions.splice.dev", "greeter"}} {
		code, alias, errOut := kubectlSplice(ctx, append(args, "--namespace", ns)...)
		if code != 0 || alias != out {
			t.Errorf("%q: exit %d, stderr %q, output differs from `get greeter`:\n%s", args, code, errOut, alias)
		}
	}
}

func TestErrorsSayWhatToFix(t *testing.T) {
	c := apiServer(t)
	ctx := context.Background()
	ns := newNamespace(t, c)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"get", "nope", "-n", ns}, `error: CompilerVersion "nope" not found in namespace "` + ns + `": check the name`},
		{[]string{"promote", "nope", "-n", ns}, `CompilerVersion "nope" not found in namespace "` + ns + `"`},
		{[]string{"get", "pods", "greeter", "-n", ns}, `error: unknown resource type "pods": kubectl splice get shows CompilerVersions (cv) only` +
			"\nSee 'kubectl splice get --help' for usage."},
		{[]string{"get", "-n", ns}, "missing the CompilerVersion's name"},
		{[]string{"abort", "-n", ns}, "abort takes exactly one argument, the CompilerVersion's name (got 0)"},
		{[]string{"pause", "greeter", "--wait=-1s", "-n", ns}, "--wait must not be negative"},
		{[]string{"get", "greeter", "--bogus"}, "unknown flag: --bogus"},
	}
	for _, tt := range tests {
		code, out, errOut := kubectlSplice(ctx, tt.args...)
		if code != 1 || !strings.Contains(errOut, tt.want) || out != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 1 and stderr containing %q", tt.args, code, out, errOut, tt.want)
		}
	}
}

// TestControls steers a rollout through every control and checks the annotations the API
// server holds after each, and that the spec is never touched.
func TestControls(t *testing.T) {
	c := apiServer(t)
	ctx := context.Background()
	ns := newNamespace(t, c)
	created := createRollout(t, c, ns)

	annotations := func() map[string]string {
		t.Helper()
		var cv splicev1.CompilerVersion
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "greeter"}, &cv); err != nil {
			t.Fatal(err)
		}
		if cv.Generation != created.Generation || !equality.Semantic.DeepEqual(cv.Spec, created.Spec) {
			t.Fatalf("the spec changed: generation %d -> %d", created.Generation, cv.Generation)
		}
		return cv.Annotations
	}
	ok := func(args ...string) string {
		t.Helper()
		code, out, errOut := kubectlSplice(ctx, append(args, "-n", ns, "--wait=0")...)
		if code != 0 {
			t.Fatalf("%q: exit %d, stderr %s", args, code, errOut)
		}
		return out
	}
	refused := func(want string, args ...string) {
		t.Helper()
		code, _, errOut := kubectlSplice(ctx, append(args, "-n", ns, "--wait=0")...)
		if code != 1 || !strings.Contains(errOut, want) {
			t.Fatalf("%q: exit %d, stderr %q; want a refusal containing %q", args, code, errOut, want)
		}
	}
	isNonce := func(v string) bool {
		_, err := time.Parse(time.RFC3339Nano, v)
		return err == nil && len(v) <= 64
	}
	contains := func(out string, want ...string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("output lacks %q:\n%s", w, out)
			}
		}
	}

	out := ok("promote", "greeter")
	a := annotations()
	if !isNonce(a[splicev1.AnnotationPromote]) {
		t.Fatalf("splice.dev/promote = %q, want a timestamp nonce", a[splicev1.AnnotationPromote])
	}
	contains(out, "compilerversion.splice.dev/greeter promoted (splice.dev/promote="+a[splicev1.AnnotationPromote]+"): step 2/3 ends and step 3/3 begins",
		"Phase: ॥ Paused (AwaitingPromotion): Canary step 2/3")

	first := a[splicev1.AnnotationPromote]
	ok("promote", "greeter")
	if a := annotations(); a[splicev1.AnnotationPromote] == first {
		t.Errorf("a second promotion reused the nonce %q: the controller would ignore it", first)
	}

	out = ok("promote", "greeter", "--full")
	a = annotations()
	if !isNonce(a[splicev1.AnnotationPromoteFull]) {
		t.Fatalf("splice.dev/promote-full = %q, want a timestamp nonce", a[splicev1.AnnotationPromoteFull])
	}
	contains(out, "fully promoted", "every pod moves to 9f8e7d6c5b4a")

	out = ok("pause", "greeter")
	if a := annotations(); a[splicev1.AnnotationPaused] != "true" {
		t.Fatalf("splice.dev/paused = %q after pause", a[splicev1.AnnotationPaused])
	}
	contains(out, "compilerversion.splice.dev/greeter paused (splice.dev/paused=true)", "Phase: ")
	contains(ok("pause", "greeter"), "was already paused")
	refused("`kubectl splice resume greeter` first", "promote", "greeter")

	out = ok("resume", "greeter")
	if _, has := annotations()[splicev1.AnnotationPaused]; has {
		t.Fatalf("splice.dev/paused is still there after resume")
	}
	contains(out, "resumed (removed splice.dev/paused)")
	contains(ok("resume", "greeter"), "compilerversion.splice.dev/greeter was not paused (no splice.dev/paused annotation); nothing changed",
		"Note: it holds for another reason (AwaitingPromotion); `kubectl splice promote greeter` goes on to the next step")

	out = ok("abort", "greeter")
	if a := annotations(); a[splicev1.AnnotationAbort] != "true" {
		t.Fatalf("splice.dev/abort = %q after abort", a[splicev1.AnnotationAbort])
	}
	contains(out, "aborted (splice.dev/abort=true): every pod returns to the stable artifact 1a2b3c4d5e6f")
	refused("is aborted", "promote", "greeter")

	out = ok("retry", "greeter")
	a = annotations()
	if _, has := a[splicev1.AnnotationAbort]; has || !isNonce(a[splicev1.AnnotationRetry]) {
		t.Fatalf("after retry: annotations %v; want splice.dev/abort gone and a splice.dev/retry nonce", a)
	}
	contains(out, "retried (splice.dev/retry=", "removed splice.dev/abort")

	// Annotations other than the controls are left alone.
	if len(a) != 3 {
		t.Errorf("annotations after all controls: %v; want only promote, promote-full and retry", a)
	}
}

// TestControlWaitsForController checks that a control reports the phase the controller leaves
// once it has acted, and says so when it does not act in time. The test plays the controller's
// part: it records the nonce and moves the rollout on, as controllers/rollout_canary.go does.
func TestControlWaitsForController(t *testing.T) {
	g := NewWithT(t)
	c := apiServer(t)
	ctx := context.Background()
	ns := newNamespace(t, c)
	createRollout(t, c, ns)
	key := client.ObjectKey{Namespace: ns, Name: "greeter"}

	type result struct {
		code     int
		out, err string
	}
	done := make(chan result, 1)
	go func() {
		code, out, errOut := kubectlSplice(ctx, "promote", "greeter", "-n", ns, "--wait=30s")
		done <- result{code, out, errOut}
	}()

	var nonce string
	g.Eventually(func(g Gomega) {
		var cv splicev1.CompilerVersion
		g.Expect(c.Get(ctx, key, &cv)).To(Succeed())
		nonce = cv.Annotations[splicev1.AnnotationPromote]
		g.Expect(nonce).NotTo(BeEmpty())
	}, 20*time.Second, 50*time.Millisecond).Should(Succeed())
	g.Consistently(done, 300*time.Millisecond).ShouldNot(Receive(), "promote returned before the controller acted")

	var cv splicev1.CompilerVersion
	g.Expect(c.Get(ctx, key, &cv)).To(Succeed())
	msg := "Canary step 3/3 (setWeight 100%): 0 of 4 canary pods run " + canaryDigest
	cv.Status.ObservedControls.Promote = nonce
	cv.Status.Phase = splicev1.PhaseProgressing
	cv.Status.CurrentStepIndex = ptr.To[int32](2)
	apimeta.SetStatusCondition(&cv.Status.Conditions, condition(splicev1.ConditionProgressing, true, "Swapping", msg))
	apimeta.SetStatusCondition(&cv.Status.Conditions, condition(splicev1.ConditionPaused, false, "NoRollout", "not paused"))
	g.Expect(c.Status().Update(ctx, &cv)).To(Succeed())

	var r result
	g.Eventually(done, 20*time.Second).Should(Receive(&r))
	g.Expect(r.code).To(Equal(0), r.err)
	g.Expect(r.out).To(ContainSubstring("Phase: ◌ Progressing (Swapping): " + msg + "\n"))
	g.Expect(r.out).NotTo(ContainSubstring("has not acted"))

	// Nobody acts on this one.
	code, out, errOut := kubectlSplice(ctx, "pause", "greeter", "-n", ns, "--wait=300ms")
	g.Expect(code).To(Equal(0), errOut)
	g.Expect(out).To(ContainSubstring("Phase: ◌ Progressing (Swapping)"))
	g.Expect(out).To(ContainSubstring("The controller has not acted on it within 300ms: is the Splice manager running?"))
}

// TestGetWatch follows a rollout with --watch (not a terminal: frames after blank lines) while
// a pod swaps, the selector changes and the CompilerVersion goes away, then stops it as Ctrl-C
// would.
func TestGetWatch(t *testing.T) {
	g := NewWithT(t)
	c := apiServer(t)
	ns := newNamespace(t, c)
	createRollout(t, c, ns)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	out, errOut := &testio.SyncBuffer{}, &testio.SyncBuffer{}
	exited := make(chan int, 1)
	go func() {
		exited <- run(ctx, []string{"--kubeconfig", cluster.kubeconfig, "-n", ns, "get", "greeter", "--watch"}, out, errOut)
	}()
	frames := func() []string { return splitFrames(out.String()) }
	lastFrame := func() string {
		f := frames()
		if len(f) == 0 {
			return ""
		}
		return f[len(f)-1]
	}
	g.Eventually(lastFrame, 20*time.Second, 20*time.Millisecond).Should(ContainSubstring("greeter-7d9f-9zq7m  Running  1a2b3c4d5e6f (stable)"))

	// The controller tells a stable pod to take the canary; its agent starts swapping.
	var pod corev1.Pod
	g.Expect(c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "greeter-7d9f-9zq7m"}, &pod)).To(Succeed())
	pod.Annotations[splicev1.AnnotationDesiredArtifact] = canaryRef
	pod.Annotations[splicev1.AnnotationTrafficPercent] = "10"
	pod.Annotations[splicev1.AnnotationReport] = report(t, canaryDigest, splicev1.SwapSwapping, stableDigest, 0, 0, 0)
	g.Expect(c.Update(ctx, &pod)).To(Succeed())
	g.Eventually(lastFrame, 20*time.Second, 20*time.Millisecond).Should(MatchRegexp(
		`(?m)^greeter-7d9f-9zq7m\s+Running\s+9f8e7d6c5b4a \(canary\)\s+10%\s+◌ Swapping\s+1a2b3c4d5e6f`))

	// A new selector: the pods' watch follows it.
	createPod(t, c, testPod(ns, "greeter-blue-0", podOpts{labels: map[string]string{"app": "greeter", "track": "blue"}}))
	var cv splicev1.CompilerVersion
	g.Expect(c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "greeter"}, &cv)).To(Succeed())
	cv.Spec.Selector.MatchLabels["track"] = "blue"
	g.Expect(c.Update(ctx, &cv)).To(Succeed())
	g.Eventually(lastFrame, 20*time.Second, 20*time.Millisecond).Should(And(
		ContainSubstring("greeter-blue-0"), Not(ContainSubstring("greeter-7d9f-"))))

	g.Expect(c.Delete(ctx, &cv)).To(Succeed())
	g.Eventually(lastFrame, 20*time.Second, 20*time.Millisecond).Should(HavePrefix(
		`CompilerVersion "greeter" does not exist in namespace "` + ns + `"`))

	cancel()
	g.Eventually(exited, 10*time.Second).Should(Receive(Equal(0)))
	g.Expect(errOut.String()).To(BeEmpty())
	// Each frame is printed once, after a blank line, and differs from the one before.
	all := frames()
	g.Expect(len(all)).To(BeNumerically(">=", 4))
	for i := 1; i < len(all); i++ {
		g.Expect(all[i]).NotTo(Equal(all[i-1]), "frame %d repeats frame %d", i, i-1)
	}
	g.Expect(out.String()).NotTo(ContainSubstring(clearScreen), "clear-screen codes written to something that is not a terminal")
}

// splitFrames cuts --watch output into frames: each starts with "Name:" or, once the
// CompilerVersion is gone, "CompilerVersion ", after a blank line.
func splitFrames(s string) []string {
	starts := regexp.MustCompile(`(?m)(\A|\n\n)(Name:|CompilerVersion )`).FindAllStringIndex(s, -1)
	var frames []string
	for i, st := range starts {
		begin := st[0]
		if begin > 0 {
			begin += 2 // skip the blank line that separates frames
		}
		end := len(s)
		if i+1 < len(starts) {
			end = starts[i+1][0] + 1
		}
		frames = append(frames, s[begin:end])
	}
	return frames
}
