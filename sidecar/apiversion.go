package sidecar

import (
	"fmt"
	"strconv"
	"strings"

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
	plugin, ok := parseAPI(c.plugin)
	if !ok {
		return failure{}, nil
	}
	host, hostOK := parseAPI(c.hostAPI)
	serving, servingOK := parseAPI(c.serving)
	if (hostOK && host.major != plugin.major) || (servingOK && serving.major != plugin.major) {
		return failure{splicev1.SwapIncompatible, splicev1.ReasonMajorAPIChange, false},
			fmt.Errorf("%s declares plugin API %s; the host is built against API %s and serves %s: a major plugin API change cannot be swapped in place: the pod must be recreated from an image whose host is built against API %d.x",
				c.ref, c.plugin, orNone(c.hostAPI), orNone(c.serving), plugin.major)
	}
	base, baseOK, baseVersion := serving, servingOK, c.serving
	if !baseOK {
		base, baseOK, baseVersion = host, hostOK, c.hostAPI
	}
	if !baseOK || base.minor == plugin.minor || c.consent {
		return failure{}, nil
	}
	who := "on the CompilerVersion that manages this pod (annotation " + splicev1.AnnotationCompilerVersion + " names none)"
	if c.compilerVersion != "" {
		who = "on CompilerVersion " + c.compilerVersion
	}
	return failure{splicev1.SwapIncompatible, splicev1.ReasonMinorAPIChangeNotAllowed, false},
		fmt.Errorf("%s declares plugin API %s; the host serves API %s: a minor plugin API change needs consent: set spec.plugin.allowMinorAPIChange: true %s to consent",
			c.ref, c.plugin, baseVersion, who)
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

// semver is the part of a plugin API version the rule reads.
type semver struct{ major, minor uint64 }

// parseAPI reads MAJOR.MINOR from a version of control.APIVersionPattern (a pre-release, or a
// build suffix as the host library also accepts, counts as a patch-level difference).
func parseAPI(v string) (semver, bool) {
	if v == "" || len(v) > control.MaxAPIVersionBytes {
		return semver{}, false
	}
	rest := strings.TrimPrefix(v, "v")
	if i := strings.IndexAny(rest, "-+"); i >= 0 {
		rest = rest[:i]
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 3 {
		return semver{}, false
	}
	var n [3]uint64
	for i, p := range parts {
		x, err := strconv.ParseUint(p, 10, 32)
		if err != nil || (len(p) > 1 && p[0] == '0') {
			return semver{}, false
		}
		n[i] = x
	}
	return semver{n[0], n[1]}, true
}
