package admission

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/splice-dev/splice/internal/testenv"
)

// settle bounds how long a test waits for the API server to load what was just created
// (policies and bindings reach the admission plugin through informers); a limit, not a delay.
const settle = 30 * time.Second

// cluster is the running control plane and the clients the tests need.
type cluster struct {
	cfg   *rest.Config
	admin kubernetes.Interface
	objs  client.Client // for the YAML files under config/
}

// TestAdmission starts one control plane for every check in this package (each start costs
// seconds of a shared machine), installs config/policy, the manager's RBAC and the webhook
// configurations exactly as the files say — no webhook server answers — and runs the checks.
func TestAdmission(t *testing.T) {
	env, err := testenv.New()
	if err != nil {
		t.Fatal(err)
	}
	cfg := testenv.StartEnv(t, env)
	c := &cluster{cfg: cfg, admin: kubernetes.NewForConfigOrDie(cfg)}
	if c.objs, err = client.New(cfg, client.Options{}); err != nil {
		t.Fatal(err)
	}
	c.createNamespace(t, "splice-system", nil)
	for _, f := range []string{
		"policy/agent_policy.yaml", "policy/manager_policy.yaml",
		"rbac/service_account.yaml", "rbac/role.yaml", "rbac/role_binding.yaml",
		"webhook/manifests.yaml",
	} {
		c.apply(t, f, "")
	}

	t.Run("agent", func(t *testing.T) { testAgentPolicy(t, c) })
	t.Run("manager", func(t *testing.T) { testManagerPolicy(t, c) })
	t.Run("manager down", func(t *testing.T) { testManagerDown(t, c) })
}

// apply creates every object of config/<file>, in namespace ns when the object is namespaced
// and ns is not "" (else where the file puts it).
func (c *cluster) apply(t *testing.T, file, ns string) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	for _, o := range readConfig(t, file) {
		if ns != "" && o.GetNamespace() == "" && !clusterScoped(o.GetKind()) {
			o.SetNamespace(ns)
		}
		if err := c.objs.Create(context.Background(), o); err != nil {
			t.Fatalf("config/%s: create %s %s: %v", file, o.GetKind(), o.GetName(), err)
		}
		out = append(out, o)
	}
	return out
}

func clusterScoped(kind string) bool {
	switch kind {
	case "ClusterRole", "ClusterRoleBinding", "Namespace", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
		"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "CustomResourceDefinition":
		return true
	}
	return false
}

// readConfig parses the objects of config/<file>.
func readConfig(t *testing.T, file string) []*unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", file))
	if err != nil {
		t.Fatal(err)
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var out []*unstructured.Unstructured
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("config/%s: %v", file, err)
		}
		o := map[string]any{}
		if err := yaml.Unmarshal(doc, &o); err != nil {
			t.Fatalf("config/%s: %v", file, err)
		}
		if len(o) > 0 {
			out = append(out, &unstructured.Unstructured{Object: o})
		}
	}
}

func (c *cluster) createNamespace(t *testing.T, name string, labels map[string]string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if strings.HasSuffix(name, "-") {
		ns.Name, ns.GenerateName = "", name
	}
	got, err := c.admin.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return got.Name
}

// plainPod is a pod that did not opt into injection, running as ServiceAccount sa.
func plainPod(ns, name, sa string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": "web"},
			Annotations: map[string]string{"splice.dev/desired-artifact": "registry.example.com/greeter@sha256:" + strings.Repeat("a", 64)}},
		Spec: corev1.PodSpec{
			ServiceAccountName: sa,
			Containers:         []corev1.Container{{Name: "app", Image: "app:1"}},
		},
	}
}

func (c *cluster) createPod(t *testing.T, p *corev1.Pod) *corev1.Pod {
	t.Helper()
	got, err := c.admin.CoreV1().Pods(p.Namespace).Create(context.Background(), p, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod %s/%s: %v", p.Namespace, p.Name, err)
	}
	return got
}

// refused fails unless err is the API server refusing the request with a message containing
// want (the name of the rule that must refuse it, so a refusal for another reason — RBAC, a
// malformed patch — does not pass for the policy's).
func refused(t *testing.T, what string, err error, want string) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s: allowed, want it refused (%s)", what, want)
	case !strings.Contains(err.Error(), want):
		t.Errorf("%s: refused with %q, want a refusal containing %q", what, err, want)
	}
}

func allowed(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Errorf("%s: %v, want it allowed", what, err)
	}
}

// eventuallyRefused retries do until its error contains want: the first request after a policy
// or binding is created may be admitted before the admission plugin has loaded them.
func eventuallyRefused(t *testing.T, what string, do func() error, want string) {
	t.Helper()
	deadline := time.Now().Add(settle)
	for {
		err := do()
		if err != nil && strings.Contains(err.Error(), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: got %v after %s, want a refusal containing %q (is the policy loaded?)", what, err, settle, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// eventuallyAllowed retries do until it succeeds: RBAC loads a new RoleBinding through an
// informer, so the first request after it may still be forbidden.
func eventuallyAllowed(t *testing.T, what string, do func() error) {
	t.Helper()
	deadline := time.Now().Add(settle)
	for {
		err := do()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: %v after %s, want it allowed", what, err, settle)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// mergePatch patches pod name with a JSON merge patch, through subresource when given.
func mergePatch(kube kubernetes.Interface, ns, name string, patch map[string]any, subresource ...string) error {
	return patchPod(kube, ns, name, types.MergePatchType, patch, subresource...)
}

func patchPod(kube kubernetes.Interface, ns, name string, pt types.PatchType, patch map[string]any, subresource ...string) error {
	b, err := jsonMarshal(patch)
	if err != nil {
		return err
	}
	_, err = kube.CoreV1().Pods(ns).Patch(context.Background(), name, pt, b, metav1.PatchOptions{}, subresource...)
	return err
}

// tokenFor asks the TokenRequest API for a token of ServiceAccount sa, bound to pod when it is
// not nil (as the kubelet's projected tokens are), and returns a client that authenticates with
// it alone.
func (c *cluster) tokenFor(t *testing.T, ns, sa string, pod *corev1.Pod) (*rest.Config, string) {
	t.Helper()
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)}}
	if pod != nil {
		req.Spec.BoundObjectRef = &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
	}
	tr, err := c.admin.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), sa, req, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/%s: %v", ns, sa, err)
	}
	cfg := &rest.Config{
		Host:            c.cfg.Host,
		BearerToken:     tr.Status.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.cfg.CAData},
	}
	return cfg, tr.Status.Token
}

// whoAmI is how the API server authenticates cfg (a SelfSubjectReview).
func whoAmI(t *testing.T, cfg *rest.Config) authenticationv1.UserInfo {
	t.Helper()
	r, err := kubernetes.NewForConfigOrDie(cfg).AuthenticationV1().SelfSubjectReviews().Create(context.Background(), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("the API server does not authenticate the token: %v", err)
	}
	return r.Status.UserInfo
}

// webhookNames are the webhooks of the configuration named name.
func (c *cluster) webhookNames(t *testing.T, name string) []string {
	t.Helper()
	var names []string
	if m, err := c.admin.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(context.Background(), name, metav1.GetOptions{}); err == nil {
		for _, w := range m.Webhooks {
			names = append(names, w.Name)
		}
		return names
	} else if !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	v, err := c.admin.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range v.Webhooks {
		names = append(names, w.Name)
	}
	return names
}
