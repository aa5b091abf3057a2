package sidecar

import (
	"flag"
	"io"
	"path/filepath"
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
				if c.Socket != filepath.Join(dir, control.SocketName) || c.HTTPAddress != DefaultHTTPAddress || c.RegistryInsecure {
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
				"--" + FlagPodName + "=p", "--" + FlagPodNamespace + "=n", "--" + FlagRegistryInsecure, "--" + FlagMaxPluginBytes + "=1024",
				"--" + FlagPollInterval + "=1s", "--" + FlagHostTimeout + "=2s", "--" + FlagLoadTimeout + "=3s",
				"--" + FlagPullTimeout + "=4s", "--" + FlagProbeTimeout + "=5s", "--" + FlagWedgeAfter + "=6s", "--" + FlagCountersInterval + "=-1s"},
			check: func(t *testing.T, c *Config) {
				want := Config{SharedDir: dir, Socket: "/run/x.sock", HTTPAddress: ":8081", PodName: "p", PodNamespace: "n", RegistryInsecure: true,
					MaxPluginBytes: 1024, PollInterval: time.Second, HostTimeout: 2 * time.Second, LoadTimeout: 3 * time.Second, PullTimeout: 4 * time.Second,
					ProbeTimeout: 5 * time.Second, WedgeAfter: 6 * time.Second, CountersInterval: -time.Second}
				if *c != want {
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
