package sidecar_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/splice-dev/splice/artifact"
	"github.com/splice-dev/splice/examples/greeter/greeterbuild"
	"github.com/splice-dev/splice/examples/greeter/greeterproc"
	"github.com/splice-dev/splice/host/control"
	"github.com/splice-dev/splice/internal/testenv"
	"github.com/splice-dev/splice/internal/testio"
)

// The agent suite runs every part for real: a kube-apiserver and etcd (envtest) holding the
// Pod objects the agent watches and patches, go-containerregistry's registry on loopback
// holding artifacts pushed with package artifact, and greeter hosts (examples/greeter) built
// by the suite, running as child processes with their control sockets in temporary shared
// directories. The agent runs in the test process, as a user bound only to
// config/rbac/agent_role.yaml. There is no kubelet: the Pods never run, which the agent does
// not need.
var (
	env       *envtest.Environment
	adminKube kubernetes.Interface
	agentKube kubernetes.Interface
	hostBin   string
	agentBin  string
	agentKcfg string // kubeconfig file of the agent's user, for the agent binary
	regHost   string
	arts      = map[string]*pushed{}
	buildDir  string
	flakyDown atomic.Bool
)

const namespace = "default"

// pushed is an artifact in the suite's registry.
type pushed struct {
	name   string // greeter plugin source, or a variant name
	ref    string // pinned by digest
	digest string
	path   string // the .so as built
}

// apiVersions are what each greeter plugin declares (its APIVersion variable); the builder
// records the same value in the artifact's config.
var apiVersions = map[string]string{"v1": "1.0.0", "v2": "1.0.1", "v3": "1.1.0", "initpanic": "1.0.2", "callpanic": "1.0.3", "badsymbol": "1.0.4",
	"gopanic": "1.0.5", "major": "2.0.0"}

func TestAgent(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "sidecar")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	// Generous: the machine is shared, and a timeout here only bounds a failing spec.
	SetDefaultEventuallyTimeout(2 * time.Minute)
	SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
	var err error
	env, err = testenv.New()
	Expect(err).NotTo(HaveOccurred())
	cfg, err := env.Start()
	Expect(err).NotTo(HaveOccurred())
	adminKube = kubernetes.NewForConfigOrDie(cfg)
	user := agentUser(ctx, cfg)
	agentKube = kubernetes.NewForConfigOrDie(user.Config())

	buildDir, err = os.MkdirTemp("", "splice-agent-build-")
	Expect(err).NotTo(HaveOccurred())
	kcfg, err := user.KubeConfig()
	Expect(err).NotTo(HaveOccurred())
	agentKcfg = filepath.Join(buildDir, "agent.kubeconfig")
	Expect(os.WriteFile(agentKcfg, kcfg, 0o600)).To(Succeed())
	root, err := greeterbuild.FindModuleRoot()
	Expect(err).NotTo(HaveOccurred())
	agentBin = filepath.Join(buildDir, "agent")
	build := exec.CommandContext(ctx, "go", "build", "-o", agentBin, "./cmd/agent")
	build.Dir = root
	out, err := build.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "build cmd/agent:\n%s", out)
	b := &greeterbuild.Builder{Root: root, Out: buildDir}
	hostBin, err = b.Host(ctx)
	Expect(err).NotTo(HaveOccurred())
	nonce := fmt.Sprintf("agent%d", os.Getpid())
	built, err := b.Plugins(ctx, []string{"v1", "v2", "v3", "initpanic", "callpanic", "badsymbol", "gopanic", "major"}, nonce)
	Expect(err).NotTo(HaveOccurred())
	// The same v2 source built without -trimpath, unlike the host: every package the two
	// share hashes differently, so plugin.Open would fail.
	untrimmed := &greeterbuild.Builder{Root: root, Out: filepath.Join(buildDir, "untrimmed"), Flags: []string{}}
	v2u, err := untrimmed.Plugin(ctx, "v2", nonce+"u")
	Expect(err).NotTo(HaveOccurred())
	built["v2-untrimmed"] = v2u
	apiVersions["v2-untrimmed"] = apiVersions["v2"]

	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Repository greeter/flaky answers 503 while flakyDown is set: a registry outage.
		if flakyDown.Load() && strings.Contains(r.URL.Path, "/greeter/flaky/") {
			http.Error(w, "registry down for the test", http.StatusServiceUnavailable)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	DeferCleanup(srv.Close)
	regHost = strings.TrimPrefix(srv.URL, "http://")
	for name, a := range built {
		ref, digest, err := artifact.Push(ctx, regHost+"/greeter/plugin", a.Path, artifact.Config{APIVersion: apiVersions[name]}, artifact.WithTag(name), artifact.WithInsecure(true))
		Expect(err).NotTo(HaveOccurred(), "push %s", name)
		arts[name] = &pushed{name: name, ref: ref, digest: digest, path: a.Path}
	}
	ref, digest, err := artifact.Push(ctx, regHost+"/greeter/flaky", built["v2"].Path, artifact.Config{APIVersion: apiVersions["v2"]}, artifact.WithInsecure(true))
	Expect(err).NotTo(HaveOccurred())
	arts["v2-flaky"] = &pushed{name: "v2-flaky", ref: ref, digest: digest, path: built["v2"].Path}
}, NodeTimeout(15*time.Minute))

var _ = AfterSuite(func() {
	if env != nil {
		Expect(env.Stop()).To(Succeed())
	}
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
})

// agentUser returns a client configuration for a user holding exactly the agent's Role, read
// from config/rbac/agent_role.yaml, in the suite's namespace.
func agentUser(ctx context.Context, admin *rest.Config) *envtest.AuthenticatedUser {
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "rbac", "agent_role.yaml"))
	Expect(err).NotTo(HaveOccurred())
	var role rbacv1.Role
	Expect(yaml.UnmarshalStrict(raw, &role)).To(Succeed())
	role.Namespace = namespace
	kube := kubernetes.NewForConfigOrDie(admin)
	_, err = kube.RbacV1().Roles(namespace).Create(ctx, &role, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	const user = "splice-agent-under-test"
	_, err = kube.RbacV1().RoleBindings(namespace).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "splice-agent", Namespace: namespace},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	u, err := env.AddUser(envtest.User{Name: user}, admin)
	Expect(err).NotTo(HaveOccurred())
	return u
}

// hostProc is a greeter host running as a child process, serving v1 at start as an image
// would that shipped with it: the file sits in the shared directory under the name an agent
// pull gives it, and its version is named by v1's artifact digest.
type hostProc struct {
	*greeterproc.Host
	shared string
	digest string // names the cold-start v1 ("": the host names it by the file's sha256)
	out    *testio.SyncBuffer
	client *control.Client
	args   []string // the extra flags it was started with
}

func startHost(ctx context.Context, extra ...string) *hostProc {
	GinkgoHelper()
	return startHostNamed(ctx, arts["v1"].digest, extra...)
}

// startHostNamed is startHost with the cold-start v1 named by digest, as -digest names it.
func startHostNamed(ctx context.Context, digest string, extra ...string) *hostProc {
	GinkgoHelper()
	// Not GinkgoT().TempDir(): a unix socket path must stay under 108 bytes.
	shared, err := os.MkdirTemp("", "splice-shared-")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, shared)
	v1 := arts["v1"]
	initial := filepath.Join(shared, strings.TrimPrefix(v1.digest, "sha256:")+".so")
	data, err := os.ReadFile(v1.path)
	Expect(err).NotTo(HaveOccurred())
	Expect(os.WriteFile(initial, data, 0o644)).To(Succeed())

	h := &hostProc{shared: shared, digest: digest, out: &testio.SyncBuffer{}, args: extra}
	h.start(ctx)
	DeferCleanup(func() {
		h.Stop()
		if CurrentSpecReport().Failed() {
			GinkgoWriter.Printf("host log:\n%s\n", h.out.String())
		}
	})
	h.client = control.NewClient(filepath.Join(shared, control.SocketName))
	Eventually(func() string { return h.greet("warmup", "").Version }).WithContext(ctx).Should(Equal("v1"))
	return h
}

// start runs the host process in its shared directory, cold-starting v1.
func (h *hostProc) start(ctx context.Context) {
	GinkgoHelper()
	v1 := arts["v1"]
	// Bounded as the suite's Eventually calls are by default.
	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var err error
	h.Host, err = greeterproc.Start(startCtx, greeterproc.Options{
		Bin: hostBin, Shared: h.shared, Plugin: filepath.Join(h.shared, strings.TrimPrefix(v1.digest, "sha256:")+".so"), Digest: h.digest,
		Args: h.args, Output: h.out,
	})
	Expect(err).NotTo(HaveOccurred(), "host log:\n%s", h.out.String())
}

// restart starts the host again after its process died, as the kubelet restarts a container:
// a new process (so a new instance) in the same shared directory — the agent's files and the
// pulled plugins are still there — serving its cold-start plugin.
func (h *hostProc) restart(ctx context.Context) {
	GinkgoHelper()
	Expect(h.Alive()).To(BeFalse(), "restart a host whose process died")
	h.start(ctx)
	Eventually(func() string { return h.greet("warmup", "").Version }).WithContext(ctx).Should(Equal("v1"))
}

func (h *hostProc) status(ctx context.Context) *control.Status {
	GinkgoHelper()
	st, err := h.client.Status(ctx)
	Expect(err).NotTo(HaveOccurred())
	return st
}

func (h *hostProc) greet(name, key string) greeterproc.Answer {
	return greeterproc.Greet(greeterproc.OneShot, h.Addr(), name, key)
}
