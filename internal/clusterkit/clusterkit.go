// Package clusterkit holds the workloads the end-to-end suite and the cluster demo both put on
// the local cluster (hack/cluster): the opted-in greeter example and small services behind
// fixed ClusterIPs (the local cluster has no DNS).
package clusterkit

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

const (
	// GreeterImage is the example host with plugin v1 built in (make images).
	GreeterImage = "splice-greeter:dev"
	// ServicesImage serves an OCI registry or a directory (make images).
	ServicesImage = "splice-e2e-services:dev"
)

// Greeter is the example service as a Deployment whose pods opt into injection: name is also
// its "app" label, sa the ServiceAccount the chart binds the agent's role to.
func Greeter(ns, name, sa string, replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	podLabels := map[string]string{"app": name, splicev1.LabelInject: "true"}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels},
				Spec: corev1.PodSpec{
					ServiceAccountName:            sa,
					TerminationGracePeriodSeconds: ptr.To[int64](5),
					Containers: []corev1.Container{{
						Name:            "greeter",
						Image:           GreeterImage,
						ImagePullPolicy: corev1.PullNever,
						Ports:           []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}},
							PeriodSeconds: 2,
						},
					}},
				},
			},
		},
	}
}

// GreeterService selects the pods of the greeter Deployment name on port 80.
func GreeterService(ns, name string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}},
		},
	}
}

// Fixed is a one-replica service behind a Service at a fixed ClusterIP.
type Fixed struct {
	Name      string
	ClusterIP string
	// Port is the container's; ServicePort defaults to it.
	Port, ServicePort int32
	Container         corev1.Container
	Volume            *corev1.Volume
	// PartOf labels the objects (app.kubernetes.io/part-of).
	PartOf string
}

func (f Fixed) servicePort() int32 {
	if f.ServicePort == 0 {
		return f.Port
	}
	return f.ServicePort
}

// Deploy creates f's Deployment and Service in ns; objects that exist already are kept, so a
// demo run again finds its registry with what was pushed to it.
func Deploy(ctx context.Context, cs kubernetes.Interface, ns string, f Fixed) error {
	labels := map[string]string{"app": f.Name, "app.kubernetes.io/part-of": f.PartOf}
	c := f.Container
	c.Name = f.Name
	c.ImagePullPolicy = corev1.PullNever
	c.Ports = []corev1.ContainerPort{{ContainerPort: f.Port}}
	c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(f.Port)}}, PeriodSeconds: 1}
	spec := corev1.PodSpec{Containers: []corev1.Container{c}, TerminationGracePeriodSeconds: ptr.To[int64](1)}
	if f.Volume != nil {
		spec.Volumes = []corev1.Volume{*f.Volume}
	}
	_, err := cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: f.Name, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec},
		},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create Deployment %s/%s: %w", ns, f.Name, err)
	}
	// Look first: creating it again fails on its ClusterIP before its name.
	if _, err := cs.CoreV1().Services(ns).Get(ctx, f.Name, metav1.GetOptions{}); err == nil {
		return nil
	}
	_, err = cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: f.Name, Labels: labels},
		Spec: corev1.ServiceSpec{
			ClusterIP: f.ClusterIP,
			Selector:  labels,
			Ports:     []corev1.ServicePort{{Port: f.servicePort(), TargetPort: intstr.FromInt32(f.Port)}},
		},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create Service %s/%s at %s: %w", ns, f.Name, f.ClusterIP, err)
	}
	return nil
}

// WaitServing waits until f's Deployment is ready and its Service answers on its ClusterIP
// from this machine.
func WaitServing(ctx context.Context, cs kubernetes.Interface, ns string, f Fixed, timeout time.Duration) error {
	start := time.Now()
	if err := WaitReady(ctx, cs, ns, f.Name, 1, timeout); err != nil {
		return err
	}
	addr := net.JoinHostPort(f.ClusterIP, strconv.Itoa(int(f.servicePort())))
	if err := WaitConnect(ctx, addr, timeout-time.Since(start)); err != nil {
		return fmt.Errorf("the Service %s/%s: %w", ns, f.Name, err)
	}
	return nil
}

// WaitConnect waits until a TCP connection to addr (a Service's ClusterIP and port) succeeds
// from this machine: a ready pod is not yet a working Service until kube-proxy has programmed
// its rules (a push, and once a GET, right after the pods turned ready were seen refused).
func WaitConnect(ctx context.Context, addr string, timeout time.Duration) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			last = err
			return false, nil
		}
		c.Close()
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("%s does not accept connections (%v): %w", addr, last, err)
	}
	return nil
}

// WaitReady waits until the Deployment ns/name has want ready replicas.
func WaitReady(ctx context.Context, cs kubernetes.Interface, ns, name string, want int32, timeout time.Duration) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		last = fmt.Sprintf("%d of %d replicas ready", d.Status.ReadyReplicas, want)
		return d.Status.ReadyReplicas == want, nil
	})
	if err != nil {
		return fmt.Errorf("the Deployment %s/%s was not ready within %s (%s): %w", ns, name, timeout, last, err)
	}
	return nil
}
