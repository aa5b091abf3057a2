package host

import (
	"fmt"
	"strconv"
	"strings"
)

// apiVersion is a plugin API version: MAJOR.MINOR.PATCH with an optional leading "v",
// pre-release ("-rc.1") and build ("+abc") suffixes. The suffixes are kept for display and
// count as a patch-level difference: they never change what the interface means.
type apiVersion struct {
	major, minor, patch uint64
	suffix              string
}

func parseAPIVersion(s string) (apiVersion, error) {
	rest := strings.TrimPrefix(s, "v")
	var v apiVersion
	if i := strings.IndexAny(rest, "-+"); i >= 0 {
		v.suffix, rest = rest[i:], rest[:i]
		if len(v.suffix) == 1 {
			return v, fmt.Errorf("API version %q: empty pre-release or build suffix", s)
		}
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 3 {
		return v, fmt.Errorf("API version %q is not MAJOR.MINOR.PATCH (for example \"1.4.0\")", s)
	}
	nums := []*uint64{&v.major, &v.minor, &v.patch}
	for i, p := range parts {
		// Leading zeros are refused as semver does: "01" and "1" must not be two spellings.
		if p == "" || (len(p) > 1 && p[0] == '0') {
			return v, fmt.Errorf("API version %q: %q is not a number without leading zeros", s, p)
		}
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return v, fmt.Errorf("API version %q: %q is not a number: %w", s, p, err)
		}
		*nums[i] = n
	}
	return v, nil
}

// apiChange classifies the step from one API version to another.
type apiChange int

const (
	apiSame apiChange = iota
	apiPatch
	apiMinor
	apiMajor
)

func (c apiChange) String() string {
	return [...]string{"same", "patch", "minor", "major"}[c]
}

func classifyAPIChange(from, to apiVersion) apiChange {
	switch {
	case from.major != to.major:
		return apiMajor
	case from.minor != to.minor:
		return apiMinor
	case from.patch != to.patch || from.suffix != to.suffix:
		return apiPatch
	}
	return apiSame
}

// checkAPIChange applies the semver rule for making `to` serve where `from` did: a major
// change is refused, a minor one (either direction) needs consent, a patch one is accepted.
// An empty `from` (nothing to compare with) accepts anything.
func checkAPIChange(from, to string, allowMinor bool) error {
	if from == "" {
		return nil
	}
	f, err := parseAPIVersion(from)
	if err != nil {
		return fmt.Errorf("serving API version: %w", err)
	}
	t, err := parseAPIVersion(to)
	if err != nil {
		return fmt.Errorf("plugin API version: %w", err)
	}
	switch classifyAPIChange(f, t) {
	case apiMajor:
		return fmt.Errorf("%w: %s -> %s; a major change needs a host built for it (Strict policy: recreate the pod)", ErrAPIMajor, from, to)
	case apiMinor:
		if !allowMinor {
			return fmt.Errorf("%w: %s -> %s; resend with allowMinor to consent", ErrAPIMinor, from, to)
		}
	}
	return nil
}
