package main

// The agent's process: flags, clients, the probes' HTTP server, signals. Everything else is in
// package sidecar.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/splice-dev/splice/host/control"
	"github.com/splice-dev/splice/sidecar"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		os.Exit(1)
	}
}

func run() error {
	var cfg sidecar.Config
	cfg.BindFlags(flag.CommandLine)
	zopts := zap.Options{}
	zopts.BindFlags(flag.CommandLine)
	flag.Parse()
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := zap.New(zap.UseFlagOptions(&zopts)).WithName("agent")

	restCfg, err := config.GetConfig()
	if err != nil {
		return fmt.Errorf("kubernetes client configuration (in cluster, or --kubeconfig): %w", err)
	}
	restCfg.UserAgent = "splice-agent"
	kube, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := sidecar.NewMetrics(reg)
	sw, err := sidecar.NewSwapper(sidecar.SwapperOptions{
		// No AllowMinor: consent to a minor plugin API change comes from each pod's target.
		SharedDir: cfg.SharedDir, Host: control.NewClient(cfg.Socket), Pull: cfg.PullOptions(), Trust: cfg.Trust,
		PullTimeout: cfg.PullTimeout, LoadTimeout: cfg.LoadTimeout, HostTimeout: cfg.HostTimeout, Logger: log, Metrics: metrics,
	})
	if err != nil {
		return err
	}
	agent, err := sidecar.NewAgent(sidecar.AgentOptions{
		PodName: cfg.PodName, PodNamespace: cfg.PodNamespace, Kube: kube, Swapper: sw, Logger: log, Metrics: metrics,
		PollInterval: cfg.PollInterval, CountersInterval: cfg.CountersInterval, ProbeTimeout: cfg.ProbeTimeout, WedgeAfter: cfg.WedgeAfter,
	})
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	listen, warning := cfg.ListenAddress()
	if warning != "" {
		log.Info("serving probes and metrics on every interface", "reason", warning, "httpAddress", cfg.HTTPAddress, "podIP", cfg.PodIP)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on --%s %s (%s): %w", sidecar.FlagHTTPAddress, cfg.HTTPAddress, listen, err)
	}
	srv := &http.Server{Handler: agent.Handler(reg), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() {
		err := srv.Serve(ln)
		errc <- err
		if !errors.Is(err, http.ErrServerClosed) {
			stop() // without its probes the agent is useless: exit, and let the kubelet restart it
		}
	}()
	log.Info("agent started", "pod", cfg.PodNamespace+"/"+cfg.PodName, "sharedDir", cfg.SharedDir, "socket", cfg.Socket, "http", ln.Addr().String())

	runErr := agent.Run(ctx)
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(shutdown)
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http server: %w", err)
	}
	return runErr
}
