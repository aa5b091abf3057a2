package webhooks

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/splice-dev/splice/internal/trust"
	"github.com/splice-dev/splice/sidecar"
)

func trustEnv(p *corev1.Pod) (string, bool) {
	i := slices.IndexFunc(agentOf(p).Env, func(e corev1.EnvVar) bool { return e.Name == sidecar.EnvTrustPolicy })
	if i < 0 {
		return "", false
	}
	return agentOf(p).Env[i].Value, true
}

// The agent of a namespace a policy covers gets that policy, whatever the pod spec said; the
// agent of any other namespace gets none, and a forged one is removed.
func TestInjectTrustPolicy(t *testing.T) {
	_, pub, err := trust.GenerateKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := AgentConfig{Trust: &trust.Config{Policies: []trust.Policy{
		{Name: "shop", Namespaces: []string{"shop"}, Registries: []string{"registry.example.com/shop/"}, Keys: []string{string(pub)}},
	}}}.WithDefaults()

	pod := basePod()
	if _, err := Inject(pod, cfg); err != nil {
		t.Fatalf("Inject: %v", err)
	}
	enc, ok := trustEnv(pod)
	if !ok {
		t.Fatalf("agent env %+v: no %s for a covered namespace", agentOf(pod).Env, sidecar.EnvTrustPolicy)
	}
	got, err := trust.DecodePolicy(enc)
	if err != nil || got.Name != "shop" || !slices.Equal(got.Registries, []string{"registry.example.com/shop/"}) {
		t.Fatalf("agent policy %+v (err %v): want policy shop", got, err)
	}
	for _, c := range pod.Spec.Containers {
		if slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == sidecar.EnvTrustPolicy }) {
			t.Errorf("app container %s got the trust policy", c.Name)
		}
	}
	again := pod.DeepCopy()
	if _, err := Inject(again, cfg); err != nil || !equality.Semantic.DeepEqual(again, pod) {
		t.Fatalf("second Inject changed the pod (err %v)", err)
	}

	// A pod creator's own value is replaced by the namespace's policy.
	forged := pod.DeepCopy()
	for i := range agentOf(forged).Env {
		if agentOf(forged).Env[i].Name == sidecar.EnvTrustPolicy {
			agentOf(forged).Env[i].Value = `{"v":1,"n":"mine","ns":["*"],"k":[]}`
		}
	}
	if _, err := Inject(forged, cfg); err != nil {
		t.Fatal(err)
	}
	if v, _ := trustEnv(forged); v != enc {
		t.Fatalf("a forged policy survived injection: %q", v)
	}

	// Another namespace: no policy, and a copied spec's policy is removed.
	other := pod.DeepCopy()
	other.Namespace = "elsewhere"
	if _, err := Inject(other, cfg); err != nil {
		t.Fatal(err)
	}
	if v, ok := trustEnv(other); ok {
		t.Fatalf("namespace no policy covers got %q", v)
	}

	// Without a namespace the policy cannot be chosen: refused, not left unchecked.
	nameless := basePod()
	nameless.Namespace = ""
	if _, err := Inject(nameless, cfg); err == nil || !strings.Contains(err.Error(), "namespace") {
		t.Fatalf("a pod without a namespace was injected with policies configured: %v", err)
	}
}
