package admission

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/splice-dev/splice/webhooks"
)

// testManagerDown: config/webhook/manifests.yaml is installed (failurePolicy Fail) and nothing
// serves it — the API server cannot even find the webhook Service, as when the manager's
// namespace is being recreated. Opted-in pods are refused with an error naming the Splice
// webhook; every other pod is created, and so is every pod of kube-system and of the manager's
// own namespace, opted in or not, so the manager and what it runs on can always come back. An
// injected pod's metadata can still be written; its spec cannot, until the guard answers.
func testManagerDown(t *testing.T, c *cluster) {
	ctx := context.Background()
	if got := c.webhookNames(t, webhooks.MutatingConfigName); !contains(got, "pod-label.inject.splice.dev") || !contains(got, "namespace-label.inject.splice.dev") {
		t.Fatalf("config/webhook/manifests.yaml has webhooks %v; the test expects the two injection webhooks", got)
	}
	plain := c.createNamespace(t, "plain-", nil)
	labelled := c.createNamespace(t, "labelled-", map[string]string{"splice.dev/inject": "true"})
	create := func(ns, name, inject string) error {
		p := plainPod(ns, name, "")
		if inject != "" {
			p.Labels["splice.dev/inject"] = inject
		}
		_, err := c.admin.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		return err
	}

	t.Run("opted-in pods are refused, naming the webhook", func(t *testing.T) {
		refused(t, "a pod labelled splice.dev/inject=true", create(plain, "opted-in", "true"), `failed calling webhook "pod-label.inject.splice.dev"`)
		refused(t, "an unlabelled pod of a namespace labelled splice.dev/inject=true", create(labelled, "by-namespace", ""), `failed calling webhook "namespace-label.inject.splice.dev"`)
	})

	t.Run("every other pod is created", func(t *testing.T) {
		allowed(t, "an unlabelled pod of an unlabelled namespace", create(plain, "unlabelled", ""))
		allowed(t, "a pod labelled splice.dev/inject=false", create(plain, "opted-out", "false"))
		allowed(t, "a pod labelled splice.dev/inject=false in a labelled namespace", create(labelled, "opted-out", "false"))
		allowed(t, "a pod labelled splice.dev/inject=yes (not true) in a labelled namespace", create(labelled, "other-value", "yes"))
	})

	t.Run("kube-system and the manager's namespace are never sent to the webhook", func(t *testing.T) {
		for _, ns := range []string{"kube-system", "splice-system"} {
			label := map[string]any{"metadata": map[string]any{"labels": map[string]string{"splice.dev/inject": "true"}}}
			raw, _ := jsonMarshal(label)
			if _, err := c.admin.CoreV1().Namespaces().Patch(ctx, ns, types.MergePatchType, raw, metav1.PatchOptions{}); err != nil {
				t.Fatal(err)
			}
			allowed(t, "a pod labelled splice.dev/inject=true in "+ns, create(ns, "opted-in", "true"))
			allowed(t, "an unlabelled pod in "+ns+", itself labelled splice.dev/inject=true", create(ns, "by-namespace", ""))
		}
	})

	t.Run("an injected pod's metadata can be written, its spec not", func(t *testing.T) {
		p := plainPod(plain, "injected", "")
		if _, err := webhooks.Inject(p, webhooks.AgentConfig{}.WithDefaults()); err != nil {
			t.Fatal(err)
		}
		// Unlabelled, so no mutating webhook is called: it is stored as injected.
		c.createPod(t, p)
		allowed(t, "annotating an injected pod", mergePatch(c.admin, plain, "injected", map[string]any{"metadata": map[string]any{"annotations": map[string]string{"splice.dev/desired-artifact": "r.example.com/x@sha256:" + digest('c')}}}))
		allowed(t, "relabelling an injected pod", mergePatch(c.admin, plain, "injected", map[string]any{"metadata": map[string]any{"labels": map[string]string{"tier": "x"}}}))
		refused(t, "changing an injected pod's app image", patchPod(c.admin, plain, "injected", types.StrategicMergePatchType,
			map[string]any{"spec": map[string]any{"containers": []map[string]any{{"name": "app", "image": "app:2"}}}}), `failed calling webhook "guard.inject.splice.dev"`)
		allowed(t, "changing a plain pod's image", patchPod(c.admin, plain, "unlabelled", types.StrategicMergePatchType,
			map[string]any{"spec": map[string]any{"containers": []map[string]any{{"name": "app", "image": "app:2"}}}}))
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}
