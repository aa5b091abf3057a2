package webhooks

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/open-policy-agent/cert-controller/pkg/rotator"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// The generated webhook configurations' names (see the kubebuilder:webhookconfiguration markers
// in doc.go); the certificate rotator injects the CA bundle into these two.
const (
	MutatingConfigName   = "splice-mutating-webhook-configuration"
	ValidatingConfigName = "splice-validating-webhook-configuration"
)

// CertMode says who provides the webhook server's serving certificate.
type CertMode string

const (
	// CertModeSelf: the manager does it all (cert-controller): it creates a CA and a serving
	// certificate, stores them in a Secret, injects the CA into the webhook configurations and
	// renews both before they expire. Nothing else needs installing.
	CertModeSelf CertMode = "self"
	// CertModeCertManager: cert-manager issues the certificate into a Secret that is mounted at
	// CertDir, and its CA injector fills the caBundle (config/webhook/certmanager). The manager
	// only serves what it finds in CertDir, reloading it when it changes.
	CertModeCertManager CertMode = "cert-manager"
)

// secretKeys are what cert-controller stores in the Secret.
const (
	secretCertKey = "tls.crt"
	secretKeyKey  = "tls.key"
)

// CertOptions configure the serving certificate.
type CertOptions struct {
	// Mode is self (the default) or cert-manager.
	Mode CertMode
	// Secret holds the CA and the serving certificate (self mode: created if missing).
	Secret types.NamespacedName
	// CertDir receives tls.crt and tls.key. In self mode the manager writes them there itself
	// (cert-controller insists on finding them); in cert-manager mode the Secret is mounted there.
	CertDir string
	// DNSNames the serving certificate is valid for; the first is the webhook Service's
	// "<service>.<namespace>.svc", the name the API server checks.
	DNSNames []string
	// MutatingConfigName and ValidatingConfigName are the configurations to inject the CA into.
	MutatingConfigName, ValidatingConfigName string
	// CAValidity, ServerCertValidity, RenewBefore and CheckInterval tune self mode; zero keeps
	// cert-controller's defaults (10 years, 1 year, 90 days before expiry, every 12 hours).
	// Besides the periodic check, any change to the Secret triggers a check at once.
	CAValidity, ServerCertValidity, RenewBefore, CheckInterval time.Duration
}

// ServingCerts provides the webhook server's certificate.
//
// In self mode the certificate is served straight from the Secret, kept in memory by a watch on
// that one Secret: the webhook server needs no volume mount, starts before the first
// certificate exists (handshakes fail, and the manager reports not ready, until it does), and
// picks up a rotated certificate as soon as it is written rather than after the kubelet
// refreshes a mounted Secret (up to a minute or more, while the API server already trusts only
// the new CA).
type ServingCerts struct {
	opts    CertOptions
	current atomic.Pointer[tls.Certificate]
	log     logr.Logger
	writer  client.Writer
	reader  client.Reader // the API server itself: the manager's cache would watch every Secret
}

// NewServingCerts checks the options.
func NewServingCerts(o CertOptions) (*ServingCerts, error) {
	var errs []error
	switch o.Mode {
	case CertModeSelf:
		if o.Secret.Name == "" || o.Secret.Namespace == "" {
			errs = append(errs, fmt.Errorf("certificate Secret %q: name and namespace are required (--webhook-cert-secret, --webhook-namespace)", o.Secret))
		}
		if len(o.DNSNames) == 0 || o.DNSNames[0] == "" {
			errs = append(errs, errors.New("no DNS name for the serving certificate: set the webhook Service's name and namespace"))
		}
		if o.MutatingConfigName == "" || o.ValidatingConfigName == "" {
			errs = append(errs, errors.New("the webhook configuration names to inject the CA into are required"))
		}
	case CertModeCertManager:
	default:
		errs = append(errs, fmt.Errorf("certificate mode %q: use %q (the manager manages its certificates) or %q", o.Mode, CertModeSelf, CertModeCertManager))
	}
	if o.CertDir == "" {
		errs = append(errs, errors.New("certificate directory is empty: set --webhook-cert-dir"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &ServingCerts{opts: o, log: logr.Discard()}, nil
}

// ConfigureTLS is a webhook.Options TLSOpts function. In self mode it serves the certificate
// from memory; in cert-manager mode it leaves GetCertificate unset, so the webhook server
// watches CertDir itself.
func (s *ServingCerts) ConfigureTLS(c *tls.Config) {
	if s.opts.Mode == CertModeSelf {
		c.GetCertificate = s.GetCertificate
	}
}

// GetCertificate returns the serving certificate loaded from the Secret.
func (s *ServingCerts) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := s.current.Load(); c != nil {
		return c, nil
	}
	return nil, fmt.Errorf("no serving certificate yet: the manager has not yet issued one into Secret %s", s.opts.Secret)
}

// SetupWithManager adds what self mode needs to mgr: the Secret (created empty if missing, for
// cert-controller refuses to start without it), cert-controller's rotator, and the watch that
// loads the Secret's certificate. In cert-manager mode it adds nothing.
//
// Every replica runs all of it, leader or not: each one serves webhooks. Two replicas renewing
// at once is harmless; the Secret's resourceVersion lets one write win and the other then finds
// the certificate valid.
func (s *ServingCerts) SetupWithManager(ctx context.Context, mgr manager.Manager) error {
	s.log = mgr.GetLogger().WithName("webhook-certs").WithValues("secret", s.opts.Secret, "mode", s.opts.Mode)
	if s.opts.Mode != CertModeSelf {
		s.log.Info("serving certificate provided by cert-manager", "certDir", s.opts.CertDir)
		return nil
	}
	s.writer, s.reader = mgr.GetClient(), mgr.GetAPIReader()
	if err := os.MkdirAll(s.opts.CertDir, 0o700); err != nil {
		return fmt.Errorf("create certificate directory: %w", err)
	}
	if err := s.ensureSecret(ctx); err != nil {
		return err
	}

	secrets, err := cache.New(mgr.GetConfig(), cache.Options{
		Scheme:            mgr.GetScheme(),
		Mapper:            mgr.GetRESTMapper(),
		DefaultNamespaces: map[string]cache.Config{s.opts.Secret.Namespace: {}},
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {Field: fields.OneTermEqualSelector("metadata.name", s.opts.Secret.Name)},
		},
	})
	if err != nil {
		return fmt.Errorf("create cache for Secret %s: %w", s.opts.Secret, err)
	}
	if err := mgr.Add(nonLeader{secrets}); err != nil {
		return err
	}
	if err := mgr.Add(nonLeader{manager.RunnableFunc(func(ctx context.Context) error {
		return s.watch(ctx, secrets)
	})}); err != nil {
		return err
	}

	r := &rotator.CertRotator{
		SecretKey:      s.opts.Secret,
		CertDir:        s.opts.CertDir,
		CAName:         "splice-webhook-ca",
		CAOrganization: "splice.dev",
		DNSName:        s.opts.DNSNames[0],
		ExtraDNSNames:  s.opts.DNSNames[1:],
		IsReady:        make(chan struct{}),
		Webhooks: []rotator.WebhookInfo{
			{Name: s.opts.MutatingConfigName, Type: rotator.Mutating},
			{Name: s.opts.ValidatingConfigName, Type: rotator.Validating},
		},
		RequireLeaderElection:  false,
		CaCertDuration:         s.opts.CAValidity,
		ServerCertDuration:     s.opts.ServerCertValidity,
		LookaheadInterval:      s.opts.RenewBefore,
		RotationCheckFrequency: s.opts.CheckInterval,
		// Never exit the process on renewal: the certificate is reloaded from the Secret.
		RestartOnSecretRefresh: false,
		ControllerName:         "splice-webhook-cert-rotator",
	}
	if err := rotator.AddRotator(mgr, r); err != nil {
		return fmt.Errorf("add certificate rotator: %w", err)
	}
	return nil
}

// ensureSecret creates the empty Secret cert-controller fills in.
func (s *ServingCerts) ensureSecret(ctx context.Context) error {
	err := s.reader.Get(ctx, s.opts.Secret, &corev1.Secret{})
	if err == nil {
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("read webhook certificate Secret %s: %w", s.opts.Secret, err)
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: s.opts.Secret.Name, Namespace: s.opts.Secret.Namespace,
			Labels: map[string]string{"app.kubernetes.io/managed-by": "splice", "app.kubernetes.io/component": "webhook-certs"},
		},
		Type: corev1.SecretTypeOpaque,
	}
	if err := s.writer.Create(ctx, secret); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create webhook certificate Secret %s: %w", s.opts.Secret, err)
	}
	s.log.Info("created the webhook certificate Secret; the rotator fills it in")
	return nil
}

// watch loads the Secret's certificate whenever it changes, and recreates the Secret if someone
// deletes it so that the rotator issues a new certificate (meanwhile the one in memory serves).
func (s *ServingCerts) watch(ctx context.Context, secrets cache.Cache) error {
	inf, err := secrets.GetInformer(ctx, &corev1.Secret{})
	if err != nil {
		return fmt.Errorf("watch webhook certificate Secret %s: %w", s.opts.Secret, err)
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.load(obj) },
		UpdateFunc: func(_, obj any) { s.load(obj) },
		DeleteFunc: func(any) {
			s.log.Info("webhook certificate Secret deleted; recreating it")
			if err := s.ensureSecret(ctx); err != nil {
				s.log.Error(err, "recreate webhook certificate Secret")
			}
		},
	}); err != nil {
		return fmt.Errorf("watch webhook certificate Secret %s: %w", s.opts.Secret, err)
	}
	<-ctx.Done()
	return nil
}

func (s *ServingCerts) load(obj any) {
	secret, ok := obj.(*corev1.Secret)
	if !ok || secret.Name != s.opts.Secret.Name {
		return
	}
	certPEM, keyPEM := secret.Data[secretCertKey], secret.Data[secretKeyKey]
	if len(certPEM) == 0 || len(keyPEM) == 0 {
		return // not issued yet
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		s.log.Error(err, "the Secret holds no valid certificate and key; still serving the previous one")
		return
	}
	if old := s.current.Load(); old != nil && old.Leaf != nil && old.Leaf.Equal(pair.Leaf) {
		return
	}
	// Files first: once the certificate is in memory it is served, and the files are only for
	// cert-controller's start-up check, which must not find the directory half written.
	if err := writeFileAtomic(s.opts.CertDir, secretCertKey, certPEM, 0o644); err != nil {
		s.log.Error(err, "write serving certificate", "certDir", s.opts.CertDir)
	}
	if err := writeFileAtomic(s.opts.CertDir, secretKeyKey, keyPEM, 0o600); err != nil {
		s.log.Error(err, "write serving key", "certDir", s.opts.CertDir)
	}
	s.current.Store(&pair)
	s.log.Info("serving certificate loaded", "serial", pair.Leaf.SerialNumber.String(), "notAfter", pair.Leaf.NotAfter, "dnsNames", pair.Leaf.DNSNames)
}

// writeFileAtomic replaces dir/name in one rename, so a reader never sees half a file.
func writeFileAtomic(dir, name string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(dir, "."+name+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // no-op after the rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), filepath.Join(dir, name))
}

// nonLeader runs a runnable on every replica: controller-runtime would otherwise hold anything
// that does not say so until this replica wins the leader election, and followers serve
// webhooks too.
type nonLeader struct{ manager.Runnable }

func (nonLeader) NeedLeaderElection() bool { return false }
