package main

import (
	"context"
	"fmt"
	"net/http"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

// session is one command's connection to the cluster: the REST config and namespace that
// kubectl's flags resolve to, and a client that knows Splice's types.
type session struct {
	cfg        *rest.Config
	httpClient *http.Client
	mapper     apimeta.RESTMapper
	scheme     *runtime.Scheme
	client     client.WithWatch
	namespace  string
}

func newSession(flags *genericclioptions.ConfigFlags) (*session, error) {
	cfg, err := flags.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("load the kubeconfig: %w", err)
	}
	ns, _, err := flags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return nil, fmt.Errorf("resolve the namespace from the kubeconfig: %w", err)
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := splicev1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("build an HTTP client for %s: %w", cfg.Host, err)
	}
	// One lazily discovering mapper for the client and the --watch caches alike.
	mapper, err := apiutil.NewDynamicRESTMapper(cfg, httpClient)
	if err != nil {
		return nil, fmt.Errorf("set up API discovery against %s: %w", cfg.Host, err)
	}
	c, err := client.NewWithWatch(cfg, client.Options{HTTPClient: httpClient, Scheme: scheme, Mapper: mapper})
	if err != nil {
		return nil, fmt.Errorf("build a client for %s: %w", cfg.Host, err)
	}
	return &session{cfg: cfg, httpClient: httpClient, mapper: mapper, scheme: scheme, client: c, namespace: ns}, nil
}

// getCV reads a CompilerVersion, turning the errors a person hits first into what to do.
func (s *session) getCV(ctx context.Context, name string) (*splicev1.CompilerVersion, error) {
	cv := &splicev1.CompilerVersion{}
	err := s.client.Get(ctx, client.ObjectKey{Namespace: s.namespace, Name: name}, cv)
	return cv, s.explain(err, name)
}

// explain rewrites an error about the named CompilerVersion so that it says what to fix.
func (s *session) explain(err error, name string) error {
	switch {
	case err == nil:
		return nil
	case apierrors.IsNotFound(err):
		return fmt.Errorf("CompilerVersion %q not found in namespace %q: check the name (`kubectl get compilerversions -n %s` lists them) or pass -n NAMESPACE",
			name, s.namespace, s.namespace)
	case apimeta.IsNoMatchError(err):
		return fmt.Errorf("the API server at %s does not serve %s CompilerVersions: install Splice's CRDs (config/crd/bases) or point --context at the cluster that runs Splice",
			s.cfg.Host, splicev1.GroupVersion)
	}
	return fmt.Errorf("get CompilerVersion %s/%s: %w", s.namespace, name, err)
}

// targetPods lists the pods the CompilerVersion's selector matches in its namespace.
func (s *session) targetPods(ctx context.Context, cv *splicev1.CompilerVersion) ([]corev1.Pod, error) {
	sel, err := metav1.LabelSelectorAsSelector(&cv.Spec.Selector)
	if err != nil || sel.Empty() {
		return nil, nil // render says why the selector targets nothing
	}
	var list corev1.PodList
	if err := s.client.List(ctx, &list, client.InNamespace(cv.Namespace), client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return nil, fmt.Errorf("list the pods of CompilerVersion %s/%s (selector %s): %w", cv.Namespace, cv.Name, sel, err)
	}
	return list.Items, nil
}
