package admission

import (
	"context"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
)

const (
	// managerPolicy is the name every refusal of splice-manager-limits starts with.
	managerPolicy = "splice-manager-limits"
	// managerUser is the manager's ServiceAccount as config/rbac/service_account.yaml creates it.
	managerUser = "system:serviceaccount:splice-system:splice-manager"
)

// asManager is the admin's configuration impersonating the manager's ServiceAccount, with the
// groups the API server gives every ServiceAccount token: RBAC (config/rbac/role.yaml, bound
// by role_binding.yaml) and the policy see the manager exactly.
func (c *cluster) asManager() kubernetes.Interface {
	cfg := rest.CopyConfig(c.cfg)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: managerUser,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:splice-system", "system:authenticated"},
	}
	return kubernetes.NewForConfigOrDie(cfg)
}

// buildJob is a Job as controllers/build_job.go makes it, in what matters here: the namespace's
// default ServiceAccount, no token, emptyDir volumes, restricted containers.
func buildJob(ns, name string) *batchv1.Job {
	restricted := func() *corev1.SecurityContext {
		return &corev1.SecurityContext{AllowPrivilegeEscalation: ptr.To(false), Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}
	}
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			RestartPolicy:                corev1.RestartPolicyNever,
			AutomountServiceAccountToken: ptr.To(false),
			InitContainers:               []corev1.Container{{Name: "install", Image: "splice-manager:dev", SecurityContext: restricted()}},
			Containers:                   []corev1.Container{{Name: "build", Image: "golang:1.26.0", SecurityContext: restricted()}},
			Volumes:                      []corev1.Volume{{Name: "workspace", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		}}},
	}
}

// testManagerPolicy: as the manager's ServiceAccount, a pod update may change only splice.dev/
// annotations, a Job may be created only for the build ServiceAccount and without host access,
// and only Splice's own webhook configurations may be written.
func testManagerPolicy(t *testing.T, c *cluster) {
	ctx := context.Background()
	mgr := c.asManager()
	ns := c.createNamespace(t, "work-", nil)
	c.createPod(t, plainPod(ns, "web", ""))
	c.createPod(t, plainPod("kube-system", "system-web", ""))

	eventuallyRefused(t, "the manager relabels a pod", func() error {
		return mergePatch(mgr, ns, "web", map[string]any{"metadata": map[string]any{"labels": map[string]string{"app": "moved"}}})
	}, managerPolicy+": the Splice manager may change only the splice.dev/ annotations")

	t.Run("pods: splice.dev/ annotations only", func(t *testing.T) {
		allowed(t, "the manager sets desired-artifact and traffic-percent",
			mergePatch(mgr, ns, "web", map[string]any{"metadata": map[string]any{"annotations": map[string]any{
				"splice.dev/desired-artifact": "registry.example.com/greeter@sha256:" + digest('b'), "splice.dev/traffic-percent": "10"}}}))
		allowed(t, "the manager removes traffic-percent",
			mergePatch(mgr, ns, "web", map[string]any{"metadata": map[string]any{"annotations": map[string]any{"splice.dev/traffic-percent": nil}}}))
		want := managerPolicy + ": the Splice manager may change only the splice.dev/ annotations"
		refused(t, "the manager sets another annotation", mergePatch(mgr, ns, "web", map[string]any{"metadata": map[string]any{"annotations": map[string]string{"example.com/owner": "me"}}}), want)
		refused(t, "the manager changes a container image",
			patchPod(mgr, ns, "web", types.StrategicMergePatchType, map[string]any{"spec": map[string]any{"containers": []map[string]any{{"name": "app", "image": "evil:1"}}}}), want)
		refused(t, "the manager relabels a kube-system pod", mergePatch(mgr, "kube-system", "system-web", map[string]any{"metadata": map[string]any{"labels": map[string]string{"app": "x"}}}), want)
		refused(t, "the manager adds a finalizer", mergePatch(mgr, ns, "web", map[string]any{"metadata": map[string]any{"finalizers": []string{"example.com/hold"}}}), want)
	})

	t.Run("jobs: the build ServiceAccount, no host access", func(t *testing.T) {
		create := func(j *batchv1.Job) error {
			_, err := mgr.BatchV1().Jobs(ns).Create(ctx, j, metav1.CreateOptions{})
			return err
		}
		allowed(t, "a build Job of the namespace's default ServiceAccount", create(buildJob(ns, "build-1")))
		j := buildJob(ns, "build-2")
		j.Spec.Template.Spec.ServiceAccountName = "default"
		allowed(t, "a build Job naming the default ServiceAccount", create(j))

		for i, tt := range []struct {
			what   string
			mutate func(*corev1.PodSpec)
			want   string
		}{
			{"another ServiceAccount", func(s *corev1.PodSpec) { s.ServiceAccountName = "deployer" },
				"may create Jobs only for the build ServiceAccount default, not deployer"},
			{"another ServiceAccount through the deprecated field", func(s *corev1.PodSpec) { s.DeprecatedServiceAccount = "deployer" },
				"may create Jobs only for the build ServiceAccount default, not deployer"},
			{"the token mounted", func(s *corev1.PodSpec) { s.AutomountServiceAccountToken = nil }, "mount no service-account token"},
			{"a hostPath volume", func(s *corev1.PodSpec) {
				s.Volumes = append(s.Volumes, corev1.Volume{Name: "root", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}})
			}, "hostPath volumes"},
			{"a privileged init container", func(s *corev1.PodSpec) {
				s.InitContainers[0].SecurityContext = &corev1.SecurityContext{Privileged: ptr.To(true)}
			}, "privileged containers"},
			{"a privileged container", func(s *corev1.PodSpec) {
				s.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: ptr.To(true)}
			}, "privileged containers"},
			{"the node's network", func(s *corev1.PodSpec) { s.HostNetwork = true }, "the node's network, PID or IPC namespace"},
			{"the node's PIDs", func(s *corev1.PodSpec) { s.HostPID = true }, "the node's network, PID or IPC namespace"},
			{"the node's IPC", func(s *corev1.PodSpec) { s.HostIPC = true }, "the node's network, PID or IPC namespace"},
		} {
			j := buildJob(ns, "bad-"+digest('0')[:i+1])
			tt.mutate(&j.Spec.Template.Spec)
			err := create(j)
			refused(t, "the manager creates a Job with "+tt.what, err, managerPolicy+": ")
			refused(t, "the manager creates a Job with "+tt.what, err, tt.want)
		}

		// The policy limits the manager only.
		j = buildJob(ns, "admin-job")
		j.Spec.Template.Spec.ServiceAccountName = "deployer"
		j.Spec.Template.Spec.Volumes = append(j.Spec.Template.Spec.Volumes, corev1.Volume{Name: "root", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}})
		_, err := c.admin.BatchV1().Jobs(ns).Create(ctx, j, metav1.CreateOptions{})
		allowed(t, "the cluster admin creates any Job", err)
	})

	t.Run("webhook configurations: Splice's own only", func(t *testing.T) {
		other := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "someone-elses"}}
		if _, err := c.admin.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, other, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		relabel := func(name string, mutating bool) error {
			patch := []byte(`{"metadata":{"labels":{"touched":"yes"}}}`)
			var err error
			if mutating {
				_, err = mgr.AdmissionregistrationV1().MutatingWebhookConfigurations().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
			} else {
				// An update, which is what the certificate rotator does.
				var v *admissionregistrationv1.ValidatingWebhookConfiguration
				if v, err = mgr.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{}); err == nil {
					v.Labels = map[string]string{"touched": "yes"}
					_, err = mgr.AdmissionregistrationV1().ValidatingWebhookConfigurations().Update(ctx, v, metav1.UpdateOptions{})
				}
			}
			return err
		}
		allowed(t, "the manager updates splice-validating-webhook-configuration", relabel("splice-validating-webhook-configuration", false))
		refused(t, "the manager updates someone else's webhook configuration", relabel("someone-elses", false), "forbidden")
		refused(t, "the manager patches its own mutating configuration (it updates, never patches)", relabel("splice-mutating-webhook-configuration", true), "forbidden")
		if _, err := mgr.AdmissionregistrationV1().ValidatingWebhookConfigurations().List(ctx, metav1.ListOptions{}); err != nil {
			t.Errorf("the manager lists webhook configurations (the rotator's informer does): %v", err)
		}
	})
}

// digest is a well-formed sha256 digest of one repeated hex character.
func digest(c byte) string {
	b := make([]byte, 64)
	for i := range b {
		b[i] = c
	}
	return string(b)
}
