package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// startControllerManager runs kube-controller-manager with the controllers that turn a
// Deployment into pods (deployment, replicaset, garbage collector), so `kubectl apply` of a
// Deployment on the local control plane yields pods the webhook mutates. Pods still never run:
// there is no kubelet. Without the binary (make run provides it) Deployments stay pod-less.
func startControllerManager(ctx context.Context, assets, kubeconfig string) (func(), error) {
	bin := filepath.Join(assets, "kube-controller-manager")
	if _, err := os.Stat(bin); err != nil {
		fmt.Printf("note: %s is missing, so Deployments create no pods here (make run builds it)\n", bin)
		return func() {}, nil
	}
	logPath := filepath.Join(filepath.Dir(kubeconfig), "kube-controller-manager.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, "--kubeconfig="+kubeconfig, "--authentication-kubeconfig="+kubeconfig,
		"--authorization-kubeconfig="+kubeconfig, "--controllers=deployment-controller,replicaset-controller,garbage-collector-controller,serviceaccount-controller",
		"--leader-elect=false", "--use-service-account-credentials=false", "--secure-port=0")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start kube-controller-manager: %w", err)
	}
	return func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		logFile.Close()
	}, nil
}
