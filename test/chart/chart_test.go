package chart

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	"github.com/splice-dev/splice/internal/manager"
	"github.com/splice-dev/splice/internal/testenv"
)

// object is one Kubernetes object, as parsed from YAML.
type object = map[string]any

// helmBinary is $HELM, or the helm hack/helm.sh provides in bin/ (built once, then cached).
func helmBinary(t *testing.T, root string) string {
	t.Helper()
	if h := os.Getenv("HELM"); h != "" {
		if !filepath.IsAbs(h) && strings.Contains(h, string(filepath.Separator)) {
			h = filepath.Join(root, h) // relative to the repository, where make runs
		}
		return h
	}
	out, err := exec.Command(filepath.Join(root, "hack", "helm.sh"), filepath.Join(root, "bin")).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("hack/helm.sh: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("hack/helm.sh: %v", err)
	}
	return strings.TrimSpace(string(out))
}

type chart struct {
	root string
	helm string
}

func newChart(t *testing.T) *chart {
	root := testenv.RepoRoot()
	return &chart{root: root, helm: helmBinary(t, root)}
}

// render runs helm template in namespace ns with the given --set values.
func (c *chart) render(ns string, set ...string) ([]object, error) {
	args := []string{"template", "splice", filepath.Join(c.root, "charts", "splice"), "--namespace", ns, "--include-crds"}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(c.helm, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return parseObjects(stdout.Bytes())
}

func (c *chart) mustRender(t *testing.T, ns string, set ...string) []object {
	t.Helper()
	objs, err := c.render(ns, set...)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// config reads the objects of files under config/.
func (c *chart) config(t *testing.T, files ...string) []object {
	t.Helper()
	var all []object
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(c.root, "config", f))
		if err != nil {
			t.Fatal(err)
		}
		objs, err := parseObjects(b)
		if err != nil {
			t.Fatalf("config/%s: %v", f, err)
		}
		all = append(all, objs...)
	}
	return all
}

func parseObjects(b []byte) ([]object, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var out []object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		var o object
		if err := yaml.Unmarshal(doc, &o); err != nil {
			return nil, fmt.Errorf("%w\n%s", err, doc)
		}
		if len(o) > 0 {
			out = append(out, o)
		}
	}
}

func find(objs []object, kind, name string) object {
	for _, o := range objs {
		if o["kind"] == kind && str(o, "metadata", "name") == name {
			return o
		}
	}
	return nil
}

func get(o any, path ...string) any {
	for _, p := range path {
		m, ok := o.(map[string]any)
		if !ok {
			return nil
		}
		o = m[p]
	}
	return o
}

func str(o any, path ...string) string { s, _ := get(o, path...).(string); return s }

func mustFind(t *testing.T, where string, objs []object, kind, name string) object {
	t.Helper()
	o := find(objs, kind, name)
	if o == nil {
		t.Fatalf("%s has no %s %s", where, kind, name)
	}
	return o
}

// ruleSet flattens RBAC rules into sorted "group resource verb" grants (plus resourceNames and
// nonResourceURLs), so that equal permissions compare equal however the rules are grouped.
func ruleSet(o object) []string {
	set := map[string]bool{}
	rules, _ := o["rules"].([]any)
	for _, r := range rules {
		list := func(k string) []string {
			var out []string
			v, _ := get(r, k).([]any)
			for _, s := range v {
				out = append(out, fmt.Sprint(s))
			}
			if len(out) == 0 {
				out = []string{""}
			}
			return out
		}
		for _, g := range list("apiGroups") {
			for _, res := range list("resources") {
				for _, v := range list("verbs") {
					for _, n := range list("resourceNames") {
						for _, u := range list("nonResourceURLs") {
							set[fmt.Sprintf("group=%q resource=%q verb=%q name=%q url=%q", g, res, v, n, u)] = true
						}
					}
				}
			}
		}
	}
	var out []string
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func diffSets(want, got []string) string {
	var b strings.Builder
	for _, w := range want {
		if !slices.Contains(got, w) {
			fmt.Fprintf(&b, "\n  missing in the chart: %s", w)
		}
	}
	for _, g := range got {
		if !slices.Contains(want, g) {
			fmt.Fprintf(&b, "\n  only in the chart:    %s", g)
		}
	}
	return b.String()
}

func TestCRDsMatchConfig(t *testing.T) {
	c := newChart(t)
	objs := c.mustRender(t, "splice-system")
	matches, err := filepath.Glob(filepath.Join(c.root, "config", "crd", "bases", "*.yaml"))
	if err != nil || len(matches) == 0 {
		t.Fatalf("no CRDs in config/crd/bases: %v", err)
	}
	for _, m := range matches {
		rel, _ := filepath.Rel(filepath.Join(c.root, "config"), m)
		for _, want := range c.config(t, rel) {
			name := str(want, "metadata", "name")
			got := find(objs, "CustomResourceDefinition", name)
			if got == nil {
				t.Errorf("the chart does not install the CRD %s: ln -s ../../../%s charts/splice/crds/", name, filepath.Join("config", rel))
				continue
			}
			if !reflect.DeepEqual(want, got) {
				t.Errorf("the chart's CRD %s differs from config/%s (regenerated by make manifests): charts/splice/crds/ should link to it", name, rel)
			}
		}
	}
	// And nothing else: a CRD dropped from config/ must leave the chart too.
	for _, o := range objs {
		if o["kind"] == "CustomResourceDefinition" {
			name := str(o, "metadata", "name") // <plural>.<group>, in <group>_<plural>.yaml
			plural, group, _ := strings.Cut(name, ".")
			if !slices.Contains(matches, filepath.Join(c.root, "config", "crd", "bases", group+"_"+plural+".yaml")) {
				t.Errorf("the chart installs the CRD %s, which config/crd/bases does not have", name)
			}
		}
	}
}

func TestRBACMatchesConfig(t *testing.T) {
	c := newChart(t)
	for _, ns := range []string{"splice-system", "ops"} {
		t.Run(ns, func(t *testing.T) {
			objs := c.mustRender(t, ns, "agent.rbacBindings[0].namespace=demo", "agent.rbacBindings[0].serviceAccount=greeter")
			cfg := c.config(t, "rbac/role.yaml", "rbac/leader_election_role.yaml", "rbac/agent_role.yaml",
				"rbac/role_binding.yaml", "rbac/service_account.yaml", "webhook/cert_secret_role_binding.yaml")

			for _, r := range []struct{ cfgKind, name, chartKind string }{
				{"ClusterRole", "splice-manager", "ClusterRole"},
				{"Role", "splice-manager", "Role"},
				{"Role", "splice-leader-election", "Role"},
				// The agent's Role is installed as a ClusterRole, bound per namespace.
				{"Role", "splice-agent", "ClusterRole"},
			} {
				want := mustFind(t, "config/rbac", cfg, r.cfgKind, r.name)
				got := mustFind(t, "the chart", objs, r.chartKind, r.name)
				if d := diffSets(ruleSet(want), ruleSet(got)); d != "" {
					t.Errorf("%s %s: the chart's rules differ from config/rbac (generated by make manifests):%s", r.chartKind, r.name, d)
				}
				if r.chartKind == "Role" && str(got, "metadata", "namespace") != ns {
					t.Errorf("Role %s is in namespace %q, want the release namespace %q", r.name, str(got, "metadata", "namespace"), ns)
				}
			}

			// Bindings: the same roles for the same ServiceAccount, in the release namespace.
			for _, b := range []struct{ kind, name string }{
				{"ClusterRoleBinding", "splice-manager"},
				{"RoleBinding", "splice-leader-election"},
				{"RoleBinding", "splice-manager-webhook-certs"},
			} {
				want := mustFind(t, "config", cfg, b.kind, b.name)
				got := mustFind(t, "the chart", objs, b.kind, b.name)
				if !reflect.DeepEqual(want["roleRef"], got["roleRef"]) {
					t.Errorf("%s %s: roleRef %v, config/ has %v", b.kind, b.name, got["roleRef"], want["roleRef"])
				}
				wantSubjects := withNamespace(want["subjects"], ns)
				if !reflect.DeepEqual(wantSubjects, got["subjects"]) {
					t.Errorf("%s %s: subjects %v, want %v", b.kind, b.name, got["subjects"], wantSubjects)
				}
			}
			sa := mustFind(t, "config", cfg, "ServiceAccount", "splice-manager")
			mustFind(t, "the chart", objs, "ServiceAccount", str(sa, "metadata", "name"))

			rb := mustFind(t, "the chart", objs, "RoleBinding", "splice-agent-greeter")
			if str(rb, "metadata", "namespace") != "demo" || str(rb, "roleRef", "name") != "splice-agent" {
				t.Errorf("agent RoleBinding: %v", rb)
			}
		})
	}
}

// With manager.namespaces the manager's ClusterRole keeps only the cluster-scoped rules, and a
// Role in each listed namespace, bound to the manager, holds the namespaced ones: together they
// are exactly config/rbac's ClusterRole, and the manager is told the namespaces.
func TestManagerNamespacedRBAC(t *testing.T) {
	c := newChart(t)
	objs := c.mustRender(t, "splice-system", "manager.namespaces[0]=team-a", "manager.namespaces[1]=team-b")
	want := ruleSet(mustFind(t, "config/rbac", c.config(t, "rbac/role.yaml"), "ClusterRole", "splice-manager"))
	cluster := ruleSet(mustFind(t, "the chart", objs, "ClusterRole", "splice-manager"))
	namespaced := map[string]bool{"pods": true, "pods/log": true, "pods/eviction": true, "secrets": true, "jobs": true, "events": true,
		"compilerversions": true, "compilerversions/finalizers": true, "compilerversions/status": true}
	for _, r := range cluster {
		res := regexp.MustCompile(`resource="([^"]*)"`).FindStringSubmatch(r)[1]
		if namespaced[res] {
			t.Errorf("with manager.namespaces the ClusterRole still grants %s", r)
		}
	}
	var roles []object
	for _, ns := range []string{"team-a", "team-b"} {
		var role object
		for _, o := range objs {
			if str(o, "kind") == "Role" && str(o, "metadata", "name") == "splice-manager-workloads" && str(o, "metadata", "namespace") == ns {
				role = o
			}
		}
		if role == nil {
			t.Fatalf("no Role splice-manager-workloads in %s", ns)
		}
		roles = append(roles, role)
		var bound bool
		for _, o := range objs {
			if str(o, "kind") == "RoleBinding" && str(o, "metadata", "namespace") == ns && str(o, "roleRef", "name") == "splice-manager-workloads" &&
				reflect.DeepEqual(o["subjects"], []any{map[string]any{"kind": "ServiceAccount", "name": "splice-manager", "namespace": "splice-system"}}) {
				bound = true
			}
		}
		if !bound {
			t.Errorf("the Role in %s is not bound to the manager's ServiceAccount", ns)
		}
	}
	union := append(append([]string{}, cluster...), ruleSet(roles[0])...)
	if d := diffSets(want, union); d != "" {
		t.Errorf("the ClusterRole and a namespace's Role together differ from config/rbac:%s", d)
	}
	if d := diffSets(ruleSet(roles[0]), ruleSet(roles[1])); d != "" {
		t.Errorf("the Roles of team-a and team-b differ:%s", d)
	}
	dep := mustFind(t, "the chart", objs, "Deployment", "splice-manager")
	containers, _ := get(dep, "spec", "template", "spec", "containers").([]any)
	args := fmt.Sprint(get(containers[0], "args"))
	if !strings.Contains(args, "--namespaces=team-a") || !strings.Contains(args, "--namespaces=team-b") {
		t.Errorf("manager args %s: want --namespaces for team-a and team-b", args)
	}
}

// withNamespace returns subjects with every namespace set to ns (config/ hard-codes
// splice-system; the chart uses the release namespace).
func withNamespace(subjects any, ns string) any {
	list, _ := subjects.([]any)
	var out []any
	for _, s := range list {
		m := map[string]any{}
		for k, v := range s.(map[string]any) {
			m[k] = v
		}
		if _, ok := m["namespace"]; ok {
			m["namespace"] = ns
		}
		out = append(out, m)
	}
	return out
}

func TestWebhooksMatchConfig(t *testing.T) {
	c := newChart(t)
	cfg := c.config(t, "webhook/manifests.yaml", "webhook/service.yaml")
	for _, mode := range []string{"self", "cert-manager"} {
		t.Run(mode, func(t *testing.T) {
			// config/ is generated for splice-system; in that namespace the chart must render the
			// very same webhooks.
			objs := c.mustRender(t, "splice-system", "webhook.certificates.mode="+mode)
			for _, kind := range []string{"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"} {
				for _, want := range cfg {
					if want["kind"] != kind {
						continue
					}
					name := str(want, "metadata", "name")
					got := mustFind(t, "the chart", objs, kind, name)
					compareWebhooks(t, kind+" "+name, want, got)
					ann := str(got, "metadata", "annotations", "cert-manager.io/inject-ca-from")
					if (mode == "cert-manager") != (ann != "") {
						t.Errorf("%s %s: inject-ca-from annotation %q in mode %s", kind, name, ann, mode)
					}
				}
			}
			wantSvc := mustFind(t, "config/webhook", cfg, "Service", "splice-webhook-service")
			gotSvc := mustFind(t, "the chart", objs, "Service", "splice-webhook-service")
			if !reflect.DeepEqual(get(wantSvc, "spec"), get(gotSvc, "spec")) {
				t.Errorf("webhook Service spec %v, config/webhook/service.yaml has %v", get(gotSvc, "spec"), get(wantSvc, "spec"))
			}
			// The Service must select the manager's pods.
			dep := mustFind(t, "the chart", objs, "Deployment", "splice-manager")
			labels, _ := get(dep, "spec", "template", "metadata", "labels").(map[string]any)
			sel, _ := get(wantSvc, "spec", "selector").(map[string]any)
			for k, v := range sel {
				if labels[k] != v {
					t.Errorf("the manager's pods are labelled %s=%v; the webhook Service selects %s=%v", k, labels[k], k, v)
				}
			}
			if mode == "cert-manager" {
				mustFind(t, "the chart", objs, "Certificate", "splice-webhook-serving-cert")
			} else if find(objs, "Certificate", "splice-webhook-serving-cert") != nil {
				t.Error("self mode renders a cert-manager Certificate")
			}
		})
	}

	// In another namespace, the Service reference and the injection exclusion follow it.
	objs := c.mustRender(t, "ops")
	mwc := mustFind(t, "the chart", objs, "MutatingWebhookConfiguration", "splice-mutating-webhook-configuration")
	for _, w := range get(mwc, "webhooks").([]any) {
		if ns := str(w, "clientConfig", "service", "namespace"); ns != "ops" {
			t.Errorf("webhook %s calls a Service in %q, want the release namespace", str(w, "name"), ns)
		}
		if strings.HasSuffix(str(w, "name"), ".inject.splice.dev") && !strings.Contains(fmt.Sprint(get(w, "namespaceSelector")), "ops") {
			t.Errorf("webhook %s does not exclude the release namespace: %v", str(w, "name"), get(w, "namespaceSelector"))
		}
	}
}

// compareWebhooks compares the webhooks of two configurations by name, without caBundle and
// with the Service namespace as rendered.
func compareWebhooks(t *testing.T, what string, want, got object) {
	t.Helper()
	index := func(o object) map[string]any {
		m := map[string]any{}
		list, _ := o["webhooks"].([]any)
		for _, w := range list {
			w := w.(map[string]any)
			if cc, ok := w["clientConfig"].(map[string]any); ok {
				delete(cc, "caBundle")
			}
			m[w["name"].(string)] = w
		}
		return m
	}
	wm, gm := index(want), index(got)
	for name, w := range wm {
		g, ok := gm[name]
		if !ok {
			t.Errorf("%s: the chart lacks webhook %s", what, name)
			continue
		}
		if !reflect.DeepEqual(w, g) {
			wy, _ := yaml.Marshal(w)
			gy, _ := yaml.Marshal(g)
			t.Errorf("%s: webhook %s differs from config/webhook/manifests.yaml (generated by make manifests)\nconfig:\n%s\nchart:\n%s", what, name, wy, gy)
		}
	}
	for name := range gm {
		if _, ok := wm[name]; !ok {
			t.Errorf("%s: the chart has webhook %s, which config/webhook/manifests.yaml does not", what, name)
		}
	}
}

// TestManagerFlags checks that every flag the chart passes to the manager is one cmd/manager
// defines, for every certificate mode.
func TestManagerFlags(t *testing.T) {
	c := newChart(t)
	known := map[string]bool{}
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	o := manager.DefaultOptions()
	o.Webhooks.BindFlags(fs)
	(&zap.Options{}).BindFlags(fs)
	fs.VisitAll(func(f *flag.Flag) { known[f.Name] = true })
	src, err := os.ReadFile(filepath.Join(c.root, "cmd", "manager", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`flag\.\w+Var\([^,]+,\s*"([a-z0-9-]+)"`).FindAllSubmatch(src, -1) {
		known[string(m[1])] = true
	}
	for _, mode := range []string{"self", "cert-manager"} {
		objs := c.mustRender(t, "splice-system", "webhook.certificates.mode="+mode, "metrics.enabled=false", "manager.namespaces[0]=team-a")
		dep := mustFind(t, "the chart", objs, "Deployment", "splice-manager")
		containers, _ := get(dep, "spec", "template", "spec", "containers").([]any)
		args, _ := get(containers[0], "args").([]any)
		for _, a := range args {
			name := strings.SplitN(strings.TrimLeft(fmt.Sprint(a), "-"), "=", 2)[0]
			if !known[name] {
				t.Errorf("the chart passes --%s, which cmd/manager does not define", name)
			}
		}
	}
}

// TestSchemaRejectsBadValues: values.schema.json is enforced by helm.
func TestSchemaRejectsBadValues(t *testing.T) {
	c := newChart(t)
	for _, set := range []string{
		"webhook.certificates.mode=vault",
		"agent.image.pullPolicy=Sometimes",
		"build.goImage=golang:1.26",
		"agent.resources.memoryLimit=lots",
		"unknownValue=1",
	} {
		if _, err := c.render("splice-system", set); err == nil {
			t.Errorf("helm template --set %s: rendered, want a schema error", set)
		}
	}
}

// managerArgs are the manager container's arguments in objs.
func managerArgs(t *testing.T, objs []object) []string {
	t.Helper()
	dep := mustFind(t, "the chart", objs, "Deployment", "splice-manager")
	containers, _ := get(dep, "spec", "template", "spec", "containers").([]any)
	raw, _ := get(containers[0], "args").([]any)
	var args []string
	for _, a := range raw {
		args = append(args, fmt.Sprint(a))
	}
	return args
}

// TestManagerEndpoints: by default the chart serves metrics over HTTPS behind authentication
// and authorization, with a ClusterRole for scrapers; without metrics.secure they are on
// loopback only, with no Service; the Prometheus allowlist is empty unless listed.
func TestManagerEndpoints(t *testing.T) {
	c := newChart(t)
	for _, tt := range []struct {
		set            []string
		want, wantNot  []string
		service, roles bool
	}{
		{want: []string{"--metrics-bind-address=:8080", "--metrics-secure=true"}, wantNot: []string{"--prometheus-allowed-addresses"},
			service: true, roles: true},
		{set: []string{"metrics.secure=false"}, want: []string{"--metrics-bind-address=127.0.0.1:8080"}, wantNot: []string{"--metrics-secure"}},
		{set: []string{"metrics.enabled=false"}, want: []string{"--metrics-bind-address=0"}, wantNot: []string{"--metrics-secure"}},
		{set: []string{"manager.prometheus.allowedAddresses={http://prometheus.monitoring:9090,https://thanos.example.com/prom}"},
			want:    []string{"--prometheus-allowed-addresses=http://prometheus.monitoring:9090", "--prometheus-allowed-addresses=https://thanos.example.com/prom"},
			service: true, roles: true},
	} {
		objs := c.mustRender(t, "splice-system", tt.set...)
		args := strings.Join(managerArgs(t, objs), " ")
		for _, w := range tt.want {
			if !strings.Contains(args, w) {
				t.Errorf("--set %v: the manager's args %s lack %s", tt.set, args, w)
			}
		}
		for _, w := range tt.wantNot {
			if strings.Contains(args, w) {
				t.Errorf("--set %v: the manager's args %s hold %s", tt.set, args, w)
			}
		}
		if got := find(objs, "Service", "splice-manager-metrics") != nil; got != tt.service {
			t.Errorf("--set %v: metrics Service rendered %v, want %v", tt.set, got, tt.service)
		}
		if got := find(objs, "ClusterRole", "splice-metrics-reader") != nil; got != tt.roles {
			t.Errorf("--set %v: ClusterRole splice-metrics-reader rendered %v, want %v", tt.set, got, tt.roles)
		}
	}
	if _, err := c.render("splice-system", "manager.prometheus.allowedAddresses={prometheus:9090}"); err == nil {
		t.Error("an allowed address that is not an http(s) URL renders; want a schema error")
	}
}

// TestPoliciesMatchConfig: the chart installs config/policy's ValidatingAdmissionPolicies and
// bindings, the same in splice-system with the default values, and with the release namespace
// (the manager's user name) and build.serviceAccount substituted elsewhere.
func TestPoliciesMatchConfig(t *testing.T) {
	c := newChart(t)
	cfg := c.config(t, "policy/agent_policy.yaml", "policy/manager_policy.yaml")
	check := func(objs []object, ns, buildSA string) {
		t.Helper()
		for _, want := range cfg {
			kind, name := fmt.Sprint(want["kind"]), str(want, "metadata", "name")
			got := mustFind(t, "the chart", objs, kind, name)
			w, _ := yaml.Marshal(get(want, "spec"))
			ws := strings.ReplaceAll(string(w), "system:serviceaccount:splice-system:splice-manager", "system:serviceaccount:"+ns+":splice-manager")
			ws = strings.ReplaceAll(ws, `expression: '''default'''`, "expression: '''"+buildSA+"'''")
			g, _ := yaml.Marshal(get(got, "spec"))
			if ws != string(g) {
				t.Errorf("namespace %s, build.serviceAccount %q: %s %s differs from config/policy\nconfig (substituted):\n%s\nchart:\n%s", ns, buildSA, kind, name, ws, g)
			}
		}
		for _, o := range objs {
			if k := o["kind"]; (k == "ValidatingAdmissionPolicy" || k == "ValidatingAdmissionPolicyBinding") && find(cfg, fmt.Sprint(k), str(o, "metadata", "name")) == nil {
				t.Errorf("the chart installs %s %s, which config/policy does not have", k, str(o, "metadata", "name"))
			}
		}
	}
	check(c.mustRender(t, "splice-system"), "splice-system", "default")
	check(c.mustRender(t, "ops", "build.serviceAccount=builder"), "ops", "builder")
	if _, err := c.render("splice-system", "build.serviceAccount=it's"); err == nil {
		t.Error("a build.serviceAccount that is no ServiceAccount name (it would break the policy's expression) renders; want a schema error")
	}
}

// TestManagerAvailability: two replicas by default, spread over nodes where possible, with a
// PodDisruptionBudget that keeps one; each can be turned off, and the budget is left out when
// it would allow no eviction at all.
func TestManagerAvailability(t *testing.T) {
	c := newChart(t)
	spec := func(objs []object) object {
		return get(mustFind(t, "the chart", objs, "Deployment", "splice-manager"), "spec").(map[string]any)
	}
	objs := c.mustRender(t, "splice-system")
	if r := get(spec(objs), "replicas"); fmt.Sprint(r) != "2" {
		t.Errorf("replicas %v, want 2 by default", r)
	}
	term := get(spec(objs), "template", "spec", "affinity", "podAntiAffinity", "preferredDuringSchedulingIgnoredDuringExecution")
	if !strings.Contains(fmt.Sprint(term), "topologyKey:kubernetes.io/hostname") || !strings.Contains(fmt.Sprint(term), "app.kubernetes.io/component:manager") {
		t.Errorf("default anti-affinity %v, want a preferred term by hostname on the manager's pods", term)
	}
	pdb := mustFind(t, "the chart", objs, "PodDisruptionBudget", "splice-manager")
	if fmt.Sprint(get(pdb, "spec", "minAvailable")) != "1" || str(pdb, "spec", "selector", "matchLabels", "app.kubernetes.io/component") != "manager" {
		t.Errorf("PodDisruptionBudget %v, want minAvailable 1 over the manager's pods", get(pdb, "spec"))
	}

	objs = c.mustRender(t, "splice-system", "podAntiAffinity.enabled=false", "podDisruptionBudget.enabled=false")
	if a := get(spec(objs), "template", "spec", "affinity"); a != nil {
		t.Errorf("podAntiAffinity.enabled=false renders affinity %v", a)
	}
	if find(objs, "PodDisruptionBudget", "splice-manager") != nil {
		t.Error("podDisruptionBudget.enabled=false renders a PodDisruptionBudget")
	}
	if find(c.mustRender(t, "splice-system", "replicaCount=1"), "PodDisruptionBudget", "splice-manager") != nil {
		t.Error("one replica renders a PodDisruptionBudget of minAvailable 1, which would stall every drain of its node")
	}
	objs = c.mustRender(t, "splice-system", "affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey=zone")
	if a := fmt.Sprint(get(spec(objs), "template", "spec", "affinity", "podAntiAffinity")); strings.Contains(a, "preferred") || !strings.Contains(a, "zone") {
		t.Errorf("a podAntiAffinity of the user's own gives %s, want exactly the user's", a)
	}
	if _, err := c.render("splice-system", "leaderElection.enabled=false"); err == nil || !strings.Contains(err.Error(), "needs leaderElection.enabled") {
		t.Errorf("two replicas without leader election: %v, want a refusal", err)
	}
}
