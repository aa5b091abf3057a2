package controllers

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/artifact"
	"github.com/splice-dev/splice/builder"
)

// Labels and annotations on build Jobs and their pods.
const (
	// LabelBuildKey carries the first 20 hex digits of the build key (label values are
	// limited to 63 characters); AnnotationBuildKey carries all of it.
	LabelBuildKey      = "splice.dev/build-key"
	AnnotationBuildKey = "splice.dev/build-key"
	// LabelCompilerVersionUID ties a Job to its CompilerVersion, whose name may be longer than
	// a label value may be.
	LabelCompilerVersionUID = "splice.dev/compilerversion-uid"
	// AnnotationBuildInputs shows, for people, the inputs the key was computed from.
	AnnotationBuildInputs = "splice.dev/build-inputs"
	// AnnotationBuildRecord is the validated outcome of the build, written once by the build
	// controller when it first sees the Job finished. It makes the Job the durable record of
	// the build: the pods (and their termination messages) may be gone later.
	AnnotationBuildRecord = "splice.dev/build-record"
)

// Container and volume names and paths inside the build pod.
const (
	buildContainer        = "build"
	installContainer      = "install-builder"
	builderBinDir         = "/splice/bin"
	builderInPod          = builderBinDir + "/splice-builder"
	workspaceDir          = "/workspace"
	cacheDir              = "/cache"
	gitCredentialsDir     = "/splice/git-credentials"
	dockerConfigDir       = "/splice/docker"
	terminationLogPath    = "/dev/termination-log"
	goVersionPlaceholder  = "{goVersion}"
	maxJobNameLength      = 63
	buildKeyNameHexDigits = 10
	buildKeyLabelDigits   = 20
)

// BuildJobOptions shape the build Jobs. The zero value is not usable; start from
// DefaultBuildJobOptions.
type BuildJobOptions struct {
	// BuilderImage is an image holding the builder binary at BuilderPath — the manager's own
	// image — run by the init container to copy the builder into the build container.
	BuilderImage string
	// BuilderPath is the builder binary inside BuilderImage. It must be statically linked
	// (CGO_ENABLED=0) so that it runs in any golang image.
	BuilderPath string
	// GoImage is the build container's image; "{goVersion}" is replaced by spec.goVersion.
	// It must provide that exact go command, git and a C compiler (the official golang
	// images do).
	GoImage string
	// ImagePullPolicy applies to both containers.
	ImagePullPolicy corev1.PullPolicy
	// ImagePullSecrets are added to the build pods.
	ImagePullSecrets []corev1.LocalObjectReference
	// ServiceAccountName runs the build pods; its token is never mounted (the builder does
	// not talk to the API server).
	ServiceAccountName string
	// Resources of the build container.
	Resources corev1.ResourceRequirements
	// ActiveDeadlineSeconds bounds a whole build, retries included.
	ActiveDeadlineSeconds int64
	// BackoffLimit is how many times a failed build pod is retried.
	BackoffLimit int32
	// CacheVolume, when set, holds GOCACHE and GOMODCACHE across builds (a PersistentVolumeClaim
	// in the CompilerVersion's namespace, typically); otherwise each build starts cold.
	CacheVolume *corev1.VolumeSource
	// WorkspaceSizeLimit bounds the clone and the build output.
	WorkspaceSizeLimit *resource.Quantity
	// Env is added to the build container (GOPROXY, GOPRIVATE, GOFLAGS, ...).
	Env []corev1.EnvVar
	// InsecureRegistries are the registries a build may push to over plain HTTP (the
	// manager's --insecure-registries): the builder gets --insecure only when the
	// CompilerVersion's repository is on one of them.
	InsecureRegistries []string
	// VulnDB is the vulnerability database builds scan their plugin against (the builder's
	// --vuln-db: an https:// mirror of vuln.go.dev or a file:// directory in the build
	// image); empty scans nothing.
	VulnDB string
	// RunAsUser and RunAsGroup run the build pod; the default 65534 is "nobody", which the
	// golang images (Debian) know by name, as ssh insists on.
	RunAsUser, RunAsGroup int64
	// HistoryLimit is how many finished build Jobs of other inputs are kept per
	// CompilerVersion (the current one is always kept: it records the current artifact).
	HistoryLimit int
}

// DefaultBuilderImage is used when SPLICE_BUILDER_IMAGE is unset. Deployments should set the
// variable to the manager's own image, pinned by digest, so that the builder always matches
// the controller that reads its results.
const DefaultBuilderImage = "ghcr.io/splice-dev/splice:latest"

// DefaultBuildJobOptions are the defaults.
func DefaultBuildJobOptions() BuildJobOptions {
	return BuildJobOptions{
		BuilderImage:    DefaultBuilderImage,
		BuilderPath:     "/builder",
		GoImage:         "golang:" + goVersionPlaceholder,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("1Gi")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("4Gi")},
		},
		ActiveDeadlineSeconds: 1800,
		BackoffLimit:          1,
		WorkspaceSizeLimit:    ptr.To(resource.MustParse("10Gi")),
		RunAsUser:             65534,
		RunAsGroup:            65534,
		HistoryLimit:          3,
	}
}

// BuildEnvPrefix marks the manager's environment variables handed to every build container
// with the prefix removed: SPLICE_BUILD_ENV_GOPROXY=https://proxy.corp becomes GOPROXY in the
// build (GOPROXY, GOPRIVATE, GONOSUMDB, GOFLAGS, GOINSECURE, ...). The chart's build.env sets
// them.
const BuildEnvPrefix = "SPLICE_BUILD_ENV_"

// buildOwnedEnv are the variables the Job sets itself; a build.env entry may not replace them,
// or the read-only root file system, the cache layout or the pinned toolchain would break.
var buildOwnedEnv = map[string]bool{"HOME": true, "GOPATH": true, "GOCACHE": true, "GOMODCACHE": true, "GOTOOLCHAIN": true, "DOCKER_CONFIG": true}

// BuildJobOptionsFromEnv starts from the defaults and applies the manager's environment:
// SPLICE_BUILDER_IMAGE, SPLICE_BUILD_GO_IMAGE (with {goVersion}), SPLICE_BUILD_CACHE_PVC (a
// claim name in each CompilerVersion's namespace), SPLICE_BUILD_SERVICE_ACCOUNT, SPLICE_BUILD_VULN_DB, and every SPLICE_BUILD_ENV_<NAME> (BuildEnvPrefix).
func BuildJobOptionsFromEnv() (BuildJobOptions, error) {
	o := DefaultBuildJobOptions()
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		if name, ok := strings.CutPrefix(k, BuildEnvPrefix); ok {
			o.Env = append(o.Env, corev1.EnvVar{Name: name, Value: v})
		}
	}
	sort.Slice(o.Env, func(i, j int) bool { return o.Env[i].Name < o.Env[j].Name })
	if v := os.Getenv("SPLICE_BUILDER_IMAGE"); v != "" {
		o.BuilderImage = v
	}
	if v := os.Getenv("SPLICE_BUILD_GO_IMAGE"); v != "" {
		o.GoImage = v
	}
	if v := os.Getenv("SPLICE_BUILD_CACHE_PVC"); v != "" {
		o.CacheVolume = &corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: v}}
	}
	if v := os.Getenv("SPLICE_BUILD_SERVICE_ACCOUNT"); v != "" {
		o.ServiceAccountName = v
	}
	if v := os.Getenv("SPLICE_BUILD_VULN_DB"); v != "" {
		if err := builder.ValidVulnDB(v); err != nil {
			return o, fmt.Errorf("SPLICE_BUILD_VULN_DB (the chart's build.vulnDB): %w", err)
		}
		o.VulnDB = v
	}
	return o, o.Validate()
}

// Validate rejects options that cannot make a working Job.
func (o *BuildJobOptions) Validate() error {
	switch {
	case o.BuilderImage == "":
		return fmt.Errorf("the builder image is empty: set SPLICE_BUILDER_IMAGE to the manager's image")
	case !strings.HasPrefix(o.BuilderPath, "/"):
		return fmt.Errorf("the builder path %q must be absolute", o.BuilderPath)
	case !strings.Contains(o.GoImage, goVersionPlaceholder):
		return fmt.Errorf("the Go image %q must contain %s, replaced by spec.goVersion: each CompilerVersion builds with its own toolchain", o.GoImage, goVersionPlaceholder)
	case o.ActiveDeadlineSeconds <= 0:
		return fmt.Errorf("the build deadline must be positive")
	case o.BackoffLimit < 0 || o.HistoryLimit < 0:
		return fmt.Errorf("the backoff and history limits must not be negative")
	}
	for _, e := range o.Env {
		switch {
		case !envNameRE.MatchString(e.Name):
			return fmt.Errorf("build environment variable %q (%s%s): the name must match %s", e.Name, BuildEnvPrefix, e.Name, envNameRE)
		case buildOwnedEnv[e.Name]:
			return fmt.Errorf("build environment variable %s (%s%s) is set by the build Job itself and cannot be replaced; remove it", e.Name, BuildEnvPrefix, e.Name)
		}
	}
	return nil
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// buildInputs are what decides a build: the Job name and the build key are a hash of them,
// so an unchanged spec finds its Job again and any change gets a new one. Fields outside this
// struct (the selector, the strategy, the controller's options) never cause a rebuild.
type buildInputs struct {
	// Format changes when the builder starts producing different artifacts from the same
	// inputs, so that old builds are not reused.
	Format     int      `json:"format"`
	GoVersion  string   `json:"goVersion"`
	URL        string   `json:"url"`
	Revision   string   `json:"revision"`
	Package    string   `json:"package"`
	Tags       []string `json:"tags,omitempty"`
	Repository string   `json:"repository"`
	Symbol     string   `json:"symbol"`
	APIVersion string   `json:"apiVersion,omitempty"`
	// VulnBlock: spec.plugin.vulnerabilityPolicy is Block (a Warn build of the same inputs is
	// not reused for it).
	VulnBlock bool `json:"vulnBlock,omitempty"`
}

const buildFormat = 1

func inputsOf(cv *splicev1.CompilerVersion) buildInputs {
	p := cv.Spec.Plugin
	tags := slices.Clone(p.Tags)
	sort.Strings(tags)
	symbol := p.SymbolOrDefault()
	in := buildInputs{Format: buildFormat, GoVersion: cv.Spec.GoVersion, Package: p.Package, Tags: slices.Compact(tags),
		Repository: p.Repository, Symbol: symbol, APIVersion: p.APIVersion,
		VulnBlock: p.VulnerabilityPolicy == splicev1.VulnerabilityPolicyBlock}
	if g := p.Source.Git; g != nil {
		in.URL, in.Revision = g.URL, g.Revision
	}
	return in
}

// key is the hex sha256 of the inputs' JSON (struct fields encode in a fixed order).
func (in buildInputs) key() string {
	b, _ := json.Marshal(in)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// buildJobName is "<compilerversion>-build-<10 hex of the key>", the CompilerVersion's name
// shortened so the whole stays a valid label value (the Job controller labels pods with it).
func buildJobName(cvName, key string) string {
	suffix := "-build-" + key[:buildKeyNameHexDigits]
	prefix := cvName
	if max := maxJobNameLength - len(suffix); len(prefix) > max {
		prefix = strings.TrimRight(prefix[:max], "-.")
	}
	return prefix + suffix
}

// goImage is the build container's image for a Go release.
func (o *BuildJobOptions) goImage(goVersion string) string {
	return strings.ReplaceAll(o.GoImage, goVersionPlaceholder, goVersion)
}

// newBuildJob returns the Job that builds cv's plugin for key. It is a pure function of its
// arguments; the caller sets the owner reference.
func newBuildJob(cv *splicev1.CompilerVersion, key string, o BuildJobOptions) *batchv1.Job {
	in := inputsOf(cv)
	inputsJSON, _ := json.Marshal(in)
	labels := buildJobLabels(cv, key)
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Name:      buildJobName(cv.Name, key),
			Namespace: cv.Namespace,
			Labels:    labels,
			Annotations: map[string]string{
				AnnotationBuildKey:    key,
				AnnotationBuildInputs: string(inputsJSON),
			},
		},
		Spec: batchv1.JobSpec{
			BackoffLimit:          ptr.To(o.BackoffLimit),
			ActiveDeadlineSeconds: ptr.To(o.ActiveDeadlineSeconds),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       buildPodSpec(newBuildPod(cv, in, key, o), in, o),
			},
		},
	}
}

func buildJobLabels(cv *splicev1.CompilerVersion, key string) map[string]string {
	return map[string]string{
		"app.kubernetes.io/name":       "splice-builder",
		"app.kubernetes.io/managed-by": "splice",
		LabelCompilerVersionUID:        string(cv.UID),
		LabelBuildKey:                  key[:buildKeyLabelDigits],
	}
}

// buildPod is what varies with the CompilerVersion and the options in a build pod: the builder's
// arguments, the build container's environment and mounts, and the pod's volumes.
type buildPod struct {
	args    []string
	env     []corev1.EnvVar
	mounts  []corev1.VolumeMount
	volumes []corev1.Volume
}

func newBuildPod(cv *splicev1.CompilerVersion, in buildInputs, key string, o BuildJobOptions) buildPod {
	p := buildPod{args: builderArgs(in, key, o)}
	p.addWorkspace(o)
	p.addCredentials(cv)
	p.env = append(p.env, o.Env...)
	return p
}

// builderArgs are the flags of `splice-builder build` for the inputs.
func builderArgs(in buildInputs, key string, o BuildJobOptions) []string {
	args := []string{
		longFlag(builder.FlagGitURL, in.URL),
		longFlag(builder.FlagRevision, in.Revision),
		longFlag(builder.FlagPackage, in.Package),
		longFlag(builder.FlagGoVersion, in.GoVersion),
		longFlag(builder.FlagSymbol, in.Symbol),
		longFlag(builder.FlagRepository, in.Repository),
		longFlag(builder.FlagWorkDir, workspaceDir+"/build"),
		longFlag(builder.FlagBuildKey, key),
		longFlag(builder.FlagTerminationMessagePath, terminationLogPath),
	}
	if in.APIVersion != "" {
		args = append(args, longFlag(builder.FlagAPIVersion, in.APIVersion))
	}
	if len(in.Tags) > 0 {
		args = append(args, longFlag(builder.FlagTags, strings.Join(in.Tags, ",")))
	}
	if artifact.RegistryIn(in.Repository, o.InsecureRegistries) {
		args = append(args, "--"+builder.FlagInsecure)
	}
	if o.VulnDB != "" {
		args = append(args, longFlag(builder.FlagVulnDB, o.VulnDB))
	}
	if in.VulnBlock {
		// Without a database the builder refuses Block, rather than build unscanned.
		args = append(args, longFlag(builder.FlagVulnPolicy, builder.VulnPolicyBlock))
	}
	return args
}

// addWorkspace gives the build the writable directories it needs and the builder's binary.
func (p *buildPod) addWorkspace(o BuildJobOptions) {
	p.env = []corev1.EnvVar{
		// The root file system is read-only: everything the go command and git write goes
		// to the workspace, /tmp and the cache.
		{Name: "HOME", Value: workspaceDir},
		{Name: "GOPATH", Value: workspaceDir + "/go"},
		{Name: "GOCACHE", Value: cacheDir + "/go-build"},
		{Name: "GOMODCACHE", Value: cacheDir + "/mod"},
		// The image's toolchain and nothing else; the builder checks its version.
		{Name: "GOTOOLCHAIN", Value: "local"},
	}
	p.mounts = []corev1.VolumeMount{
		{Name: "builder", MountPath: builderBinDir, ReadOnly: true},
		{Name: "workspace", MountPath: workspaceDir},
		{Name: "tmp", MountPath: "/tmp"},
		{Name: "cache", MountPath: cacheDir},
	}
	cache := corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}
	if o.CacheVolume != nil {
		cache = *o.CacheVolume.DeepCopy()
		// A shared cache must stay deletable by whoever runs the next build.
		p.env = append(p.env, corev1.EnvVar{Name: "GOFLAGS", Value: "-modcacherw"})
	}
	p.volumes = []corev1.Volume{
		{Name: "builder", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: ptr.To(resource.MustParse("256Mi"))}}},
		{Name: "workspace", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: o.WorkspaceSizeLimit}}},
		{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "cache", VolumeSource: cache},
	}
}

// addCredentials mounts the Secrets cv names: the git credentials the clone uses and the
// registry credentials the push uses.
func (p *buildPod) addCredentials(cv *splicev1.CompilerVersion) {
	// Secret files are group-readable (0440) with the pod's fsGroup, so the non-root builder
	// can read them and nobody else.
	secretMode := ptr.To[int32](0o440)
	if g := cv.Spec.Plugin.Source.Git; g != nil && g.SecretRef != nil {
		p.args = append(p.args, longFlag(builder.FlagGitCredentials, gitCredentialsDir))
		p.mounts = append(p.mounts, corev1.VolumeMount{Name: "git-credentials", MountPath: gitCredentialsDir, ReadOnly: true})
		p.volumes = append(p.volumes, corev1.Volume{Name: "git-credentials", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: g.SecretRef.Name, DefaultMode: secretMode}}})
	}
	if ps := cv.Spec.Plugin.PushSecretRef; ps != nil {
		// A kubernetes.io/dockerconfigjson Secret becomes $DOCKER_CONFIG/config.json, where
		// the builder's registry client (the default keychain) looks.
		p.env = append(p.env, corev1.EnvVar{Name: "DOCKER_CONFIG", Value: dockerConfigDir})
		p.mounts = append(p.mounts, corev1.VolumeMount{Name: "push-credentials", MountPath: dockerConfigDir, ReadOnly: true})
		p.volumes = append(p.volumes, corev1.Volume{Name: "push-credentials", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: ps.Name, DefaultMode: secretMode,
			Items: []corev1.KeyToPath{{Key: corev1.DockerConfigJsonKey, Path: "config.json"}}}}})
	}
}

// buildPodSpec runs the builder in the Go image of the release the inputs name, after an init
// container has copied the builder's binary out of the builder image.
func buildPodSpec(p buildPod, in buildInputs, o BuildJobOptions) corev1.PodSpec {
	return corev1.PodSpec{
		RestartPolicy:                corev1.RestartPolicyNever,
		ServiceAccountName:           o.ServiceAccountName,
		AutomountServiceAccountToken: ptr.To(false),
		EnableServiceLinks:           ptr.To(false),
		ImagePullSecrets:             slices.Clone(o.ImagePullSecrets),
		SecurityContext: &corev1.PodSecurityContext{
			RunAsNonRoot:   ptr.To(true),
			RunAsUser:      ptr.To(o.RunAsUser),
			RunAsGroup:     ptr.To(o.RunAsGroup),
			FSGroup:        ptr.To(o.RunAsGroup),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		InitContainers: []corev1.Container{{
			Name:            installContainer,
			Image:           o.BuilderImage,
			ImagePullPolicy: o.ImagePullPolicy,
			Command:         []string{o.BuilderPath, "install", builderInPod},
			VolumeMounts:    []corev1.VolumeMount{{Name: "builder", MountPath: builderBinDir}},
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
				Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
			},
			TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
			SecurityContext:          restrictedContainer(),
		}},
		Containers: []corev1.Container{{
			Name:            buildContainer,
			Image:           o.goImage(in.GoVersion),
			ImagePullPolicy: o.ImagePullPolicy,
			Command:         []string{builderInPod, "build"},
			Args:            p.args,
			WorkingDir:      workspaceDir,
			Env:             p.env,
			VolumeMounts:    p.mounts,
			Resources:       *o.Resources.DeepCopy(),
			// The builder writes its result or failure there; if it dies before
			// writing, the kubelet keeps the log's tail instead.
			TerminationMessagePath:   terminationLogPath,
			TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
			SecurityContext:          restrictedContainer(),
		}},
		Volumes: p.volumes,
	}
}

// restrictedContainer is the "restricted" Pod Security Standard plus a read-only root file
// system: a build compiles code fetched from the CompilerVersion's repository, so its containers
// get no privilege they do not need.
func restrictedContainer() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		ReadOnlyRootFilesystem:   ptr.To(true),
		RunAsNonRoot:             ptr.To(true),
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// longFlag is "--name=value": the = form keeps a value that starts with '-' from being read as
// a flag.
func longFlag(name, value string) string { return "--" + name + "=" + value }
