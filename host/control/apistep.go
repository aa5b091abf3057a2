package control

import (
	"strconv"
	"strings"
)

// APIStep is how far a plugin's API version steps from the one a host serves, by the rule
// the agent and `splice swap` both check before anything is loaded: a patch step needs
// nothing, a minor step needs consent, and a major step is never swapped in place (the host
// must be rebuilt against the new major version). The host library applies the same rule when
// it loads and swaps, as the backstop for a caller that did not check.
type APIStep int

const (
	// APIStepPatch: the same major and minor version, or a version that is missing or not a
	// semantic version (the host library's own check then decides).
	APIStepPatch APIStep = iota
	// APIStepMinor: the same major version, another minor one: needs consent.
	APIStepMinor
	// APIStepMajor: another major version than the host's or the serving version's.
	APIStepMajor
)

// StepAPI classifies the API version plugin declares against a host built against hostAPI
// that serves a version declaring serving (either may be empty). For a minor step, base is the
// version the step is measured from: the serving version's, else the host's.
func StepAPI(hostAPI, serving, plugin string) (step APIStep, base string) {
	p, ok := parseMajorMinor(plugin)
	if !ok {
		return APIStepPatch, ""
	}
	h, hostOK := parseMajorMinor(hostAPI)
	s, servingOK := parseMajorMinor(serving)
	if (hostOK && h[0] != p[0]) || (servingOK && s[0] != p[0]) {
		return APIStepMajor, ""
	}
	b, baseOK, base := s, servingOK, serving
	if !baseOK {
		b, baseOK, base = h, hostOK, hostAPI
	}
	if !baseOK || b[1] == p[1] {
		return APIStepPatch, ""
	}
	return APIStepMinor, base
}

// MajorOf is the major version of v, a version StepAPI found to step a major version.
func MajorOf(v string) uint64 {
	n, _ := parseMajorMinor(v)
	return n[0]
}

// parseMajorMinor reads MAJOR and MINOR from a version of APIVersionPattern (a pre-release,
// or a build suffix as the host library also accepts, counts as a patch-level difference).
func parseMajorMinor(v string) ([2]uint64, bool) {
	if v == "" || len(v) > MaxAPIVersionBytes {
		return [2]uint64{}, false
	}
	rest := strings.TrimPrefix(v, "v")
	if i := strings.IndexAny(rest, "-+"); i >= 0 {
		rest = rest[:i]
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 3 {
		return [2]uint64{}, false
	}
	var n [3]uint64
	for i, part := range parts {
		x, err := strconv.ParseUint(part, 10, 32)
		if err != nil || (len(part) > 1 && part[0] == '0') {
			return [2]uint64{}, false
		}
		n[i] = x
	}
	return [2]uint64{n[0], n[1]}, true
}
