package controllers

import (
	"context"
	"fmt"
	"io"

	corev1 "k8s.io/api/core/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/utils/ptr"
)

// podLogs reads the tail of a container's log through the API server (pods/log), which
// proxies to the kubelet. A cluster without one (envtest, a node that is gone) answers with
// an error, which callers report rather than fail on.
type podLogs struct {
	pods corev1client.PodsGetter
}

// maxLogBytes bounds what is read of a log, whatever its lines' length.
const maxLogBytes = 4 << 10

func (l *podLogs) tail(ctx context.Context, pod *corev1.Pod, container string, lines int64) (string, error) {
	if l == nil || l.pods == nil {
		return "", fmt.Errorf("no client for pod logs")
	}
	req := l.pods.Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{
		Container: container, TailLines: ptr.To(lines), LimitBytes: ptr.To[int64](maxLogBytes),
	})
	rc, err := req.Stream(ctx)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxLogBytes))
	if err != nil {
		return "", fmt.Errorf("read the log of %s/%s: %w", pod.Name, container, err)
	}
	return string(b), nil
}
