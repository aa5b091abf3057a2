package sidecar

import (
	"fmt"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/host/control"
)

// The plugin API step, checked by the agent before anything is loaded: a patch change needs
// nothing, a minor change needs the pod's consent (Target.AllowMinor, from its CompilerVersion's
// spec.plugin.allowMinorAPIChange), and a major change is never swapped in place. The host
// library applies the same rule (semver of the plugin's APIVersion symbol) when it loads and
// swaps; its refusals map to the same states and reasons (classifyHost), as the backstop for
// what the agent cannot see (an artifact whose config declares no API version).

// apiCheck is what the check compares: the plugin API version the host was built against
// (control.Status.APIVersion), the one of the version serving calls now, and the one the
// artifact declares (its config blob, or the host's record of a version it holds).
type apiCheck struct {
	hostAPI, serving, plugin string
	// consent to a minor change; compilerVersion names who gives it; ref the artifact.
	consent              bool
	compilerVersion, ref string
}

// apiRefusal says why the artifact must not serve where the host serves what it does: an
// Incompatible failure with reason MajorAPIChange or MinorAPIChangeNotAllowed and an error that
// says what to do. A nil error lets it through, also when a version is missing or not a
// semantic version (the host's own check then decides).
func apiRefusal(c apiCheck) (failure, error) {
	step, base := control.StepAPI(c.hostAPI, c.serving, c.plugin)
	switch {
	case step == control.APIStepMajor:
		return failure{splicev1.SwapIncompatible, splicev1.ReasonMajorAPIChange, false},
			fmt.Errorf("%s declares plugin API %s; the host is built against API %s and serves %s: a major plugin API change cannot be swapped in place: the pod must be recreated from an image whose host is built against API %d.x",
				c.ref, c.plugin, orNone(c.hostAPI), orNone(c.serving), control.MajorOf(c.plugin))
	case step == control.APIStepPatch || c.consent:
		return failure{}, nil
	}
	who := "on the CompilerVersion that manages this pod (annotation " + splicev1.AnnotationCompilerVersion + " names none)"
	if c.compilerVersion != "" {
		who = "on CompilerVersion " + c.compilerVersion
	}
	return failure{splicev1.SwapIncompatible, splicev1.ReasonMinorAPIChangeNotAllowed, false},
		fmt.Errorf("%s declares plugin API %s; the host serves API %s: a minor plugin API change needs consent: set spec.plugin.allowMinorAPIChange: true %s to consent",
			c.ref, c.plugin, base, who)
}

// consentHint is what a host's refusal of a minor API change (control.CodeAPIMinor) needs
// added, naming where consent is given.
func consentHint(t Target) string {
	if t.CompilerVersion == "" {
		return "set spec.plugin.allowMinorAPIChange: true on the CompilerVersion that manages this pod to consent"
	}
	return "set spec.plugin.allowMinorAPIChange: true on CompilerVersion " + t.CompilerVersion + " to consent"
}

func orNone(v string) string {
	if v == "" {
		return "none"
	}
	return v
}
