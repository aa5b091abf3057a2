package sidecar

import (
	"strings"
	"testing"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

func TestAPIRefusal(t *testing.T) {
	tests := []struct {
		name   string
		c      apiCheck
		reason string // "" : allowed
		says   []string
	}{
		{"same", apiCheck{hostAPI: "1.0.0", serving: "1.0.0", plugin: "1.0.0"}, "", nil},
		{"patch needs no consent", apiCheck{hostAPI: "1.0.0", serving: "1.0.0", plugin: "1.0.7"}, "", nil},
		{"pre-release is a patch", apiCheck{hostAPI: "1.0.0", serving: "1.0.0", plugin: "v1.0.0-rc.1"}, "", nil},
		{"minor with consent", apiCheck{hostAPI: "1.0.0", serving: "1.0.0", plugin: "1.1.0", consent: true}, "", nil},
		{"minor without consent", apiCheck{hostAPI: "1.0.0", serving: "1.0.0", plugin: "1.1.0", compilerVersion: "greeter"}, splicev1.ReasonMinorAPIChangeNotAllowed,
			[]string{"1.1.0", "1.0.0", "set spec.plugin.allowMinorAPIChange: true on CompilerVersion greeter to consent"}},
		{"minor down without consent", apiCheck{hostAPI: "1.0.0", serving: "1.2.0", plugin: "1.1.0"}, splicev1.ReasonMinorAPIChangeNotAllowed,
			[]string{"on the CompilerVersion that manages this pod"}},
		{"minor from the host's own contract when nothing serves", apiCheck{hostAPI: "1.0.0", plugin: "1.1.0"}, splicev1.ReasonMinorAPIChangeNotAllowed, nil},
		{"major from what serves", apiCheck{serving: "1.4.0", plugin: "2.0.0", consent: true}, splicev1.ReasonMajorAPIChange,
			[]string{"a major plugin API change cannot be swapped in place: the pod must be recreated from an image whose host is built against API 2.x"}},
		{"major from the host's contract", apiCheck{hostAPI: "1.0.0", plugin: "2.0.0", consent: true}, splicev1.ReasonMajorAPIChange, []string{"built against API 2.x"}},
		{"major down", apiCheck{hostAPI: "2.0.0", serving: "2.0.0", plugin: "1.9.0", consent: true}, splicev1.ReasonMajorAPIChange, []string{"built against API 1.x"}},
		// The host's contract and what serves disagree on the major version (a host built
		// without one serving an earlier plugin): any major step is refused.
		{"major from the host's contract while what serves agrees", apiCheck{hostAPI: "2.0.0", serving: "1.0.0", plugin: "1.0.1"}, splicev1.ReasonMajorAPIChange, nil},
		// Nothing to compare: the host's own check decides.
		{"plugin declares nothing", apiCheck{hostAPI: "1.0.0", serving: "1.0.0"}, "", nil},
		{"host declares nothing and serves nothing", apiCheck{plugin: "7.0.0"}, "", nil},
		{"unparsable plugin version", apiCheck{hostAPI: "1.0.0", plugin: "one"}, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.c.ref = "registry.example.com/greeter@" + dA
			f, err := apiRefusal(tt.c)
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("refused: %+v %v", f, err)
				}
				return
			}
			if err == nil || f.reason != tt.reason || f.state != splicev1.SwapIncompatible || f.retry {
				t.Fatalf("got %+v %v; want Incompatible %s, final", f, err, tt.reason)
			}
			for _, s := range append(tt.says, tt.c.ref) {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
		})
	}
}
