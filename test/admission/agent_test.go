package admission

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

const (
	// agentPolicy is the name every refusal of splice-agent-own-pod starts with.
	agentPolicy  = "splice-agent-own-pod"
	podNameClaim = "authentication.kubernetes.io/pod-name"
	report       = "splice.dev/report"
	pluginReady  = "splice.dev/plugin-ready"
)

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// reportPatch is the agent's write of its report (sidecar/agent.go, Agent.write): a JSON merge
// patch of the one annotation.
func reportPatch(value string) map[string]any {
	return map[string]any{"metadata": map[string]any{"annotations": map[string]string{report: value}}}
}

// conditionPatch is the agent's write of its condition (sidecar/agent.go, Agent.setCondition):
// a strategic merge patch of status.conditions holding that one condition, merged by type.
func conditionPatch(c corev1.PodCondition) map[string]any {
	return map[string]any{"status": map[string]any{"conditions": []corev1.PodCondition{c}}}
}

func condition(t corev1.PodConditionType, status corev1.ConditionStatus) corev1.PodCondition {
	return corev1.PodCondition{Type: t, Status: status, Reason: "Ready", Message: "the host serves sha256:1", LastTransitionTime: metav1.NewTime(time.Now())}
}

// testAgentPolicy: a ServiceAccount bound to config/rbac/agent_role.yaml runs pods A and B; a
// token bound to A (what the kubelet mounts into A's agent) may write A's report and A's
// plugin-ready condition, and nothing else of A or anything of B; a token of the same
// ServiceAccount bound to no pod may write nothing.
func testAgentPolicy(t *testing.T, c *cluster) {
	ctx := context.Background()
	ns := c.createNamespace(t, "agents-", nil)
	c.bindAgentRole(t, ns, "app")
	a := c.createPod(t, plainPod(ns, "a", "app"))
	c.createPod(t, plainPod(ns, "b", "app"))

	cfgA, _ := c.tokenFor(t, ns, "app", a)
	// envtest's kube-apiserver signs service-account tokens (--service-account-signing-key-file)
	// and authenticates them; a token bound to a pod carries the pod's name as a claim.
	who := whoAmI(t, cfgA)
	if who.Username != "system:serviceaccount:"+ns+":app" || !slices.Equal(who.Extra[podNameClaim], []string{"a"}) {
		t.Fatalf("a token bound to pod a authenticates as %s with extra %v: want the ServiceAccount with claim %s=[a]", who.Username, who.Extra, podNameClaim)
	}
	agentA := kubernetes.NewForConfigOrDie(cfgA)

	// The first forged write may still pass while the policy loads; from then on it never does.
	eventuallyRefused(t, "A's token writes B's report", func() error {
		return mergePatch(agentA, ns, "b", reportPatch(`{"state":"Ready","forged":true}`))
	}, agentPolicy+": a token bound to pod a may write only that pod, not b")

	t.Run("its own report and plugin-ready condition", func(t *testing.T) {
		allowed(t, "A's token writes A's report", mergePatch(agentA, ns, "a", reportPatch(`{"state":"Ready"}`)))
		allowed(t, "A's token writes it again, changed", mergePatch(agentA, ns, "a", reportPatch(`{"state":"Swapping"}`)))
		allowed(t, "A's token writes A's plugin-ready condition",
			patchPod(agentA, ns, "a", types.StrategicMergePatchType, conditionPatch(condition(pluginReady, corev1.ConditionTrue)), "status"))
		allowed(t, "A's token flips it",
			patchPod(agentA, ns, "a", types.StrategicMergePatchType, conditionPatch(condition(pluginReady, corev1.ConditionFalse)), "status"))
		if _, err := agentA.CoreV1().Pods(ns).Get(ctx, "a", metav1.GetOptions{}); err != nil {
			t.Errorf("A's token reads A: %v", err)
		}
	})

	t.Run("nothing of another pod", func(t *testing.T) {
		refused(t, "A's token writes B's report (a forged report)", mergePatch(agentA, ns, "b", reportPatch(`{"state":"Ready"}`)), "may write only that pod, not b")
		refused(t, "A's token changes B's annotations", mergePatch(agentA, ns, "b", map[string]any{"metadata": map[string]any{"annotations": map[string]string{"splice.dev/desired-artifact": "evil.example.com/x@sha256:" + digest('e')}}}), "may write only that pod, not b")
		refused(t, "A's token writes B's plugin-ready condition",
			patchPod(agentA, ns, "b", types.StrategicMergePatchType, conditionPatch(condition(pluginReady, corev1.ConditionFalse)), "status"), "may write only that pod, not b")
	})

	t.Run("nothing else of its own pod", func(t *testing.T) {
		onPods := agentPolicy + ": on pods,"
		refused(t, "A's token points A's desired-artifact elsewhere",
			mergePatch(agentA, ns, "a", map[string]any{"metadata": map[string]any{"annotations": map[string]string{"splice.dev/desired-artifact": "evil.example.com/x@sha256:0"}}}), onPods)
		refused(t, "A's token writes its report and another annotation in one patch",
			mergePatch(agentA, ns, "a", map[string]any{"metadata": map[string]any{"annotations": map[string]any{report: "{}", "example.com/x": "y"}}}), onPods)
		refused(t, "A's token removes its report",
			mergePatch(agentA, ns, "a", map[string]any{"metadata": map[string]any{"annotations": map[string]any{report: nil}}}), onPods)
		refused(t, "A's token changes A's labels", mergePatch(agentA, ns, "a", map[string]any{"metadata": map[string]any{"labels": map[string]string{"app": "other"}}}), onPods)
		refused(t, "A's token adds a finalizer to A", mergePatch(agentA, ns, "a", map[string]any{"metadata": map[string]any{"finalizers": []string{"example.com/hold"}}}), onPods)
		refused(t, "A's token changes A's container image",
			patchPod(agentA, ns, "a", types.StrategicMergePatchType, map[string]any{"spec": map[string]any{"containers": []map[string]any{{"name": "app", "image": "evil:1"}}}}), onPods)

		onStatus := agentPolicy + ": on pods/status,"
		refused(t, "A's token writes another condition of A",
			patchPod(agentA, ns, "a", types.StrategicMergePatchType, conditionPatch(condition(corev1.PodReady, corev1.ConditionTrue)), "status"), onStatus)
		refused(t, "A's token writes its condition and A's pod IP in one patch",
			patchPod(agentA, ns, "a", types.StrategicMergePatchType, map[string]any{"status": map[string]any{
				"conditions": []corev1.PodCondition{condition(pluginReady, corev1.ConditionTrue)}, "podIP": "10.9.9.9", "podIPs": []map[string]string{{"ip": "10.9.9.9"}}}}, "status"), onStatus)
		refused(t, "A's token changes A's phase", mergePatch(agentA, ns, "a", map[string]any{"status": map[string]any{"phase": "Failed"}}, "status"), onStatus)
	})

	t.Run("a token bound to no pod writes nothing", func(t *testing.T) {
		cfg, _ := c.tokenFor(t, ns, "app", nil)
		if who := whoAmI(t, cfg); len(who.Extra[podNameClaim]) != 0 {
			t.Fatalf("an unbound token carries a pod claim: %v", who.Extra)
		}
		unbound := kubernetes.NewForConfigOrDie(cfg)
		want := agentPolicy + ": this token is bound to no pod"
		refused(t, "an unbound token writes A's report", mergePatch(unbound, ns, "a", reportPatch(`{"state":"Ready"}`)), want)
		refused(t, "an unbound token writes A's plugin-ready condition",
			patchPod(unbound, ns, "a", types.StrategicMergePatchType, conditionPatch(condition(pluginReady, corev1.ConditionTrue)), "status"), want)
		if _, err := unbound.CoreV1().Pods(ns).Get(ctx, "a", metav1.GetOptions{}); err != nil {
			t.Errorf("the policy limits writes only, but the unbound token cannot read A: %v", err)
		}
	})

	t.Run("callers without the agent's rights are not its business", func(t *testing.T) {
		// Another ServiceAccount allowed to patch pods, not bound to the agent's Role.
		c.bindRole(t, ns, "editor", rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "patch"}})
		p := c.createPod(t, plainPod(ns, "editor-pod", "editor"))
		cfg, _ := c.tokenFor(t, ns, "editor", p)
		// RBAC loads the new RoleBinding through an informer: the first patch may precede it.
		eventuallyAllowed(t, "a pod editor relabels B", func() error {
			return mergePatch(kubernetes.NewForConfigOrDie(cfg), ns, "b", map[string]any{"metadata": map[string]any{"labels": map[string]string{"tier": "edited"}}})
		})
		// A ServiceAccount with wildcard rights in the namespace holds the agent's mark too (as
		// cluster-admin does); the probe verb keeps it out of the policy.
		c.bindRole(t, ns, "operator", rbacv1.PolicyRule{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"*"}})
		op := c.createPod(t, plainPod(ns, "operator-pod", "operator"))
		cfg, _ = c.tokenFor(t, ns, "operator", op)
		eventuallyAllowed(t, "a namespace operator (every right) relabels A", func() error {
			return mergePatch(kubernetes.NewForConfigOrDie(cfg), ns, "a", map[string]any{"metadata": map[string]any{"labels": map[string]string{"tier": "operator"}}})
		})
		allowed(t, "the cluster admin relabels A", mergePatch(c.admin, ns, "a", map[string]any{"metadata": map[string]any{"labels": map[string]string{"tier": "admin"}}}))
	})
}

// bindAgentRole creates the agent's Role from config/rbac/agent_role.yaml in ns and binds it to
// ServiceAccount sa, which it creates.
func (c *cluster) bindAgentRole(t *testing.T, ns, sa string) {
	t.Helper()
	role := c.apply(t, "rbac/agent_role.yaml", ns)[0]
	c.bind(t, ns, sa, role.GetName())
}

// bindRole creates a Role named after sa with rules in ns and binds it to ServiceAccount sa,
// which it creates.
func (c *cluster) bindRole(t *testing.T, ns, sa string, rules ...rbacv1.PolicyRule) {
	t.Helper()
	r := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: sa, Namespace: ns}, Rules: rules}
	if _, err := c.admin.RbacV1().Roles(ns).Create(context.Background(), r, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.bind(t, ns, sa, r.Name)
}

func (c *cluster) bind(t *testing.T, ns, sa, role string) {
	t.Helper()
	ctx := context.Background()
	if _, err := c.admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: sa + "-" + role, Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: ns}},
	}
	if _, err := c.admin.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}
