package manager

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/internal/testenv"
)

// The metrics are unauthenticated unless MetricsSecure, so by default they are served on
// loopback only.
func TestDefaultMetricsAddrIsLoopback(t *testing.T) {
	o := DefaultOptions()
	host, port, err := net.SplitHostPort(o.MetricsAddr)
	if err != nil {
		t.Fatalf("default metrics address %q: %v", o.MetricsAddr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		t.Fatalf("the default metrics address %q binds host %q; want a loopback address", o.MetricsAddr, host)
	}
	if port != "8080" {
		t.Errorf("default metrics port %s; want 8080", port)
	}
	if m := metricsOptions(o); m.BindAddress != o.MetricsAddr || m.SecureServing || m.FilterProvider != nil {
		t.Errorf("default metrics options %+v; want plain HTTP at %s", m, o.MetricsAddr)
	}
	if len(o.PrometheusAllowedAddresses) != 0 {
		t.Errorf("default Prometheus allowlist %q; want none", o.PrometheusAllowedAddresses)
	}
}

// A manager run with an invalid allowlist entry does not start.
func TestRunRefusesBadPrometheusAllowlist(t *testing.T) {
	o := DefaultOptions()
	o.PrometheusAllowedAddresses = []string{"prometheus:9090"}
	err := Run(context.Background(), &rest.Config{Host: "https://127.0.0.1:1"}, o)
	if err == nil || !strings.Contains(err.Error(), "--prometheus-allowed-addresses") {
		t.Fatalf("Run: %v; want a refusal naming --prometheus-allowed-addresses", err)
	}
}

// With MetricsSecure the metrics are served over HTTPS to a bearer token the API server
// authenticates and authorizes for GET /metrics, and to nobody else.
func TestMetricsSecure(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	_, _, cfg := startControlPlane(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	o := DefaultOptions()
	o.MetricsAddr, o.ProbeAddr, o.MetricsSecure = addr, "0", true
	o.Webhooks.Enabled = false
	runManager(t, cfg, o)

	cs := kubernetes.NewForConfigOrDie(cfg)
	reader := serviceAccountToken(t, cs, "metrics-reader", true)
	other := serviceAccountToken(t, cs, "metrics-other", false)
	get := func(token string) (int, string, error) {
		req, _ := http.NewRequest(http.MethodGet, "https://"+addr+"/metrics", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		// The certificate is self-signed; what the test checks is who may read.
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		resp, err := c.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	g := NewWithT(t)
	g.Eventually(func(g Gomega) {
		code, body, err := get(reader)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(code).To(Equal(http.StatusOK), body)
		g.Expect(body).To(ContainSubstring("controller_runtime"))
	}).WithTimeout(eventually).Should(Succeed())
	for _, tt := range []struct {
		name, token string
		want        int // 0: any refusal
	}{
		{"no token", "", http.StatusUnauthorized},
		// controller-runtime's filter answers 500 when the TokenReview refuses the token.
		{"a bad token", "nope", 0},
		{"a token not allowed /metrics", other, http.StatusForbidden},
	} {
		code, body, err := get(tt.token)
		if err != nil || (tt.want != 0 && code != tt.want) || code == http.StatusOK {
			t.Errorf("%s: %d %v (%.200s); want %d", tt.name, code, err, body, tt.want)
		}
	}
	// Plain HTTP is not served.
	if resp, err := http.Get("http://" + addr + "/metrics"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("metrics are served over plain HTTP with MetricsSecure")
		}
	}
}

// serviceAccountToken creates a ServiceAccount in default, bound to a ClusterRole that may GET
// /metrics when allowed, and returns a token of it.
func serviceAccountToken(t *testing.T, cs kubernetes.Interface, name string, allowed bool) string {
	t.Helper()
	ctx := context.Background()
	sa, err := cs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if allowed {
		role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name},
			Rules: []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}}
		if _, err := cs.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: name},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: "default"}}}
		if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	tr, err := cs.CoreV1().ServiceAccounts("default").CreateToken(ctx, sa.Name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(fmt.Errorf("token for %s: %w", name, err))
	}
	return tr.Status.Token
}

// With Namespaces the manager works in those namespaces alone: a CompilerVersion elsewhere is
// never reconciled (its cache does not even list it).
func TestNamespacesConfineTheManager(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	// No webhooks (the manager runs without them).
	env, err := testenv.New()
	if err != nil {
		t.Fatal(err)
	}
	cfg := testenv.StartEnv(t, env)
	c := adminClient(t, cfg)
	ctx := context.Background()
	cvIn := func(ns string) *splicev1.CompilerVersion {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
		cv := &splicev1.CompilerVersion{
			ObjectMeta: metav1.ObjectMeta{Name: "greeter", Namespace: ns},
			Spec: splicev1.CompilerVersionSpec{
				GoVersion: "1.26.8",
				Plugin:    splicev1.PluginSpec{Source: splicev1.PluginSource{Artifact: "127.0.0.1:1/team/greeter@sha256:" + strings.Repeat("ab", 32)}},
				Selector:  metav1.LabelSelector{MatchLabels: map[string]string{"app": "greeter"}},
			},
		}
		if err := c.Create(ctx, cv); err != nil {
			t.Fatal(err)
		}
		return cv
	}
	watched, other := cvIn("team-a"), cvIn("team-b")

	o := DefaultOptions()
	o.MetricsAddr, o.ProbeAddr = "0", "0"
	o.Webhooks.Enabled = false
	o.Namespaces = []string{"team-a"}
	o.skipNameValidation = true // the package's other tests run managers in this process too
	runManager(t, cfg, o)

	g := NewWithT(t)
	built := func(cv *splicev1.CompilerVersion) func() *metav1.Condition {
		return func() *metav1.Condition {
			got := &splicev1.CompilerVersion{}
			g.Expect(c.Get(ctx, client.ObjectKeyFromObject(cv), got)).To(Succeed())
			return apimeta.FindStatusCondition(got.Status.Conditions, splicev1.ConditionBuilt)
		}
	}
	g.Eventually(built(watched), 30*time.Second, 200*time.Millisecond).ShouldNot(BeNil(), "the CompilerVersion in team-a was not reconciled")
	g.Consistently(built(other), 3*time.Second, 200*time.Millisecond).Should(BeNil(), "the CompilerVersion in team-b, outside --namespaces, was reconciled")

	o.Namespaces = []string{"Team_B"}
	if err := Run(ctx, cfg, o); err == nil || !strings.Contains(err.Error(), "--namespaces") {
		t.Fatalf("Run with a malformed namespace: %v", err)
	}
}
