package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/internal/testenv"
)

// The command tests run the cobra commands in-process against a real API server (envtest, with
// Splice's CRDs), through a kubeconfig file as a user's kubectl would. The API server starts
// with the first test that needs it, so the pure tests run without one.

var cluster struct {
	once       sync.Once
	err        error
	env        *envtest.Environment
	cfg        *rest.Config
	kubeconfig string
	client     client.Client
}

func TestMain(m *testing.M) {
	ctrllog.SetLogger(logr.Discard())
	code := m.Run()
	if cluster.env != nil {
		if err := cluster.env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stop the test API server: %v\n", err)
		}
	}
	if cluster.kubeconfig != "" {
		os.RemoveAll(filepath.Dir(cluster.kubeconfig))
	}
	os.Exit(code)
}

// apiServer starts the shared test API server once and returns a client for fixtures.
func apiServer(t *testing.T) client.Client {
	t.Helper()
	cluster.once.Do(func() {
		cluster.err = startAPIServer()
	})
	if cluster.err != nil {
		t.Fatalf("start the test API server: %v", cluster.err)
	}
	return cluster.client
}

func startAPIServer() error {
	env, err := testenv.New()
	if err != nil {
		return err
	}
	cfg, err := env.Start()
	if err != nil {
		return err
	}
	cluster.env, cluster.cfg = env, cfg
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := splicev1.AddToScheme(scheme); err != nil {
		return err
	}
	if cluster.client, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		return err
	}
	// A kubeconfig file, as a person has: the commands read it through kubectl's flags.
	user, err := env.AddUser(envtest.User{Name: "splice-cli-test", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "kubectl-splice-test-")
	if err != nil {
		return err
	}
	cluster.kubeconfig = filepath.Join(dir, "kubeconfig")
	return os.WriteFile(cluster.kubeconfig, kc, 0o600)
}

// kubectlSplice runs `kubectl splice ARGS...` in-process against the test API server and
// returns its exit status, stdout and stderr.
func kubectlSplice(ctx context.Context, args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(ctx, append([]string{"--kubeconfig", cluster.kubeconfig}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

// newNamespace creates a namespace of its own for one test.
func newNamespace(t *testing.T, c client.Client) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "splice-cli-"}}
	if err := c.Create(context.Background(), ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return ns.Name
}
