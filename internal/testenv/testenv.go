// Package testenv starts a real control plane (etcd + kube-apiserver) with Splice's CRDs
// installed, for envtest suites and for the local control plane behind `make run`.
//
// It only finds the binaries that hack/k8s-binaries.sh provides (bin/k8s, or
// $KUBEBUILDER_ASSETS) and never downloads anything itself, so a missing binary fails fast with
// the command that provides it.
package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// RepoRoot returns the checkout's root: the directory holding this module's go.mod.
func RepoRoot() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("testenv: cannot locate source file")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// AssetsDir is where kube-apiserver, etcd and kubectl live: $KUBEBUILDER_ASSETS, or bin/k8s.
func AssetsDir() (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		dir = filepath.Join(RepoRoot(), "bin", "k8s")
	}
	for _, name := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return "", fmt.Errorf("control-plane binary %s not found in %s: run `make envtest-assets` (builds it from the Go module proxy once, ~10 min) or set KUBEBUILDER_ASSETS", name, dir)
		}
	}
	return dir, nil
}

// New returns an Environment with Splice's CRDs (config/crd/bases) installed on start.
func New() (*envtest.Environment, error) {
	assets, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	return &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}, nil
}

// NewWithWebhooks is New plus Splice's webhook configurations (config/webhook), installed on
// start so that the API server calls a webhook server on this machine over TLS: envtest points
// every configuration at https://localhost:<port> and fills in the caBundle of a certificate it
// writes to WebhookInstallOptions.LocalServingCertDir. The server must listen on
// WebhookInstallOptions.LocalServingHost:LocalServingPort (127.0.0.1 and a free port, known
// once Start has returned). The URL says "localhost" rather than the IP so that a certificate
// issued for DNS names (as Splice's own certificate management does) can match it.
func NewWithWebhooks() (*envtest.Environment, error) {
	env, err := New()
	if err != nil {
		return nil, err
	}
	env.WebhookInstallOptions = envtest.WebhookInstallOptions{
		Paths:                        []string{filepath.Join(RepoRoot(), "config", "webhook")},
		LocalServingHost:             "127.0.0.1",
		LocalServingHostExternalName: "localhost",
	}
	return env, nil
}

// StartWithWebhooks starts NewWithWebhooks' control plane for test t and stops it when t ends.
// Controller-runtime logs go to stderr, which go test shows for failing packages: a manager's
// goroutines may still log after t has ended, when t.Log would panic.
func StartWithWebhooks(t testing.TB) (*envtest.Environment, *rest.Config) {
	t.Helper()
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.UseDevMode(true)))
	env, err := NewWithWebhooks()
	if err != nil {
		t.Fatal(err)
	}
	return env, StartEnv(t, env)
}

// StartEnv starts env for test t and stops it when t ends.
func StartEnv(t testing.TB, env *envtest.Environment) *rest.Config {
	t.Helper()
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start control plane: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stop control plane: %v", err)
		}
	})
	return cfg
}
