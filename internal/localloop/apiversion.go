package localloop

import (
	"fmt"

	"github.com/splice-dev/splice/host/control"
)

// The plugin API step, as the agent checks it (control.StepAPI, the rule both share): a patch step needs nothing, a minor step needs consent
// (--allow-minor-api-change), a major step is never swapped in place. A version that is missing
// or not a semantic version passes: the host library's own check then decides.

// Reasons a Refusal gives for a plugin API step, the agent's names for them.
const (
	ReasonMajorAPIChange           = "MajorAPIChange"
	ReasonMinorAPIChangeNotAllowed = "MinorAPIChangeNotAllowed"
)

// FlagAllowMinor names the consent in errors: the command line's flag.
const FlagAllowMinor = "--allow-minor-api-change"

// apiStep refuses a plugin declaring API plugin where the host, built against hostAPI, serves
// a version declaring serving; swap says whether the version is to serve (a minor step needs
// consent only then).
func apiStep(ref, hostAPI, serving, plugin string, swap, consent bool) *Refusal {
	step, base := control.StepAPI(hostAPI, serving, plugin)
	switch {
	case step == control.APIStepMajor:
		return &Refusal{Ref: ref, Reason: ReasonMajorAPIChange, Err: fmt.Errorf(
			"%s declares plugin API %s; the host is built against API %s and serves %s: a major plugin API change cannot be swapped in place: restart the app with a host built against API %d.x",
			ref, plugin, orNone(hostAPI), orNone(serving), control.MajorOf(plugin))}
	case step == control.APIStepPatch || !swap || consent:
		return nil
	}
	return &Refusal{Ref: ref, Reason: ReasonMinorAPIChangeNotAllowed, Err: fmt.Errorf(
		"%s declares plugin API %s; the host serves API %s: a minor plugin API change needs consent: pass %s", ref, plugin, base, FlagAllowMinor)}
}
