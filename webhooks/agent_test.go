package webhooks

import (
	"flag"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/splice-dev/splice/sidecar"
)

// TestAgentArgsParseWithAgentFlags parses the command line the webhook injects with cmd/agent's
// own flag set (sidecar.Config.BindFlags) and validates it the way cmd/agent does, so a flag
// renamed on either side fails here instead of crash-looping every injected pod.
func TestAgentArgsParseWithAgentFlags(t *testing.T) {
	// The downward-API variables the injected container gets; the agent's pod flags default
	// to them.
	t.Setenv(sidecar.EnvPodName, "web-0")
	t.Setenv(sidecar.EnvPodNamespace, "shop")
	t.Setenv(sidecar.EnvPodIP, "10.1.2.3")
	cfg := AgentConfig{SharedDir: t.TempDir(), HTTPPort: 7001, ProbeTimeout: 3 * time.Second}.WithDefaults()

	pod := basePod()
	if _, err := Inject(pod, cfg); err != nil {
		t.Fatal(err)
	}
	agent := pod.Spec.InitContainers[len(pod.Spec.InitContainers)-1]

	var got sidecar.Config
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	got.BindFlags(fs)
	if err := fs.Parse(agent.Args); err != nil {
		t.Fatalf("cmd/agent refuses the injected args %q: %v", agent.Args, err)
	}
	if fs.NArg() != 0 {
		t.Fatalf("cmd/agent leaves arguments %q unparsed", fs.Args())
	}
	if err := got.Validate(); err != nil {
		t.Fatalf("cmd/agent refuses the injected configuration: %v", err)
	}

	if got.SharedDir != cfg.SharedDir {
		t.Errorf("agent shared dir %q, want the mount path %q", got.SharedDir, cfg.SharedDir)
	}
	if want := filepath.Join(cfg.SharedDir, "splice-host.sock"); got.Socket != want {
		t.Errorf("agent socket %q, want the host library's %q", got.Socket, want)
	}
	if got.PodName != "web-0" || got.PodNamespace != "shop" {
		t.Errorf("agent pod %s/%s, want shop/web-0 from the downward API", got.PodNamespace, got.PodName)
	}
	if got.ProbeTimeout != cfg.ProbeTimeout {
		t.Errorf("agent probe timeout %v, want %v", got.ProbeTimeout, cfg.ProbeTimeout)
	}
	for _, p := range []*corev1.Probe{agent.ReadinessProbe, agent.LivenessProbe} {
		if time.Duration(p.TimeoutSeconds)*time.Second <= got.ProbeTimeout {
			t.Errorf("kubelet probe timeout %ds is not above the agent's own %v: the kubelet would give up first", p.TimeoutSeconds, got.ProbeTimeout)
		}
	}

	// The probes and the declared port must be where the agent listens: the pod IP, where the
	// kubelet's probes arrive, not every interface.
	listen, warning := got.ListenAddress()
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		t.Fatalf("agent http address %q: %v", listen, err)
	}
	if host != "10.1.2.3" || warning != "" {
		t.Errorf("agent listens on %q (%s), want the pod IP 10.1.2.3 from the downward API", listen, warning)
	}
	if env := agentEnv(agent, sidecar.EnvPodIP); env == nil || env.ValueFrom == nil || env.ValueFrom.FieldRef == nil ||
		env.ValueFrom.FieldRef.FieldPath != "status.podIP" {
		t.Errorf("the agent's $%s is %+v, want the downward API's status.podIP", sidecar.EnvPodIP, env)
	}
	if port != strconv.Itoa(int(cfg.HTTPPort)) || agent.Ports[0].ContainerPort != cfg.HTTPPort {
		t.Errorf("agent listens on %q, container port %d, want %d", got.HTTPAddress, agent.Ports[0].ContainerPort, cfg.HTTPPort)
	}
	for path, p := range map[string]*corev1.Probe{sidecar.PathReadyz: agent.ReadinessProbe, sidecar.PathLivez: agent.LivenessProbe} {
		if p.HTTPGet.Path != path || p.HTTPGet.Port.IntValue() != int(cfg.HTTPPort) {
			t.Errorf("probe on %s:%s, want %s:%d", p.HTTPGet.Path, p.HTTPGet.Port.String(), path, cfg.HTTPPort)
		}
	}
}

// TestAgentDefaultPortMatchesAgent keeps the webhook's default port on the one cmd/agent serves
// on without flags, so documentation and scrape configs written for either stay right.
func TestAgentDefaultPortMatchesAgent(t *testing.T) {
	if want := ":" + strconv.Itoa(int(DefaultAgentHTTPPort)); want != sidecar.DefaultHTTPAddress {
		t.Errorf("DefaultAgentHTTPPort gives %q, cmd/agent's default is %q", want, sidecar.DefaultHTTPAddress)
	}
}

func agentEnv(c corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}
