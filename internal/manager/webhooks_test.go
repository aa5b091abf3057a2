package manager

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/internal/testenv"
	"github.com/splice-dev/splice/webhooks"
)

// eventually bounds how long a test waits for the control plane and the manager to converge;
// it is a limit, not something the tests assert.
const eventually = 90 * time.Second

const certNamespace = "splice-system"

var certSecret = types.NamespacedName{Namespace: certNamespace, Name: "splice-webhook-server-cert"}

// TestWebhookCertificatesSelfManaged starts the real manager (Run) with its own certificate
// management against an API server whose webhook configurations have no CA bundle and no
// certificate Secret exists: the manager must issue a certificate, inject its CA, and then
// renew the certificate and the CA when they near expiry, with pods admitted throughout.
func TestWebhookCertificatesSelfManaged(t *testing.T) {
	if inOwnProcess(t) {
		return
	}
	env, c, cfg := startControlPlane(t)
	g := NewWithT(t)
	ctx := context.Background()

	// From nothing: take out the CA bundle envtest put in.
	forEachWebhook(t, c, func(cc *admissionregistrationv1.WebhookClientConfig) { cc.CABundle = nil })
	g.Expect(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: certNamespace}})).To(Succeed())
	g.Expect(c.Get(ctx, certSecret, &corev1.Secret{})).NotTo(Succeed(), "the certificate Secret must not exist before the manager starts")

	o := testOptions(env)
	o.Webhooks.CertMode = string(webhooks.CertModeSelf)
	o.Webhooks.CertDir = t.TempDir()
	o.Webhooks.Namespace = certNamespace
	// envtest's configurations call https://localhost:<port>.
	o.Webhooks.ExtraDNSNames = []string{"localhost"}
	runManager(t, cfg, o)
	ns := injectedNamespace(t, c)

	t.Run("bootstrap: Secret issued, CA injected, pods admitted", func(t *testing.T) {
		ca := expectCAInjected(t, c, nil)
		if bytes.Equal(ca, env.WebhookInstallOptions.LocalServingCAData) {
			t.Fatal("the CA bundle is envtest's, not the manager's")
		}
		expectServed(t, env, c)
		expectPodInjected(t, c, ns)
	})

	t.Run("a server certificate near expiry is renewed under the same CA", func(t *testing.T) {
		secret := getSecret(t, c)
		caCert, caKey := parseCA(t, secret)
		forged := issue(t, caCert, caKey, time.Hour, false)
		secret.Data["tls.crt"], secret.Data["tls.key"] = forged.cert, forged.key
		g.Expect(c.Update(ctx, secret)).To(Succeed())

		g.Eventually(func(g Gomega) {
			s := getSecretG(g, c)
			g.Expect(s.Data["tls.crt"]).NotTo(Equal(forged.cert), "the near-expiry certificate is still in the Secret")
			g.Expect(leaf(g, s.Data["tls.crt"]).NotAfter).To(BeTemporally(">", time.Now().Add(180*24*time.Hour)))
			g.Expect(s.Data["ca.crt"]).To(Equal(secret.Data["ca.crt"]), "renewing the server certificate must keep the CA")
		}).WithTimeout(eventually).Should(Succeed())
		expectServed(t, env, c)
		expectPodInjected(t, c, ns)
	})

	t.Run("a CA near expiry is replaced and the new one injected", func(t *testing.T) {
		secret := getSecret(t, c)
		oldCA := secret.Data["ca.crt"]
		ca := issue(t, nil, nil, time.Hour, true)
		caCert, caKey := ca.parsed(t)
		server := issue(t, caCert, caKey, time.Hour, false)
		secret.Data["ca.crt"], secret.Data["ca.key"] = ca.cert, ca.key
		secret.Data["tls.crt"], secret.Data["tls.key"] = server.cert, server.key
		g.Expect(c.Update(ctx, secret)).To(Succeed())

		g.Eventually(func(g Gomega) {
			s := getSecretG(g, c)
			g.Expect(s.Data["ca.crt"]).NotTo(Or(Equal(ca.cert), Equal(oldCA)))
			g.Expect(leaf(g, s.Data["ca.crt"]).NotAfter).To(BeTemporally(">", time.Now().Add(2*365*24*time.Hour)))
		}).WithTimeout(eventually).Should(Succeed())
		expectCAInjected(t, c, nil)
		expectServed(t, env, c)
		expectPodInjected(t, c, ns)
	})

	t.Run("a deleted Secret is recreated and reissued", func(t *testing.T) {
		old := getSecret(t, c)
		g.Expect(c.Delete(ctx, old)).To(Succeed())
		g.Eventually(func(g Gomega) {
			s := getSecretG(g, c)
			g.Expect(s.UID).NotTo(Equal(old.UID))
			g.Expect(s.Data["ca.crt"]).NotTo(BeEmpty())
		}).WithTimeout(eventually).Should(Succeed())
		expectCAInjected(t, c, nil)
		expectServed(t, env, c)
		expectPodInjected(t, c, ns)
	})
}

// TestWebhookCertificatesCertManager runs the manager (Run) in cert-manager mode: it serves the
// certificate it finds in the directory (here envtest's, standing in for a mounted cert-manager
// Secret) and leaves Secrets and CA bundles to cert-manager.
func TestWebhookCertificatesCertManager(t *testing.T) {
	if inOwnProcess(t) {
		return
	}
	env, c, cfg := startControlPlane(t)
	ctx := context.Background()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: certNamespace}}); err != nil {
		t.Fatal(err)
	}
	o := testOptions(env)
	o.Webhooks.CertMode = string(webhooks.CertModeCertManager)
	o.Webhooks.CertDir = env.WebhookInstallOptions.LocalServingCertDir
	o.Webhooks.Namespace = certNamespace
	runManager(t, cfg, o)

	expectPodInjected(t, c, injectedNamespace(t, c))
	expectCAInjected(t, c, env.WebhookInstallOptions.LocalServingCAData)
	var secrets corev1.SecretList
	if err := c.List(ctx, &secrets, client.InNamespace(certNamespace)); err != nil {
		t.Fatal(err)
	}
	if len(secrets.Items) != 0 {
		t.Errorf("in cert-manager mode the manager created Secret %s", secrets.Items[0].Name)
	}
}

// TestWebhookOptionsRefuseBadFlags: a bad flag stops Run before anything starts, naming it.
func TestWebhookOptionsRefuseBadFlags(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*WebhookOptions)
		want   string
	}{
		{"cert mode", func(o *WebhookOptions) { o.CertMode = "vault" }, `certificate mode "vault"`},
		{"quantity", func(o *WebhookOptions) { o.AgentMemoryLimit = "lots" }, `--agent-memory-limit "lots"`},
		{"port", func(o *WebhookOptions) { o.AgentHTTPPort = 0 - 1 }, "--agent-http-port -1"},
		{"pull policy", func(o *WebhookOptions) { o.AgentImagePullPolicy = "Often" }, "--agent-image-pull-policy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := DefaultWebhookOptions()
			o.Enabled = true
			tt.mutate(&o)
			_, err := newWebhookSetup(o)
			g := NewWithT(t)
			g.Expect(err).To(MatchError(ContainSubstring(tt.want)))
		})
	}
	o := DefaultWebhookOptions()
	if w, err := newWebhookSetup(o); err != nil || w != nil || w.server() != nil {
		t.Errorf("disabled webhooks: setup %v, error %v; want nothing at all", w, err)
	}
}

// childEnv names the test a child test process runs itself rather than spawning another.
const childEnv = "SPLICE_MANAGER_TEST_CHILD"

// inOwnProcess runs the calling test again in a child process and reports true in the parent,
// which then returns; in the child it reports false and the test runs. Each test that calls Run
// needs a process of its own: controller-runtime refuses a second controller of the same name
// in one process, and Run always adds the CompilerVersion controller.
func inOwnProcess(t *testing.T) bool {
	t.Helper()
	if os.Getenv(childEnv) == t.Name() {
		return false
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+regexp.QuoteMeta(t.Name())+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"="+t.Name())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s in its own process: %v\n%s", t.Name(), err, out)
	}
	// A child that ran nothing also exits 0.
	if !bytes.Contains(out, []byte("--- PASS: "+t.Name()+" ")) {
		t.Fatalf("%s did not run in its own process:\n%s", t.Name(), out)
	}
	if testing.Verbose() {
		t.Logf("%s", out)
	}
	return true
}

func startControlPlane(t *testing.T) (*envtest.Environment, client.Client, *rest.Config) {
	t.Helper()
	env, cfg := testenv.StartWithWebhooks(t)
	return env, adminClient(t, cfg), cfg
}

// adminClient is a client of the test's control plane with the manager's scheme.
func adminClient(t *testing.T, cfg *rest.Config) client.Client {
	t.Helper()
	scheme, err := Scheme()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func testOptions(env *envtest.Environment) Options {
	o := DefaultOptions()
	o.MetricsAddr, o.ProbeAddr = "0", "0"
	o.Webhooks.Enabled = true
	o.Webhooks.Host = env.WebhookInstallOptions.LocalServingHost
	o.Webhooks.Port = env.WebhookInstallOptions.LocalServingPort
	return o
}

func runManager(t *testing.T, cfg *rest.Config, o Options) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, o) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
}

func injectedNamespace(t *testing.T, c client.Client) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "app-", Labels: map[string]string{splicev1.LabelInject: "true"}}}
	if err := c.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

var podSeq int

// expectPodInjected creates a pod in a namespace that opted in. The Pod webhook fails closed,
// so the pod exists only if the API server could call the manager over TLS with the CA bundle
// it has.
func expectPodInjected(t *testing.T, c client.Client, ns string) {
	t.Helper()
	podSeq++
	name := "web-" + strconv.Itoa(podSeq)
	NewWithT(t).Eventually(func(g Gomega) {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: corev1.PodSpec{
				SecurityContext: &corev1.PodSecurityContext{RunAsUser: ptr64(1000)},
				Containers:      []corev1.Container{{Name: "app", Image: "app:1"}},
			},
		}
		g.Expect(c.Create(context.Background(), p)).To(Succeed())
		g.Expect(p.Spec.InitContainers).To(ContainElement(HaveField("Name", webhooks.AgentContainerName)))
	}).WithTimeout(eventually).Should(Succeed())
}

// expectCAInjected waits until every webhook of both configurations trusts the Secret's CA (or
// want, when given), and returns it.
func expectCAInjected(t *testing.T, c client.Client, want []byte) []byte {
	t.Helper()
	var ca []byte
	NewWithT(t).Eventually(func(g Gomega) {
		ca = want
		if ca == nil {
			ca = getSecretG(g, c).Data["ca.crt"]
			g.Expect(ca).NotTo(BeEmpty())
		}
		for _, cc := range clientConfigs(g, c) {
			g.Expect(cc.CABundle).To(Equal(ca))
		}
	}).WithTimeout(eventually).Should(Succeed())
	return ca
}

// expectServed waits until the webhook server presents the Secret's certificate, verified
// against the Secret's CA for the name the API server uses here.
func expectServed(t *testing.T, env *envtest.Environment, c client.Client) {
	t.Helper()
	addr := net.JoinHostPort(env.WebhookInstallOptions.LocalServingHost, strconv.Itoa(env.WebhookInstallOptions.LocalServingPort))
	NewWithT(t).Eventually(func(g Gomega) {
		s := getSecretG(g, c)
		roots := x509.NewCertPool()
		g.Expect(roots.AppendCertsFromPEM(s.Data["ca.crt"])).To(BeTrue())
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost"})
		g.Expect(err).NotTo(HaveOccurred())
		defer conn.Close()
		g.Expect(conn.ConnectionState().PeerCertificates[0].Raw).To(Equal(leaf(g, s.Data["tls.crt"]).Raw))
	}).WithTimeout(eventually).Should(Succeed())
}

func forEachWebhook(t *testing.T, c client.Client, f func(*admissionregistrationv1.WebhookClientConfig)) {
	t.Helper()
	ctx := context.Background()
	m := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := c.Get(ctx, client.ObjectKey{Name: webhooks.MutatingConfigName}, m); err != nil {
		t.Fatal(err)
	}
	for i := range m.Webhooks {
		f(&m.Webhooks[i].ClientConfig)
	}
	if err := c.Update(ctx, m); err != nil {
		t.Fatal(err)
	}
	v := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := c.Get(ctx, client.ObjectKey{Name: webhooks.ValidatingConfigName}, v); err != nil {
		t.Fatal(err)
	}
	for i := range v.Webhooks {
		f(&v.Webhooks[i].ClientConfig)
	}
	if err := c.Update(ctx, v); err != nil {
		t.Fatal(err)
	}
}

func clientConfigs(g Gomega, c client.Client) []admissionregistrationv1.WebhookClientConfig {
	ctx := context.Background()
	m := &admissionregistrationv1.MutatingWebhookConfiguration{}
	g.Expect(c.Get(ctx, client.ObjectKey{Name: webhooks.MutatingConfigName}, m)).To(Succeed())
	v := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	g.Expect(c.Get(ctx, client.ObjectKey{Name: webhooks.ValidatingConfigName}, v)).To(Succeed())
	var out []admissionregistrationv1.WebhookClientConfig
	for _, w := range m.Webhooks {
		out = append(out, w.ClientConfig)
	}
	for _, w := range v.Webhooks {
		out = append(out, w.ClientConfig)
	}
	g.Expect(out).To(HaveLen(5), "the generated configurations hold three mutating webhooks and two validating (CompilerVersions, and the update guard of injected pods)")
	return out
}

func getSecret(t *testing.T, c client.Client) *corev1.Secret {
	t.Helper()
	var s *corev1.Secret
	NewWithT(t).Eventually(func(g Gomega) { s = getSecretG(g, c) }).WithTimeout(eventually).Should(Succeed())
	return s
}

func getSecretG(g Gomega, c client.Client) *corev1.Secret {
	s := &corev1.Secret{}
	g.Expect(c.Get(context.Background(), certSecret, s)).To(Succeed())
	g.Expect(s.Data).To(HaveKey("tls.crt"), "the Secret holds no certificate yet")
	return s
}

func leaf(g Gomega, certPEM []byte) *x509.Certificate {
	b, _ := pem.Decode(certPEM)
	g.Expect(b).NotTo(BeNil(), "not PEM")
	cert, err := x509.ParseCertificate(b.Bytes)
	g.Expect(err).NotTo(HaveOccurred())
	return cert
}

func parseCA(t *testing.T, s *corev1.Secret) (*x509.Certificate, *rsa.PrivateKey) {
	t.Helper()
	return pemPair{cert: s.Data["ca.crt"], key: s.Data["ca.key"]}.parsed(t)
}

type pemPair struct{ cert, key []byte }

func (p pemPair) parsed(t *testing.T) (*x509.Certificate, *rsa.PrivateKey) {
	t.Helper()
	cb, _ := pem.Decode(p.cert)
	kb, _ := pem.Decode(p.key)
	if cb == nil || kb == nil {
		t.Fatal("certificate or key is not PEM")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	key, err := x509.ParsePKCS1PrivateKey(kb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// issue makes a certificate valid for the next `valid` (so, within cert-controller's renewal
// window): a self-signed CA when isCA, else a serving certificate for the webhook's names
// signed by caCert. Keys are RSA in PKCS#1, as cert-controller stores them.
func issue(t *testing.T, caCert *x509.Certificate, caKey *rsa.PrivateKey, valid time.Duration, isCA bool) pemPair {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(valid),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
	}
	if isCA {
		tmpl.Subject = pkix.Name{CommonName: "splice-webhook-ca"}
		tmpl.DNSNames = []string{"splice-webhook-ca"}
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		caCert, caKey = tmpl, key
	} else {
		tmpl.Subject = pkix.Name{CommonName: "splice-webhook-service.splice-system.svc"}
		tmpl.DNSNames = []string{"splice-webhook-service.splice-system.svc", "localhost"}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(fmt.Errorf("create certificate: %w", err))
	}
	return pemPair{
		cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		key:  pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}),
	}
}

func ptr64(v int64) *int64 { return &v }
