// Command images builds the container images the local cluster runs, without a container
// engine and without pulling anything: each image is layers appended to an empty image with
// go-containerregistry and written as a tarball that `ctr -n k8s.io images import` loads
// (hack/cluster/cluster.sh import-images does, and `make images` calls it when the cluster runs).
//
//	go run ./hack/images [-out DIR] [IMAGE...]     (default: all of them, in this order)
//
//	pause     localhost/splice/pause:3.10   the sandbox image (containerd's sandbox_image)
//	manager   splice-manager:dev             /manager, and /builder for the build Jobs' init container
//	agent     splice-agent:dev               /agent (webhooks.DefaultAgentImage)
//	builder   splice-builder:dev             /builder alone
//	greeter   splice-greeter:dev             the example host (cgo) with its shared libraries, and
//	                                         plugin v1 served from the start
//	greeter-variant splice-greeter:variant   the same, built with -gcflags=fmt=-N -l: plugins
//	                                         built the usual way are Incompatible with it
//	                                         (the e2e suite's Strict scenario recreates its pods)
//	greeter-api2 splice-greeter:api2         the usual host declaring plugin API 2.0.0 and serving
//	                                         the major drill plugin from the start: the image a
//	                                         major API change needs (the e2e's major-change path)
//	e2e-services splice-e2e-services:dev     an OCI registry and a static file server (a GOPROXY
//	                                         over a module cache) for the end-to-end suite
//	golang    golang:<go version>            Debian bookworm with gcc, libc6-dev and git
//	                                         (debootstrap, cached) plus the Go toolchain from the
//	                                         module proxy (golang.org/toolchain): the build Jobs'
//	                                         image for that Go release (-goproxy sets its GOPROXY)
//
// Static binaries run as the "nonroot" user 65532 of a minimal /etc/passwd. Builds run one at a
// time, and an image whose tarball exists and whose inputs did not change is rewritten
// byte-for-byte identically (layers carry fixed timestamps), so re-importing it is a no-op.
package main

import (
	"context"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/splice-dev/splice/examples/greeter/greeterbuild"
)

// nonroot is the UID and GID static images run as (distroless' "nonroot").
const nonroot = 65532

// image is one image this command can build.
type image struct {
	name  string
	ref   string
	build func(ctx context.Context, b *builder) (v1.Image, error)
}

func images(goVersion, goproxy string) []image {
	return []image{
		{"pause", "localhost/splice/pause:3.10", buildPause},
		{"manager", "splice-manager:dev", buildManager},
		{"agent", "splice-agent:dev", buildAgent},
		{"builder", "splice-builder:dev", buildBuilder},
		{"greeter", "splice-greeter:dev", func(ctx context.Context, b *builder) (v1.Image, error) {
			return buildGreeter(ctx, b, "greeter", nil, greeterSeed{plugin: "v1"})
		}},
		{"greeter-variant", "splice-greeter:variant", func(ctx context.Context, b *builder) (v1.Image, error) {
			return buildGreeter(ctx, b, "greeter-variant", greeterVariantFlags, greeterSeed{plugin: "v1"})
		}},
		{"greeter-api2", "splice-greeter:api2", func(ctx context.Context, b *builder) (v1.Image, error) {
			return buildGreeter(ctx, b, "greeter-api2", nil, greeterSeed{plugin: "major", hostArgs: []string{"-api-version", "2.0.0"}})
		}},
		{"e2e-services", "splice-e2e-services:dev", buildE2EServices},
		{"golang", "golang:" + goVersion, func(ctx context.Context, b *builder) (v1.Image, error) {
			return buildGolang(ctx, b, goVersion, goproxy)
		}},
	}
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
}

func run() error {
	root, err := greeterbuild.FindModuleRoot()
	if err != nil {
		return err
	}
	out := flag.String("out", filepath.Join(root, ".local", "images"), "directory the image tarballs are written to (<name>.tar)")
	goVersion := flag.String("go-version", strings.TrimPrefix(runtime.Version(), "go"), "Go release of the golang image (a golang.org/toolchain module version must exist for it)")
	goproxy := flag.String("goproxy", "", "GOPROXY baked into the golang image (usually empty: the chart's build.env gives build Jobs theirs)")
	cache := flag.String("cache", filepath.Join(root, ".local", "images-cache"), "directory for build outputs and the Debian root filesystem (kept between runs)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: go run ./hack/images [flags] [IMAGE...]\nimages:")
		for _, im := range images(*goVersion, *goproxy) {
			fmt.Fprintf(flag.CommandLine.Output(), " %s", im.name)
		}
		fmt.Fprintln(flag.CommandLine.Output())
		flag.PrintDefaults()
	}
	flag.Parse()

	all := images(*goVersion, *goproxy)
	want := flag.Args()
	if len(want) == 0 {
		for _, im := range all {
			want = append(want, im.name)
		}
	}
	var todo []image
	for _, w := range want {
		i := slices.IndexFunc(all, func(im image) bool { return im.name == w })
		if i < 0 {
			flag.Usage()
			return fmt.Errorf("unknown image %q", w)
		}
		todo = append(todo, all[i])
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	b := &builder{root: root, work: filepath.Join(*cache, "build")}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	start := time.Now()
	for _, im := range todo {
		t := time.Now()
		b.logf("%s: building %s", im.name, im.ref)
		img, err := im.build(ctx, b)
		if err != nil {
			return fmt.Errorf("%s: %w", im.name, err)
		}
		tar := filepath.Join(*out, im.name+".tar")
		if err := writeTarball(im.ref, img, tar); err != nil {
			return fmt.Errorf("%s: %w", im.name, err)
		}
		d, _ := img.Digest()
		fi, _ := os.Stat(tar)
		b.logf("%s: %s written to %s (%.1f MB, %s) in %s", im.name, im.ref, tar, float64(fi.Size())/1e6, d.String()[:19], time.Since(t).Round(100*time.Millisecond))
	}
	b.logf("%d image(s) in %s", len(todo), time.Since(start).Round(100*time.Millisecond))
	return nil
}

// writeTarball writes img tagged ref, as containerd will name it: "splice-agent:dev" becomes
// docker.io/library/splice-agent:dev (the name the kubelet asks containerd for), not
// go-containerregistry's default index.docker.io.
func writeTarball(ref string, img v1.Image, path string) error {
	tag, err := name.NewTag(ref, name.WithDefaultRegistry("docker.io"))
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// builder runs the go command in the module and keeps its outputs under work.
type builder struct {
	root string
	work string
}

func (b *builder) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[images %s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// goBuild builds pkg into work/<out>: statically (CGO_ENABLED=0) unless cgo is set.
func (b *builder) goBuild(ctx context.Context, pkg, out string, cgo bool) (string, error) {
	dst := filepath.Join(b.work, out)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", dst, pkg)
	cmd.Dir = b.root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if cgo {
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build %s: %w", pkg, err)
	}
	return dst, nil
}

// config sets what every image shares: platform, user, environment, entrypoint.
func config(img v1.Image, user string, entrypoint []string, env ...string) (v1.Image, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Created = v1.Time{Time: epoch}
	cf.Config.User = user
	cf.Config.Entrypoint = entrypoint
	cf.Config.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, env...)
	cf.Config.Labels = map[string]string{"org.opencontainers.image.source": "https://github.com/splice-dev/splice", "dev.splice.built-by": "hack/images"}
	return mutate.ConfigFile(img, cf)
}

// baseLayer is a minimal filesystem: users, groups, /tmp and the host's CA bundle (the agent
// pulls artifacts from registries).
func baseLayer() (v1.Layer, error) {
	entries := []entry{
		file("/etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")),
		file("/etc/group", 0o644, []byte("root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n")),
		file("/etc/nsswitch.conf", 0o644, []byte("hosts: files dns\n")),
		{Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
		{Path: "/home/nonroot", Mode: fs.ModeDir | 0o700, UID: nonroot, GID: nonroot},
	}
	if ca, err := hostFile("/etc/ssl/certs/ca-certificates.crt", "/etc/ssl/certs/ca-certificates.crt", 0o644); err == nil {
		entries = append(entries, ca)
	}
	return listLayer(entries)
}

// staticImage is base + the given binaries (path in the image -> file here), run as nonroot.
func staticImage(files map[string]string, entrypoint []string) (v1.Image, error) {
	base, err := baseLayer()
	if err != nil {
		return nil, err
	}
	bins, err := binariesLayer(files)
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, base, bins)
	if err != nil {
		return nil, err
	}
	return config(img, fmt.Sprintf("%d:%d", nonroot, nonroot), entrypoint)
}

// binariesLayer holds files (path in the image -> file here), executable.
func binariesLayer(files map[string]string) (v1.Layer, error) {
	var entries []entry
	for dst, src := range files {
		e, err := hostFile(dst, src, 0o755)
		if err != nil {
			return nil, err
		}
		entries = append(entries, e)
	}
	return listLayer(entries)
}

// buildPause: one static binary and nothing else, as the upstream pause image.
func buildPause(ctx context.Context, b *builder) (v1.Image, error) {
	bin, err := b.goBuild(ctx, "./hack/images/cmd/pause", "pause", false)
	if err != nil {
		return nil, err
	}
	l, err := binariesLayer(map[string]string{"/pause": bin})
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		return nil, err
	}
	return config(img, "65535:65535", []string{"/pause"})
}

func buildManager(ctx context.Context, b *builder) (v1.Image, error) {
	mgr, err := b.goBuild(ctx, "./cmd/manager", "manager", false)
	if err != nil {
		return nil, err
	}
	bld, err := b.goBuild(ctx, "./cmd/builder", "builder", false)
	if err != nil {
		return nil, err
	}
	return staticImage(map[string]string{"/manager": mgr, "/builder": bld}, []string{"/manager"})
}

func buildAgent(ctx context.Context, b *builder) (v1.Image, error) {
	bin, err := b.goBuild(ctx, "./cmd/agent", "agent", false)
	if err != nil {
		return nil, err
	}
	return staticImage(map[string]string{"/agent": bin}, []string{"/agent"})
}

func buildE2EServices(ctx context.Context, b *builder) (v1.Image, error) {
	bin, err := b.goBuild(ctx, "./hack/images/cmd/e2e-services", "e2e-services", false)
	if err != nil {
		return nil, err
	}
	return staticImage(map[string]string{"/e2e-services": bin}, []string{"/e2e-services"})
}

func buildBuilder(ctx context.Context, b *builder) (v1.Image, error) {
	bin, err := b.goBuild(ctx, "./cmd/builder", "builder", false)
	if err != nil {
		return nil, err
	}
	return staticImage(map[string]string{"/builder": bin}, []string{"/builder"})
}

// greeterVariantFlags build a greeter host (and its seed plugin) whose fmt package differs from
// the usual build's: the preflight, and plugin.Open, refuse usual plugins in it
// (PackageHashMismatch on fmt, which every greeter plugin links). The greeter package itself
// would not do: it holds only an interface, so -N -l leaves its hash unchanged (measured).
var greeterVariantFlags = []string{"-trimpath", "-gcflags=fmt=-N -l"}

// buildGreeter: the greeter host is a cgo binary that opens plugins, so the image carries the
// shared libraries it and its plugins link (found with ldd), and the v1 plugin, which
// greeter-start copies into the shared volume for the host to serve from its first request.
// flags, when not nil, replace greeterbuild's for the host and the seed plugin; out names the
// build directory.
// greeterSeed is what a greeter image serves from the start: a plugin of examples/greeter/plugins,
// and the host's arguments that go with it.
type greeterSeed struct {
	plugin   string
	hostArgs []string
}

func buildGreeter(ctx context.Context, b *builder, out string, flags []string, sd greeterSeed) (v1.Image, error) {
	gb := &greeterbuild.Builder{Root: b.root, Out: filepath.Join(b.work, out), Flags: flags}
	host, err := gb.Host(ctx)
	if err != nil {
		return nil, err
	}
	// A plugin path of its own, so that no later build can collide with the seed.
	seed, err := gb.Plugin(ctx, sd.plugin, "image-seed")
	if err != nil {
		return nil, err
	}
	start, err := b.goBuild(ctx, "./hack/images/cmd/greeter-start", "greeter-start", false)
	if err != nil {
		return nil, err
	}
	libs, err := sharedLibraries(host, seed.Path)
	if err != nil {
		return nil, err
	}
	var libEntries []entry
	for _, l := range libs {
		e, err := hostFile(l, l, 0o755)
		if err != nil {
			return nil, err
		}
		libEntries = append(libEntries, e)
	}
	base, err := baseLayer()
	if err != nil {
		return nil, err
	}
	libLayer, err := listLayer(libEntries)
	if err != nil {
		return nil, err
	}
	seedPath := "/plugins/" + sd.plugin + ".so"
	appLayer, err := binariesLayer(map[string]string{"/greeter": host, "/greeter-start": start, seedPath: seed.Path})
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, base, libLayer, appLayer)
	if err != nil {
		return nil, err
	}
	b.logf("%s: host %s, seed plugin %s %s, %d shared libraries", out, filepath.Base(host), sd.plugin, seed.Digest[:19], len(libs))
	return config(img, fmt.Sprintf("%d:%d", nonroot, nonroot),
		append([]string{"/greeter-start", "-seed", seedPath, "--", "/greeter", "-addr", ":8080"}, sd.hostArgs...))
}

// sharedLibraries lists the files the dynamic loader needs for bins, by path (symlinks as
// ldd names them are read through, so each path holds the library itself).
func sharedLibraries(bins ...string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for _, bin := range bins {
		b, err := exec.Command("ldd", bin).Output()
		if err != nil {
			return nil, fmt.Errorf("ldd %s: %w", bin, err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			var p string
			switch {
			case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
				p = f[2]
			case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
				p = f[0] // the loader itself
			}
			if p != "" && !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	slices.Sort(out)
	return out, nil
}
