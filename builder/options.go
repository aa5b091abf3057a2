package builder

import (
	"errors"
	"fmt"
	"os"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/splice-dev/splice/host/control"
)

// Options are the inputs of one build. Their flag names (AddFlags) are the command line the
// build controller writes into the Job, so renaming one breaks running controllers.
type Options struct {
	// Source is a local checkout: the repository root Package is relative to. Exclusive
	// with GitURL.
	Source string
	// GitURL and Revision name a repository and the commit, tag or branch to clone.
	GitURL   string
	Revision string
	// GitCredentials is a directory holding a Secret's keys: username and password (HTTPS),
	// or ssh-privatekey and optionally known_hosts (SSH).
	GitCredentials string
	// Package is the plugin's main package directory, relative to the repository root.
	Package string
	// GoVersion is the exact Go release the plugin must be built with, e.g. "1.26.8". Empty
	// (allowed only outside the build controller, see FieldNames) takes the release of the go
	// command on PATH, `go env GOVERSION`: the toolchain that will compile the plugin, not the
	// one that built the builder.
	GoVersion string
	// Tags are the build tags.
	Tags []string
	// Symbol is the exported name hosts look up; the build fails when the plugin lacks it,
	// or when it is not a function without parameters returning one interface value.
	Symbol string
	// Contract is the interface the hosts' Slot[T] is instantiated with, as
	// "import/path.Name" (e.g. "github.com/acme/svc/api.Greeter"). When set, the build fails
	// unless Symbol is exactly `func() Contract`, the type the host asserts at load.
	Contract string
	// FieldNames says how errors name these inputs: FieldNamesFlags (the builder's flags) or
	// FieldNamesCRD (the Build resource's fields, for the build controller). Empty: CRD fields
	// when BuildKey is set (the controller always sets it), flags otherwise.
	FieldNames FieldNames
	// APIVersion is the plugin API version expected; empty takes the one the plugin declares.
	APIVersion string
	// Repository is where the artifact is pushed (registry/path/name); empty builds only.
	Repository string
	// Insecure allows plain HTTP to the registry; without it every request goes over TLS,
	// loopback and private addresses included.
	Insecure bool
	// VulnDB is the vulnerability database the built plugin is scanned against (govulncheck
	// in binary mode): an https:// mirror of vuln.go.dev or a file:// directory. Empty scans
	// nothing.
	VulnDB string
	// VulnPolicy decides what a scan that finds a called vulnerability does: VulnPolicyWarn
	// (the default) records it and pushes, VulnPolicyBlock fails the build (ReasonVulnerable).
	VulnPolicy string
	// WorkDir holds the clone and the build output; empty uses a temporary directory that
	// is removed afterwards.
	WorkDir string
	// Output, when set, keeps the plugin and its facts: <Output>/<name>.so and .facts.json.
	Output string
	// BuildKey is echoed in the result (the controller's hash of the spec).
	BuildKey string
	// SourceDateEpoch, when non-zero, is the builtAt recorded in the artifact (seconds since
	// the epoch, as SOURCE_DATE_EPOCH); git builds default to the commit time.
	SourceDateEpoch int64
	// TerminationMessagePath receives the result or failure as JSON. The default is written
	// only when it exists (the kubelet creates it), so running by hand writes nothing there.
	TerminationMessagePath string
}

// DefaultTerminationMessagePath is where the kubelet reads a container's termination message.
const DefaultTerminationMessagePath = "/dev/termination-log"

// Flag names shared with the build controller's Job.
const (
	FlagSource                 = "source"
	FlagGitURL                 = "git-url"
	FlagRevision               = "revision"
	FlagGitCredentials         = "git-credentials"
	FlagPackage                = "package"
	FlagGoVersion              = "go-version"
	FlagTags                   = "tags"
	FlagSymbol                 = "symbol"
	FlagContract               = "contract"
	FlagFieldNames             = "field-names"
	FlagAPIVersion             = "api-version"
	FlagRepository             = "repository"
	FlagInsecure               = "insecure"
	FlagWorkDir                = "workdir"
	FlagOutput                 = "output"
	FlagVulnDB                 = "vuln-db"
	FlagVulnPolicy             = "vuln-policy"
	FlagBuildKey               = "build-key"
	FlagSourceDateEpoch        = "source-date-epoch"
	FlagTerminationMessagePath = "termination-message-path"
)

// AddFlags registers the options as flags on fs, with their defaults.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Source, FlagSource, o.Source, "local checkout to build from: the repository root --package is relative to (exclusive with --git-url)")
	fs.StringVar(&o.GitURL, FlagGitURL, o.GitURL, "git repository to clone (https://, ssh://, git://, file:// or user@host:path)")
	fs.StringVar(&o.Revision, FlagRevision, o.Revision, "commit, tag or branch to build (with --git-url)")
	fs.StringVar(&o.GitCredentials, FlagGitCredentials, o.GitCredentials, "directory with git credentials: username+password, or ssh-privatekey [+known_hosts]")
	fs.StringVar(&o.Package, FlagPackage, o.Package, "the plugin's main package directory, relative to the repository root (e.g. ./plugins/greeter)")
	fs.StringVar(&o.GoVersion, FlagGoVersion, o.GoVersion, "exact Go release to build with, e.g. 1.26.8; the build is refused when `go` is any other (default: the release of the go on PATH)")
	fs.StringSliceVar(&o.Tags, FlagTags, o.Tags, "build tags, comma-separated")
	fs.StringVar(&o.Symbol, FlagSymbol, o.Symbol, "exported constructor hosts look up; the build fails unless the plugin exports it as a func() returning an interface")
	fs.StringVar(&o.Contract, FlagContract, o.Contract, "interface the hosts load the plugin as, import/path.Name (e.g. github.com/acme/svc/api.Greeter); the build fails unless --symbol is exactly func() of it")
	fs.StringVar((*string)(&o.FieldNames), FlagFieldNames, string(o.FieldNames), "how errors name the inputs: flags, or crd (the Build resource's fields; the default with --build-key)")
	fs.StringVar(&o.APIVersion, FlagAPIVersion, o.APIVersion, "plugin API version expected (default: the plugin's own `var APIVersion = \"x.y.z\"`)")
	fs.StringVar(&o.Repository, FlagRepository, o.Repository, "OCI repository to push the artifact to (registry/path/name); without it the plugin is only built")
	fs.BoolVar(&o.Insecure, FlagInsecure, o.Insecure, "use plain HTTP for the registry")
	fs.StringVar(&o.VulnDB, FlagVulnDB, o.VulnDB, "vulnerability database to scan the built plugin against (govulncheck -mode=binary): an https:// mirror of vuln.go.dev or a file:// directory (default: no scan)")
	fs.StringVar(&o.VulnPolicy, FlagVulnPolicy, o.VulnPolicy, "what a scan that finds a called vulnerability does: Warn (record it and push) or Block (fail the build)")
	fs.StringVar(&o.WorkDir, FlagWorkDir, o.WorkDir, "working directory for the clone and the build (default: a temporary directory, removed afterwards)")
	fs.StringVar(&o.Output, FlagOutput, o.Output, "keep the plugin and its build facts in this directory")
	fs.StringVar(&o.BuildKey, FlagBuildKey, o.BuildKey, "opaque key echoed in the result (set by the build controller)")
	fs.Int64Var(&o.SourceDateEpoch, FlagSourceDateEpoch, o.SourceDateEpoch, "builtAt to record, in seconds since the epoch (default: $SOURCE_DATE_EPOCH, else the commit time for git builds, else now)")
	fs.StringVar(&o.TerminationMessagePath, FlagTerminationMessagePath, o.TerminationMessagePath, "file that receives the result or failure as JSON")
}

// DefaultOptions are the flags' defaults.
func DefaultOptions() Options {
	o := Options{Symbol: control.DefaultSymbol, TerminationMessagePath: DefaultTerminationMessagePath}
	if v, err := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64); err == nil && v > 0 {
		o.SourceDateEpoch = v
	}
	return o
}

var (
	symbolRE   = regexp.MustCompile(`^[A-Z][A-Za-z0-9_]*$`)
	contractRE = regexp.MustCompile(`^[A-Za-z0-9_.~+-]+(/[A-Za-z0-9_.~+-]+)*\.[A-Z][A-Za-z0-9_]*$`)
	tagRE      = regexp.MustCompile(`^[A-Za-z0-9_.]+$`)
)

// Validate checks the options before anything runs, and normalizes GoVersion ("go1.26.8" is
// accepted for "1.26.8").
func (o *Options) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if err := o.sourceError(); err != nil {
		errs = append(errs, err)
	}
	o.GoVersion = strings.TrimPrefix(o.GoVersion, "go")
	o.toolchainErrors(bad)
	n := o.names()
	if o.Package == "" {
		bad("%s is required: the plugin's main package directory, relative to the repository root", n.name(fieldPackage))
	} else if p := path.Clean(strings.ReplaceAll(o.Package, `\`, "/")); path.IsAbs(p) || p == ".." || strings.HasPrefix(p, "../") {
		bad("%s %q must be a directory inside the repository, relative to its root", n.name(fieldPackage), o.Package)
	}
	if !symbolRE.MatchString(o.Symbol) {
		bad("%s %q must be an exported Go identifier such as Plugin", n.name(fieldSymbol), o.Symbol)
	}
	if o.APIVersion != "" && !ValidAPIVersion(o.APIVersion) {
		bad("%s %q must be a semantic version such as 1.4.0, of at most %d bytes", n.name(fieldAPIVersion), o.APIVersion, control.MaxAPIVersionBytes)
	}
	for _, t := range o.Tags {
		if !tagRE.MatchString(t) {
			bad("--%s: tag %q may contain only letters, digits, '_' and '.'", FlagTags, t)
		}
	}
	if o.VulnDB != "" {
		if err := ValidVulnDB(o.VulnDB); err != nil {
			errs = append(errs, err)
		}
	}
	switch o.VulnPolicy {
	case "":
		o.VulnPolicy = VulnPolicyWarn
	case VulnPolicyWarn:
	case VulnPolicyBlock:
		if o.VulnDB == "" {
			bad("%s %s needs a vulnerability database to scan against: %s; or set %s to %s", n.name(fieldVulnPolicy), VulnPolicyBlock, n.name(fieldVulnDB), n.name(fieldVulnPolicy), VulnPolicyWarn)
		}
	default:
		bad("%s %q must be %s or %s", n.name(fieldVulnPolicy), o.VulnPolicy, VulnPolicyWarn, VulnPolicyBlock)
	}
	if o.SourceDateEpoch < 0 {
		bad("--%s must not be negative", FlagSourceDateEpoch)
	}
	if len(errs) > 0 {
		return &Error{Reason: ReasonInvalidInput, Err: errors.Join(errs...)}
	}
	return nil
}

// toolchainErrors reports what is wrong with the Go release, the contract and the naming.
func (o *Options) toolchainErrors(bad func(format string, args ...any)) {
	n := o.names()
	switch {
	case o.GoVersion == "" && n == FieldNamesCRD:
		bad("%s is required: the exact Go release the hosts were built with, such as 1.26.8", n.name(fieldGoVersion))
	case o.GoVersion != "" && !releaseRE.MatchString(o.GoVersion):
		bad("%s %q must be an exact Go release such as 1.26.8", n.name(fieldGoVersion), o.GoVersion)
	}
	if o.FieldNames != "" && o.FieldNames != FieldNamesFlags && o.FieldNames != FieldNamesCRD {
		bad("--%s %q must be %s or %s", FlagFieldNames, o.FieldNames, FieldNamesFlags, FieldNamesCRD)
	}
	if o.Contract != "" && !contractRE.MatchString(o.Contract) {
		bad("%s %q must be an interface named by its package's import path and its name, such as github.com/acme/svc/api.Greeter", n.name(fieldContract), o.Contract)
	}
}

// sourceError is what is wrong with the source flags: exactly one of a checkout and a clone,
// and a clone's URL and revision, neither of which git may read as an option.
func (o *Options) sourceError() error {
	switch {
	case o.Source == "" && o.GitURL == "":
		return fmt.Errorf("give the source: --%s DIR (a checkout) or --%s URL --%s REV", FlagSource, FlagGitURL, FlagRevision)
	case o.Source != "" && o.GitURL != "":
		return fmt.Errorf("--%s and --%s are exclusive: build either a checkout or a clone", FlagSource, FlagGitURL)
	case o.GitURL != "" && o.Revision == "":
		return fmt.Errorf("--%s needs --%s: the commit, tag or branch to build", FlagGitURL, FlagRevision)
	case o.GitURL != "" && strings.HasPrefix(o.Revision, "-"):
		return fmt.Errorf("--%s %q must not start with '-'", FlagRevision, o.Revision)
	case o.GitURL != "" && strings.HasPrefix(o.GitURL, "-"):
		return fmt.Errorf("--%s %q must not start with '-'", FlagGitURL, o.GitURL)
	}
	return nil
}

// sourceDate is the builtAt to record for a build whose commit time is commitTime (zero when
// not built from git).
func (o *Options) sourceDate(commitTime time.Time, now time.Time) time.Time {
	switch {
	case o.SourceDateEpoch > 0:
		return time.Unix(o.SourceDateEpoch, 0).UTC()
	case !commitTime.IsZero():
		return commitTime.UTC()
	default:
		return now.UTC()
	}
}

// FieldNames says how errors name a build's inputs.
type FieldNames string

const (
	// FieldNamesFlags names the builder's flags (--api-version): a person at a shell.
	FieldNamesFlags FieldNames = "flags"
	// FieldNamesCRD names the Build resource's fields (spec.plugin.apiVersion): what a user of
	// the build controller edits.
	FieldNamesCRD FieldNames = "crd"
)

// Inputs errors name, by their CRD field.
const (
	fieldPackage    = "package"
	fieldSymbol     = "symbol"
	fieldAPIVersion = "apiVersion"
	fieldGoVersion  = "goVersion"
	fieldContract   = "contract"
	fieldGitSecret  = "gitSecret"
	fieldPushSecret = "pushSecret"
	fieldVulnDB     = "vulnDB"
	fieldVulnPolicy = "vulnerabilityPolicy"
)

var fieldFlags = map[string]string{
	fieldPackage: "--" + FlagPackage, fieldSymbol: "--" + FlagSymbol, fieldAPIVersion: "--" + FlagAPIVersion,
	fieldGoVersion: "--" + FlagGoVersion, fieldContract: "--" + FlagContract,
	fieldGitSecret:  "--" + FlagGitCredentials,
	fieldPushSecret: "the registry login (docker login, or DOCKER_CONFIG)",
	fieldVulnDB:     "--" + FlagVulnDB, fieldVulnPolicy: "--" + FlagVulnPolicy,
}

var fieldCRD = map[string]string{
	fieldPackage: "spec.plugin.package", fieldSymbol: "spec.plugin.symbol", fieldAPIVersion: "spec.plugin.apiVersion",
	fieldGoVersion: "spec.goVersion", fieldContract: "--" + FlagContract, // no Build field sets it
	fieldGitSecret:  "spec.plugin.source.git.secretRef",
	fieldPushSecret: "spec.plugin.pushSecretRef",
	fieldVulnDB:     "the manager's vulnerability database (--vuln-db, the chart's build.vulnDB)",
	fieldVulnPolicy: "spec.plugin.vulnerabilityPolicy",
}

// name is how n names field.
func (n FieldNames) name(field string) string {
	if n == FieldNamesCRD {
		return fieldCRD[field]
	}
	return fieldFlags[field]
}

// set is how n tells the user to give field: "set spec.plugin.symbol", "pass --symbol".
func (n FieldNames) set(field string) string {
	if n == FieldNamesCRD {
		return "set " + n.name(field)
	}
	return "pass " + n.name(field)
}

// names is the naming o's errors use.
func (o *Options) names() FieldNames {
	switch {
	case o.FieldNames != "":
		return o.FieldNames
	case o.BuildKey != "":
		return FieldNamesCRD
	default:
		return FieldNamesFlags
	}
}
