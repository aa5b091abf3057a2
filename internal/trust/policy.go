package trust

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"go.yaml.in/yaml/v3"
)

// AllNamespaces in Policy.Namespaces covers every namespace.
const AllNamespaces = "*"

// Bounds on what LoadConfig and DecodePolicy read.
const (
	// MaxConfigBytes bounds the trust policy file.
	MaxConfigBytes = 1 << 20
	// MaxEncodedPolicyBytes bounds an encoded policy (an environment variable).
	MaxEncodedPolicyBytes = 64 << 10
)

// Config is the trust policy file the manager reads (YAML or JSON).
type Config struct {
	// Policies are tried in order: the first that covers a namespace decides for it.
	Policies []Policy `json:"policies"`
}

// Policy says which artifacts the namespaces it covers may run: those in allowed repositories
// signed by one of its keys.
type Policy struct {
	// Name names the policy in messages; unique within a Config.
	Name string `json:"name"`
	// Namespaces are the namespaces it covers; "*" covers every namespace.
	Namespaces []string `json:"namespaces"`
	// Registries are the allowed artifact repositories as prefixes: "registry.example.com/team-a/"
	// (every repository under team-a), "registry.example.com/team-a/plugins" (that repository
	// and those under it), "registry.example.com/" (the whole registry). A prefix matches only
	// at a path boundary: team-a never allows team-ab. Empty allows any repository.
	Registries []string `json:"registries,omitempty"`
	// Keys are PEM public keys (cosign.pub), ECDSA P-256; at least one.
	Keys []string `json:"keys"`
}

// compiled is a validated policy, ready to verify with.
type compiled struct {
	keys     []*trustedKey
	prefixes []string // normalized; a trailing "/" means "under"
}

var policyNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// LoadConfig reads and validates the trust policy file at path (ParseConfig).
func LoadConfig(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("trust policy file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxConfigBytes+1))
	if err != nil {
		return nil, fmt.Errorf("trust policy file %s: %w", path, err)
	}
	if len(data) > MaxConfigBytes {
		return nil, fmt.Errorf("trust policy file %s is over %d bytes: is it the right file?", path, MaxConfigBytes)
	}
	c, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("trust policy file %s: %w", path, err)
	}
	return c, nil
}

// ParseConfig decodes a trust policy (YAML or JSON; unknown fields are errors) and validates
// every policy: a name of letters, digits, '.', '_' and '-' used once; namespaces that are
// namespace names or "*", none already covered by an earlier policy (which would decide for
// it); registry prefixes that start with a registry host; at least one key, each an ECDSA
// P-256 PEM public key. The error names the policy and what to fix.
func ParseConfig(data []byte) (*Config, error) {
	var c Config
	if err := decodeStrict(data, &c); err != nil {
		return nil, fmt.Errorf("decode trust policy: %w (want `policies:`, a list of {name, namespaces, registries, keys})", err)
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// decodeStrict decodes YAML (JSON is YAML) into v by its JSON field names: duplicate keys and
// fields v does not have are errors. The YAML library is not Kubernetes' (sigs.k8s.io/yaml),
// so that the splice command, which verifies signatures, links no Kubernetes package.
func decodeStrict(data []byte, v any) error {
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return err
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return fmt.Errorf("not a JSON-shaped document: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// namespaceRE is a DNS-1123 label, what a namespace name must be (at most 63 bytes).
var namespaceRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

func (c *Config) validate() error {
	if len(c.Policies) == 0 {
		return errors.New("trust policy has no policies: add one under `policies:` (name, namespaces, keys)")
	}
	names := map[string]bool{}
	coveredBy := map[string]string{} // namespace (or "*") -> the policy that decides for it
	for i := range c.Policies {
		p := &c.Policies[i]
		if _, err := p.compile(); err != nil {
			return fmt.Errorf("trust policy %s: %w", p.label(i), err)
		}
		if names[p.Name] {
			return fmt.Errorf("trust policy %s: the name is used by an earlier policy: give each policy its own name", p.label(i))
		}
		names[p.Name] = true
		for _, ns := range p.Namespaces {
			by, ok := coveredBy[AllNamespaces]
			if !ok {
				by, ok = coveredBy[ns]
			}
			if ok {
				return fmt.Errorf("trust policy %s: namespace %q is already covered by policy %q, which comes first and decides for it: remove it from one of the two", p.label(i), ns, by)
			}
		}
		for _, ns := range p.Namespaces {
			coveredBy[ns] = p.Name
		}
	}
	return nil
}

// label names a policy in messages; i is its index in a Config, or -1.
func (p *Policy) label(i int) string {
	switch {
	case p.Name == "" && i < 0:
		return "(no name)"
	case p.Name == "":
		return fmt.Sprintf("policies[%d]", i)
	}
	return fmt.Sprintf("%q", p.Name)
}

// For returns the first policy covering namespace, nil if none does.
func (c *Config) For(namespace string) *Policy {
	if c == nil {
		return nil
	}
	for i := range c.Policies {
		for _, ns := range c.Policies[i].Namespaces {
			if ns == AllNamespaces || ns == namespace {
				return &c.Policies[i]
			}
		}
	}
	return nil
}

// Validate checks p as ParseConfig checks each policy of a Config (all but the checks across
// policies: unique names, namespaces covered once).
func (p *Policy) Validate() error {
	if _, err := p.compile(); err != nil {
		return fmt.Errorf("trust policy %s: %w", p.label(-1), err)
	}
	return nil
}

// compile validates p and returns its parsed keys and normalized prefixes.
func (p *Policy) compile() (*compiled, error) {
	if !policyNameRE.MatchString(p.Name) {
		return nil, fmt.Errorf("name %q: give a name of 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit", p.Name)
	}
	if err := checkNamespaces(p.Namespaces); err != nil {
		return nil, err
	}
	c := &compiled{}
	for i, r := range p.Registries {
		n, err := normalizePrefix(r)
		if err != nil {
			return nil, fmt.Errorf("registries[%d] %q: %w", i, r, err)
		}
		c.prefixes = append(c.prefixes, n)
	}
	if len(p.Keys) == 0 {
		return nil, errors.New("no keys: add the public key (cosign.pub) of every signer this policy trusts under keys")
	}
	seen := map[string]int{}
	for i, k := range p.Keys {
		tk, err := parsePublicKey(k)
		if err != nil {
			return nil, fmt.Errorf("keys[%d]: %w", i, err)
		}
		if j, dup := seen[tk.fingerprint]; dup {
			return nil, fmt.Errorf("keys[%d] is the same key as keys[%d] (%s): list each key once", i, j, tk.fingerprint)
		}
		seen[tk.fingerprint] = i
		c.keys = append(c.keys, tk)
	}
	return c, nil
}

func checkNamespaces(namespaces []string) error {
	if len(namespaces) == 0 {
		return errors.New(`no namespaces: list the namespaces it covers, or "*" for every namespace`)
	}
	seen := map[string]bool{}
	for i, ns := range namespaces {
		if ns != AllNamespaces {
			if len(ns) > 63 || !namespaceRE.MatchString(ns) {
				return fmt.Errorf("namespaces[%d] %q is not a namespace name (lower-case letters, digits and '-', at most 63): give a namespace, or \"*\" for every namespace", i, ns)
			}
		}
		if seen[ns] {
			return fmt.Errorf("namespaces[%d] %q is listed twice: list it once", i, ns)
		}
		seen[ns] = true
	}
	return nil
}

// normalizePrefix checks a registry prefix and returns it as go-containerregistry names the
// repositories it covers (docker.io becomes index.docker.io), keeping a trailing "/".
func normalizePrefix(s string) (string, error) {
	const example = "e.g. registry.example.com/team-a/"
	switch {
	case s == "":
		return "", fmt.Errorf("empty: give registry/path, %s", example)
	case strings.TrimSpace(s) != s || strings.ContainsAny(s, " \t\r\n"):
		return "", errors.New("has white space: give registry/path alone")
	case strings.Contains(s, "://"):
		return "", fmt.Errorf("has a scheme: give the registry host without it, %s", example)
	case strings.ContainsAny(s, "@*?"):
		return "", errors.New("has a digest or a wildcard: a prefix already matches every repository under it")
	}
	host, path, ok := strings.Cut(s, "/")
	if !ok {
		return "", fmt.Errorf("no path: give %s/ for every repository of that registry, or %s/PATH for those under PATH", s, s)
	}
	if !strings.ContainsAny(host, ".:") && host != "localhost" {
		return "", fmt.Errorf("%q is not a registry host (no '.' or ':', not localhost): start with the registry, e.g. registry.example.com/%s", host, s)
	}
	if path == "" {
		reg, err := name.NewRegistry(host, name.StrictValidation)
		if err != nil {
			return "", fmt.Errorf("bad registry host: %w", err)
		}
		return reg.Name() + "/", nil
	}
	trimmed, under := strings.CutSuffix(s, "/")
	repo, err := name.NewRepository(trimmed, name.StrictValidation)
	if err != nil || strings.HasSuffix(trimmed, "/") || strings.Contains(trimmed, "//") {
		return "", fmt.Errorf("not a repository path (lower-case letters, digits, '.', '_', '-' between single '/'; no tag): %v", err)
	}
	if under {
		return repo.Name() + "/", nil
	}
	return repo.Name(), nil
}

// allows reports whether the policy's prefixes allow the repository repo (as
// name.Repository.Name spells it).
func (c *compiled) allows(repo string) bool {
	if len(c.prefixes) == 0 {
		return true
	}
	for _, p := range c.prefixes {
		if strings.HasSuffix(p, "/") {
			if strings.HasPrefix(repo, p) {
				return true
			}
		} else if repo == p || strings.HasPrefix(repo, p+"/") {
			return true
		}
	}
	return false
}

// encodedPolicy is the wire form of Encode: short field names, keys as base64 DER.
type encodedPolicy struct {
	V          int      `json:"v"`
	Name       string   `json:"n"`
	Namespaces []string `json:"ns"`
	Registries []string `json:"r,omitempty"`
	Keys       []string `json:"k"`
}

// encodedVersion is the version of the wire form.
const encodedVersion = 1

// Encode returns p in a compact single-line form (JSON, keys as base64 DER) for an environment
// variable; DecodePolicy reads it back. p must be valid.
func (p *Policy) Encode() (string, error) {
	if _, err := p.compile(); err != nil {
		return "", fmt.Errorf("encode trust policy %s: %w", p.label(-1), err)
	}
	e := encodedPolicy{V: encodedVersion, Name: p.Name, Namespaces: p.Namespaces, Registries: p.Registries}
	for _, k := range p.Keys {
		block, _ := pem.Decode([]byte(strings.TrimSpace(k)))
		e.Keys = append(e.Keys, base64.StdEncoding.EncodeToString(block.Bytes))
	}
	b, err := json.Marshal(&e)
	if err != nil {
		return "", fmt.Errorf("encode trust policy %q: %w", p.Name, err)
	}
	return string(b), nil
}

// DecodePolicy reads a policy that Encode wrote, and validates it as ParseConfig does.
func DecodePolicy(s string) (*Policy, error) {
	if len(s) > MaxEncodedPolicyBytes {
		return nil, fmt.Errorf("decode trust policy: %d bytes, over the bound of %d", len(s), MaxEncodedPolicyBytes)
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	var e encodedPolicy
	if err := dec.Decode(&e); err != nil {
		return nil, fmt.Errorf("decode trust policy: %w (want what trust.Policy.Encode writes)", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("decode trust policy: data after the policy (want what trust.Policy.Encode writes)")
	}
	if e.V != encodedVersion {
		return nil, fmt.Errorf("decode trust policy: version %d, this build reads version %d: run the same Splice version in the manager and the agent", e.V, encodedVersion)
	}
	p := &Policy{Name: e.Name, Namespaces: e.Namespaces, Registries: e.Registries}
	for i, k := range e.Keys {
		der, err := base64.StdEncoding.DecodeString(k)
		if err != nil {
			return nil, fmt.Errorf("decode trust policy %q: keys[%d] is not base64: %w", e.Name, i, err)
		}
		p.Keys = append(p.Keys, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))
	}
	if _, err := p.compile(); err != nil {
		return nil, fmt.Errorf("decode trust policy %s: %w", p.label(-1), err)
	}
	return p, nil
}
