package sidecar

import (
	"flag"
	"io"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/splice-dev/splice/host/control"
)

func TestConfigFlags(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(EnvPodName, "greeter-abc")
	t.Setenv(EnvPodNamespace, "shop")
	tests := []struct {
		name    string
		args    []string
		check   func(*testing.T, *Config)
		wantErr string
	}{
		{
			name: "defaults from the downward API",
			args: []string{"--" + FlagSharedDir + "=" + dir},
			check: func(t *testing.T, c *Config) {
				if c.PodName != "greeter-abc" || c.PodNamespace != "shop" {
					t.Errorf("pod %s/%s, want shop/greeter-abc from the environment", c.PodNamespace, c.PodName)
				}
				if c.Socket != filepath.Join(dir, control.SocketName) || c.HTTPAddress != DefaultHTTPAddress || c.InsecureRegistries != nil {
					t.Errorf("defaults: %+v", c)
				}
				if c.LoadTimeout <= 2*time.Minute {
					t.Errorf("load timeout %v must exceed the host library's 2m plugin.Open bound", c.LoadTimeout)
				}
			},
		},
		{
			name: "everything the webhook may set",
			args: []string{"--" + FlagSharedDir + "=" + dir, "--" + FlagSocket + "=/run/x.sock", "--" + FlagHTTPAddress + "=:8081",
				"--" + FlagPodName + "=p", "--" + FlagPodNamespace + "=n", "--" + FlagInsecureRegistries + "=reg.a:5000, reg.b", "--" + FlagInsecureRegistries + "=reg.c", "--" + FlagMaxPluginBytes + "=1024",
				"--" + FlagPollInterval + "=1s", "--" + FlagHostTimeout + "=2s", "--" + FlagLoadTimeout + "=3s",
				"--" + FlagPullTimeout + "=4s", "--" + FlagProbeTimeout + "=5s", "--" + FlagWedgeAfter + "=6s", "--" + FlagCountersInterval + "=-1s"},
			check: func(t *testing.T, c *Config) {
				want := Config{SharedDir: dir, Socket: "/run/x.sock", HTTPAddress: ":8081", PodName: "p", PodNamespace: "n", InsecureRegistries: []string{"reg.a:5000", "reg.b", "reg.c"},
					MaxPluginBytes: 1024, PollInterval: time.Second, HostTimeout: 2 * time.Second, LoadTimeout: 3 * time.Second, PullTimeout: 4 * time.Second,
					ProbeTimeout: 5 * time.Second, WedgeAfter: 6 * time.Second, CountersInterval: -time.Second}
				if !reflect.DeepEqual(*c, want) {
					t.Errorf("got %+v\nwant %+v", *c, want)
				}
			},
		},
		{name: "shared dir missing", args: []string{"--" + FlagSharedDir + "=" + filepath.Join(dir, "nope")}, wantErr: "is the shared volume mounted"},
		{name: "no pod name", args: []string{"--" + FlagSharedDir + "=" + dir, "--" + FlagPodName + "="}, wantErr: "--pod-name and --pod-namespace are required"},
		{name: "non-positive timeout", args: []string{"--" + FlagSharedDir + "=" + dir, "--" + FlagLoadTimeout + "=0s"}, wantErr: "--load-timeout must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Config
			fs := flag.NewFlagSet("agent", flag.ContinueOnError)
			c.BindFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			err := c.Validate()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Validate: %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			tt.check(t, &c)
		})
	}
}

// TestNoBlanketConsent: consent to a minor plugin API change comes from each pod's
// CompilerVersion (splicev1.AnnotationAllowMinorAPIChange), never from the agent's command line.
func TestNoBlanketConsent(t *testing.T) {
	var c Config
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.BindFlags(fs)
	if err := fs.Parse([]string{"--allow-minor-api-change=true"}); err == nil {
		t.Fatal("the agent accepts --allow-minor-api-change: consent would be blanket again")
	}
}

// The agent binds its probes' and metrics' port to the pod IP when --http-address names no
// host: the kubelet's probes arrive there, and nothing else in the pod's network needs it on
// other interfaces. Without a usable pod IP it keeps every interface, and says so.
func TestListenAddress(t *testing.T) {
	for _, tt := range []struct {
		addr, podIP, want string
		warns             bool
	}{
		{addr: ":9440", podIP: "10.1.2.3", want: "10.1.2.3:9440"},
		{addr: ":9440", podIP: " 10.1.2.3 ", want: "10.1.2.3:9440"},
		{addr: ":7001", podIP: "fd00::17", want: "[fd00::17]:7001"},
		{addr: ":9440", podIP: "", want: ":9440", warns: true},
		{addr: ":9440", podIP: "not-an-ip", want: ":9440", warns: true},
		// An address with a host is the operator's choice.
		{addr: "127.0.0.1:9440", podIP: "10.1.2.3", want: "127.0.0.1:9440"},
		{addr: "0.0.0.0:9440", podIP: "10.1.2.3", want: "0.0.0.0:9440"},
	} {
		c := Config{HTTPAddress: tt.addr, PodIP: tt.podIP}
		got, warning := c.ListenAddress()
		if got != tt.want || (warning != "") != tt.warns {
			t.Errorf("--%s=%q, pod IP %q: listen on %q (warning %q); want %q, warning %v", FlagHTTPAddress, tt.addr, tt.podIP, got, warning, tt.want, tt.warns)
		}
		if tt.warns && !strings.Contains(warning, EnvPodIP) {
			t.Errorf("warning %q does not name $%s", warning, EnvPodIP)
		}
	}
	t.Setenv(EnvPodIP, "10.9.8.7")
	var c Config
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	c.BindFlags(fs)
	if err := fs.Parse(nil); err != nil || c.PodIP != "10.9.8.7" {
		t.Errorf("--%s defaults to %q (%v), want $%s", FlagPodIP, c.PodIP, err, EnvPodIP)
	}
}
