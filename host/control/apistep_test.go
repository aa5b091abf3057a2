package control_test

import (
	"testing"

	"github.com/splice-dev/splice/host/control"
)

func TestStepAPI(t *testing.T) {
	for _, c := range []struct {
		host, serving, plugin string
		step                  control.APIStep
		base                  string
	}{
		{"1.2.0", "1.2.0", "1.2.7", control.APIStepPatch, ""},
		{"1.2.0", "1.2.0", "1.3.0", control.APIStepMinor, "1.2.0"},
		{"1.2.0", "1.3.0", "1.3.1", control.APIStepPatch, ""},      // measured from the serving version
		{"1.2.0", "", "1.4.0", control.APIStepMinor, "1.2.0"},      // nothing serves: from the host's
		{"1.2.0", "1.2.0", "1.1.0", control.APIStepMinor, "1.2.0"}, // a minor step back needs consent too
		{"1.2.0", "1.2.0", "2.0.0", control.APIStepMajor, ""},
		{"2.0.0", "1.2.0", "2.0.0", control.APIStepMajor, ""}, // the serving version is another major
		{"v1.2.0", "1.2.0-rc.1", "1.2.0+build", control.APIStepPatch, ""},
		{"1.2.0", "1.2.0", "", control.APIStepPatch, ""},       // undeclared: the host decides
		{"1.2.0", "1.2.0", "banana", control.APIStepPatch, ""}, // not semver: the host decides
		{"1.2.0", "1.2.0", "01.2.0", control.APIStepPatch, ""}, // leading zero is not semver
		{"", "", "3.0.0", control.APIStepPatch, ""},
	} {
		step, base := control.StepAPI(c.host, c.serving, c.plugin)
		if step != c.step || base != c.base {
			t.Errorf("StepAPI(%q, %q, %q) = %v, %q; want %v, %q", c.host, c.serving, c.plugin, step, base, c.step, c.base)
		}
	}
	if got := control.MajorOf("v3.1.4"); got != 3 {
		t.Errorf("MajorOf(v3.1.4) = %d, want 3", got)
	}
}
