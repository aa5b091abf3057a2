package controllers

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
	"github.com/splice-dev/splice/builder"
)

func gitCV(name string) *splicev1.CompilerVersion {
	return &splicev1.CompilerVersion{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "team", UID: "0f1e2d3c-0000-4000-8000-000000000001", Generation: 1},
		Spec: splicev1.CompilerVersionSpec{
			GoVersion: "1.26.8",
			Plugin: splicev1.PluginSpec{
				Source:     splicev1.PluginSource{Git: &splicev1.GitSource{URL: "https://git.example.com/team/greeter.git", Revision: "v1.3.0"}},
				Package:    "./plugins/greeter",
				Symbol:     "Plugin",
				Repository: "registry.example.com/team/greeter-plugin",
			},
			Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "greeter"}},
		},
	}
}

func TestBuildKey(t *testing.T) {
	base := inputsOf(gitCV("greeter")).key()
	tests := []struct {
		name   string
		mutate func(*splicev1.CompilerVersion)
		same   bool
	}{
		{"selector, strategy and versions kept are not inputs", func(cv *splicev1.CompilerVersion) {
			cv.Spec.Selector.MatchLabels = map[string]string{"app": "other"}
			cv.Spec.Strategy.Type = splicev1.StrategyCanary
			cv.Spec.MaxLoadedVersions = new(int32)
			cv.Name = "renamed"
		}, true},
		{"the default symbol spelled out", func(cv *splicev1.CompilerVersion) { cv.Spec.Plugin.Symbol = "" }, true},
		{"tags in another order", func(cv *splicev1.CompilerVersion) {}, true},
		{"goVersion", func(cv *splicev1.CompilerVersion) { cv.Spec.GoVersion = "1.26.9" }, false},
		{"url", func(cv *splicev1.CompilerVersion) {
			cv.Spec.Plugin.Source.Git.URL = "https://git.example.com/team/other.git"
		}, false},
		{"revision", func(cv *splicev1.CompilerVersion) { cv.Spec.Plugin.Source.Git.Revision = "v1.3.1" }, false},
		{"package", func(cv *splicev1.CompilerVersion) { cv.Spec.Plugin.Package = "./plugins/other" }, false},
		{"tags", func(cv *splicev1.CompilerVersion) { cv.Spec.Plugin.Tags = []string{"fast"} }, false},
		{"repository", func(cv *splicev1.CompilerVersion) { cv.Spec.Plugin.Repository = "registry.example.com/team/x" }, false},
		{"symbol", func(cv *splicev1.CompilerVersion) { cv.Spec.Plugin.Symbol = "New" }, false},
		{"apiVersion", func(cv *splicev1.CompilerVersion) { cv.Spec.Plugin.APIVersion = "1.0.0" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cv := gitCV("greeter")
			tt.mutate(cv)
			if got := inputsOf(cv).key(); (got == base) != tt.same {
				t.Fatalf("key %s, base %s; want same=%v", got, base, tt.same)
			}
		})
	}
	a, b := gitCV("greeter"), gitCV("greeter")
	a.Spec.Plugin.Tags = []string{"x", "y", "x"}
	b.Spec.Plugin.Tags = []string{"y", "x"}
	if inputsOf(a).key() != inputsOf(b).key() {
		t.Fatal("the order or repetition of tags changed the key")
	}
}

func TestBuildJobName(t *testing.T) {
	key := strings.Repeat("ab", 32)
	tests := []struct{ cv, want string }{
		{"greeter", "greeter-build-ababababab"},
		{strings.Repeat("x", 60), strings.Repeat("x", 46) + "-build-ababababab"},
		{strings.Repeat("x", 45) + "-.yy", strings.Repeat("x", 45) + "-build-ababababab"},
		{"a.b.c", "a.b.c-build-ababababab"},
	}
	for _, tt := range tests {
		got := buildJobName(tt.cv, key)
		if got != tt.want {
			t.Errorf("buildJobName(%q) = %q, want %q", tt.cv, got, tt.want)
		}
		if errs := validation.IsValidLabelValue(got); len(errs) > 0 {
			t.Errorf("%q is not a label value: %v", got, errs)
		}
		if errs := validation.IsDNS1123Subdomain(got); len(errs) > 0 {
			t.Errorf("%q is not a valid name: %v", got, errs)
		}
	}
}

// fatalT is what parseBuilderArgs needs of a *testing.T or GinkgoT().
type fatalT interface {
	Helper()
	Fatalf(format string, args ...any)
}

// parseBuilderArgs parses a build container's arguments with the builder's own flag set: the
// contract between the Job this controller writes and the builder that runs it.
func parseBuilderArgs(t fatalT, c corev1.Container) builder.Options {
	t.Helper()
	if !slices.Equal(c.Command, []string{builderInPod, "build"}) {
		t.Fatalf("command %q, want %s build", c.Command, builderInPod)
	}
	o := builder.DefaultOptions()
	fs := pflag.NewFlagSet("build", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse(c.Args); err != nil {
		t.Fatalf("the builder cannot parse the Job's arguments %q: %v", c.Args, err)
	}
	if fs.NArg() != 0 {
		t.Fatalf("stray arguments %q", fs.Args())
	}
	if err := o.Validate(); err != nil {
		t.Fatalf("the builder refuses the Job's arguments: %v", err)
	}
	return o
}

func TestNewBuildJob(t *testing.T) {
	opts := DefaultBuildJobOptions()
	opts.BuilderImage = "registry.example.com/splice/manager@sha256:" + strings.Repeat("1", 64)
	key := strings.Repeat("cd", 32)

	mount := func(c corev1.Container, name string) *corev1.VolumeMount {
		for i := range c.VolumeMounts {
			if c.VolumeMounts[i].Name == name {
				return &c.VolumeMounts[i]
			}
		}
		return nil
	}
	volume := func(spec corev1.PodSpec, name string) *corev1.Volume {
		for i := range spec.Volumes {
			if spec.Volumes[i].Name == name {
				return &spec.Volumes[i]
			}
		}
		return nil
	}
	env := func(c corev1.Container, name string) string {
		for _, e := range c.Env {
			if e.Name == name {
				return e.Value
			}
		}
		return ""
	}

	tests := []struct {
		name  string
		cv    func() *splicev1.CompilerVersion
		opts  func(BuildJobOptions) BuildJobOptions
		check func(t *testing.T, c corev1.Container, spec corev1.PodSpec, o builder.Options)
	}{
		{
			name: "a public repository, no credentials",
			check: func(t *testing.T, c corev1.Container, spec corev1.PodSpec, o builder.Options) {
				if o.GitURL != "https://git.example.com/team/greeter.git" || o.Revision != "v1.3.0" || o.Package != "./plugins/greeter" ||
					o.GoVersion != "1.26.8" || o.Repository != "registry.example.com/team/greeter-plugin" || o.Symbol != "Plugin" ||
					o.BuildKey != key || o.TerminationMessagePath != "/dev/termination-log" || o.GitCredentials != "" || o.Insecure || len(o.Tags) != 0 {
					t.Errorf("builder options %+v", o)
				}
				if mount(c, "git-credentials") != nil || mount(c, "push-credentials") != nil || env(c, "DOCKER_CONFIG") != "" {
					t.Errorf("credentials mounted without a secretRef")
				}
				if v := volume(spec, "cache"); v == nil || v.EmptyDir == nil {
					t.Errorf("cache volume %+v, want an emptyDir", v)
				}
			},
		},
		{
			name: "plain HTTP only for a registry named insecure",
			opts: func(o BuildJobOptions) BuildJobOptions {
				o.InsecureRegistries = []string{"registry.example.com:5000", "example.com"}
				return o
			},
			check: func(t *testing.T, c corev1.Container, spec corev1.PodSpec, o builder.Options) {
				if o.Insecure {
					t.Errorf("the builder may push over plain HTTP to %s, which is not named insecure", o.Repository)
				}
			},
		},
		{
			name: "git and push credentials, tags, API version, insecure registry, cache claim",
			cv: func() *splicev1.CompilerVersion {
				cv := gitCV("greeter")
				cv.Spec.Plugin.Source.Git.SecretRef = &splicev1.LocalObjectReference{Name: "git-creds"}
				cv.Spec.Plugin.PushSecretRef = &splicev1.LocalObjectReference{Name: "push-creds"}
				cv.Spec.Plugin.Tags = []string{"prod", "fast"}
				cv.Spec.Plugin.APIVersion = "1.4.0"
				return cv
			},
			opts: func(o BuildJobOptions) BuildJobOptions {
				o.InsecureRegistries = []string{"other.example.com", "registry.example.com"}
				o.CacheVolume = &corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "go-cache"}}
				o.Env = []corev1.EnvVar{{Name: "GOPROXY", Value: "https://proxy.example.com"}}
				return o
			},
			check: func(t *testing.T, c corev1.Container, spec corev1.PodSpec, o builder.Options) {
				if o.GitCredentials != gitCredentialsDir || !o.Insecure || o.APIVersion != "1.4.0" || !slices.Equal(o.Tags, []string{"fast", "prod"}) {
					t.Errorf("builder options %+v", o)
				}
				if m := mount(c, "git-credentials"); m == nil || !m.ReadOnly || m.MountPath != gitCredentialsDir {
					t.Errorf("git credentials mount %+v", m)
				}
				if v := volume(spec, "git-credentials"); v == nil || v.Secret == nil || v.Secret.SecretName != "git-creds" || *v.Secret.DefaultMode != 0o440 {
					t.Errorf("git credentials volume %+v", v)
				}
				v := volume(spec, "push-credentials")
				if v == nil || v.Secret == nil || v.Secret.SecretName != "push-creds" || len(v.Secret.Items) != 1 ||
					v.Secret.Items[0].Key != corev1.DockerConfigJsonKey || v.Secret.Items[0].Path != "config.json" {
					t.Errorf("push credentials volume %+v", v)
				}
				if env(c, "DOCKER_CONFIG") != dockerConfigDir || env(c, "GOPROXY") != "https://proxy.example.com" || env(c, "GOFLAGS") != "-modcacherw" {
					t.Errorf("env %+v", c.Env)
				}
				if v := volume(spec, "cache"); v == nil || v.PersistentVolumeClaim == nil || v.PersistentVolumeClaim.ClaimName != "go-cache" {
					t.Errorf("cache volume %+v, want the claim", v)
				}
			},
		},
		{
			name: "image template, deadline, backoff, resources",
			opts: func(o BuildJobOptions) BuildJobOptions {
				o.GoImage = "mirror.example.com/library/golang:{goVersion}-bookworm"
				o.ActiveDeadlineSeconds = 600
				o.BackoffLimit = 3
				o.Resources = corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("8Gi")}}
				return o
			},
			check: func(t *testing.T, c corev1.Container, spec corev1.PodSpec, o builder.Options) {
				if c.Image != "mirror.example.com/library/golang:1.26.8-bookworm" {
					t.Errorf("image %s", c.Image)
				}
				if q := c.Resources.Limits[corev1.ResourceMemory]; q.String() != "8Gi" {
					t.Errorf("memory limit %s", q.String())
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cv := gitCV("greeter")
			if tt.cv != nil {
				cv = tt.cv()
			}
			o := opts
			if tt.opts != nil {
				o = tt.opts(o)
			}
			job := newBuildJob(cv, key, o)

			if job.Name != buildJobName(cv.Name, key) || job.Namespace != cv.Namespace {
				t.Errorf("job %s/%s", job.Namespace, job.Name)
			}
			if job.Annotations[AnnotationBuildKey] != key || job.Labels[LabelBuildKey] != key[:20] || job.Labels[LabelCompilerVersionUID] != string(cv.UID) {
				t.Errorf("labels %v annotations %v", job.Labels, job.Annotations)
			}
			if *job.Spec.BackoffLimit != o.BackoffLimit || *job.Spec.ActiveDeadlineSeconds != o.ActiveDeadlineSeconds || job.Spec.TTLSecondsAfterFinished != nil {
				t.Errorf("backoff %d deadline %d ttl %v; want %d, %d and none (the Job records the build)",
					*job.Spec.BackoffLimit, *job.Spec.ActiveDeadlineSeconds, job.Spec.TTLSecondsAfterFinished, o.BackoffLimit, o.ActiveDeadlineSeconds)
			}
			spec := job.Spec.Template.Spec
			if spec.RestartPolicy != corev1.RestartPolicyNever || *spec.AutomountServiceAccountToken || job.Spec.Template.Labels[LabelBuildKey] != key[:20] {
				t.Errorf("pod template: restart %s, token %v, labels %v", spec.RestartPolicy, *spec.AutomountServiceAccountToken, job.Spec.Template.Labels)
			}
			psc := spec.SecurityContext
			if !*psc.RunAsNonRoot || *psc.RunAsUser != 65534 || *psc.FSGroup != 65534 || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("pod security context %+v", psc)
			}
			if len(spec.InitContainers) != 1 || len(spec.Containers) != 1 {
				t.Fatalf("%d init containers, %d containers", len(spec.InitContainers), len(spec.Containers))
			}
			ic, c := spec.InitContainers[0], spec.Containers[0]
			if ic.Image != o.BuilderImage || !slices.Equal(ic.Command, []string{o.BuilderPath, "install", builderInPod}) {
				t.Errorf("init container %s %q", ic.Image, ic.Command)
			}
			if m := mount(ic, "builder"); m == nil || m.ReadOnly {
				t.Errorf("the init container cannot write the builder: %+v", m)
			}
			if m := mount(c, "builder"); m == nil || !m.ReadOnly {
				t.Errorf("the build container's builder mount %+v, want read-only", m)
			}
			if tt.opts == nil && c.Image != "golang:1.26.8" {
				t.Errorf("image %s, want golang:1.26.8", c.Image)
			}
			for _, ctr := range []corev1.Container{ic, c} {
				sc := ctr.SecurityContext
				if sc == nil || *sc.AllowPrivilegeEscalation || !*sc.ReadOnlyRootFilesystem || !*sc.RunAsNonRoot ||
					!slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
					t.Errorf("container %s security context %+v is not restricted", ctr.Name, sc)
				}
				if ctr.TerminationMessagePolicy != corev1.TerminationMessageFallbackToLogsOnError {
					t.Errorf("container %s termination message policy %s", ctr.Name, ctr.TerminationMessagePolicy)
				}
			}
			// Everything the go command and git write lands on a volume, the root being
			// read-only.
			for _, v := range []string{"HOME", "GOPATH", "GOCACHE", "GOMODCACHE"} {
				val := env(c, v)
				if !strings.HasPrefix(val, workspaceDir) && !strings.HasPrefix(val, cacheDir) {
					t.Errorf("%s=%q is not on a volume", v, val)
				}
			}
			if env(c, "GOTOOLCHAIN") != "local" {
				t.Errorf("GOTOOLCHAIN=%q, want local", env(c, "GOTOOLCHAIN"))
			}
			o2 := parseBuilderArgs(t, c)
			tt.check(t, c, spec, o2)
		})
	}
}

func TestBuildJobOptionsValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*BuildJobOptions)
		wantErr string
	}{
		{"defaults", func(*BuildJobOptions) {}, ""},
		{"no builder image", func(o *BuildJobOptions) { o.BuilderImage = "" }, "SPLICE_BUILDER_IMAGE"},
		{"relative builder path", func(o *BuildJobOptions) { o.BuilderPath = "builder" }, "absolute"},
		{"image without the version", func(o *BuildJobOptions) { o.GoImage = "golang:latest" }, "{goVersion}"},
		{"no deadline", func(o *BuildJobOptions) { o.ActiveDeadlineSeconds = 0 }, "deadline"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := DefaultBuildJobOptions()
			tt.mutate(&o)
			err := o.Validate()
			if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
	t.Setenv("SPLICE_BUILDER_IMAGE", "example.com/splice:1")
	t.Setenv("SPLICE_BUILD_CACHE_PVC", "cache")
	t.Setenv(BuildEnvPrefix+"GOPROXY", "http://proxy.example.com")
	t.Setenv(BuildEnvPrefix+"GOPRIVATE", "git.example.com/*")
	o, err := BuildJobOptionsFromEnv()
	if err != nil || o.BuilderImage != "example.com/splice:1" || o.CacheVolume.PersistentVolumeClaim.ClaimName != "cache" {
		t.Fatalf("options from env %+v, %v", o, err)
	}
	want := []corev1.EnvVar{{Name: "GOPRIVATE", Value: "git.example.com/*"}, {Name: "GOPROXY", Value: "http://proxy.example.com"}}
	if fmt.Sprint(o.Env) != fmt.Sprint(want) {
		t.Fatalf("build env %v, want %v", o.Env, want)
	}
	// The vulnerability database reaches every build's arguments; a malformed one is refused
	// at start.
	t.Setenv("SPLICE_BUILD_VULN_DB", "https://vuln.example.com")
	if o, err = BuildJobOptionsFromEnv(); err != nil || o.VulnDB != "https://vuln.example.com" {
		t.Fatalf("vuln db from env %q, %v", o.VulnDB, err)
	}
	if args := builderArgs(buildInputs{Repository: "registry.example.com/team/p"}, "k", o); !slices.Contains(args, "--"+builder.FlagVulnDB+"=https://vuln.example.com") {
		t.Fatalf("builder args %v lack the vulnerability database", args)
	}
	t.Setenv("SPLICE_BUILD_VULN_DB", "http://vuln.example.com")
	if _, err := BuildJobOptionsFromEnv(); err == nil || !strings.Contains(err.Error(), "SPLICE_BUILD_VULN_DB") {
		t.Fatalf("a plain-HTTP vulnerability database was accepted: %v", err)
	}
	t.Setenv("SPLICE_BUILD_VULN_DB", "")
	// A variable the Job sets itself cannot be replaced: the error names it and the fix.
	t.Setenv(BuildEnvPrefix+"GOTOOLCHAIN", "auto")
	if _, err := BuildJobOptionsFromEnv(); err == nil || !strings.Contains(err.Error(), BuildEnvPrefix+"GOTOOLCHAIN") {
		t.Fatalf("replacing GOTOOLCHAIN was accepted: %v", err)
	}
}
