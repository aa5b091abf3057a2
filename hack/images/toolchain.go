package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// The Debian release and packages of the golang image: what the official golang images carry
// for building Go with cgo (gcc, libc6-dev) and fetching sources (git, ca-certificates,
// openssh-client). The release matches this machine's, so plugins built in the image link the
// same glibc as the example host built here.
const (
	debianSuite    = "bookworm"
	debianPackages = "gcc,libc6-dev,git,ca-certificates,openssh-client,make,pkg-config"
)

// buildGolang: a Debian root filesystem from debootstrap (cached under the build cache) plus
// the Go release from the module proxy at /usr/local/go, with the official image's
// environment (GOPATH=/go, PATH, GOLANG_VERSION) and GOTOOLCHAIN=local, so the image never
// switches to another toolchain; goproxy, if set, becomes its GOPROXY.
func buildGolang(ctx context.Context, b *builder, goVersion, goproxy string) (v1.Image, error) {
	rootfs, err := debianRootfs(ctx, b)
	if err != nil {
		return nil, err
	}
	goroot, err := toolchainDir(ctx, b, goVersion)
	if err != nil {
		return nil, err
	}
	skip := func(rel string) bool {
		for _, d := range []string{"dev/", "proc/", "sys/", "run/", "tmp/", "var/cache/apt/", "var/lib/apt/lists/", "var/log/", "usr/share/doc/", "usr/share/man/", "usr/share/info/", "usr/share/locale/"} {
			if strings.HasPrefix(rel, d) {
				return true
			}
		}
		return false
	}
	base, err := dirLayer(rootfs, "/", treeOptions{skip: skip})
	if err != nil {
		return nil, err
	}
	// The module cache keeps every file read-only and none executable (the go command sets the
	// executable bits itself when it switches to a toolchain): restore a GOROOT's modes.
	gol, err := dirLayer(goroot, "/usr/local/go", treeOptions{mode: func(rel string, isDir bool) int64 {
		if isDir || strings.HasPrefix(rel, "bin/") || strings.HasPrefix(rel, "pkg/tool/") {
			return 0o755
		}
		return 0o644
	}})
	if err != nil {
		return nil, err
	}
	gopath, err := listLayer([]entry{
		{Path: "/go", Mode: os.ModeDir | os.ModeSticky | 0o777},
		{Path: "/go/bin", Mode: os.ModeDir | 0o777},
		{Path: "/go/src", Mode: os.ModeDir | 0o777},
	})
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, base, gol, gopath)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Created = v1.Time{Time: epoch}
	cf.Config.Env = []string{
		"PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"GOLANG_VERSION=" + goVersion,
		"GOPATH=/go",
		"GOTOOLCHAIN=local",
	}
	if goproxy != "" {
		cf.Config.Env = append(cf.Config.Env, "GOPROXY="+goproxy)
	}
	cf.Config.WorkingDir = "/go"
	cf.Config.Cmd = []string{"bash"}
	cf.Config.Labels = map[string]string{"dev.splice.built-by": "hack/images", "dev.splice.debian": debianSuite, "dev.splice.go": goVersion}
	return mutate.ConfigFile(img, cf)
}

// debianRootfs returns a Debian root filesystem with debianPackages, made once with
// debootstrap (installed from the Debian archive if missing) and kept in the cache.
func debianRootfs(ctx context.Context, b *builder) (string, error) {
	dir := filepath.Join(filepath.Dir(b.work), "rootfs-"+debianSuite)
	done := filepath.Join(dir, ".splice-complete")
	if want, err := os.ReadFile(done); err == nil && string(want) == debianPackages {
		return dir, nil
	}
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("debootstrap needs root to create %s", dir)
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		b.logf("golang: installing debootstrap")
		install := func() error {
			return runLogged(ctx, "", "apt-get", "install", "-y", "-qq", "--no-install-recommends", "debootstrap")
		}
		if err := install(); err != nil {
			// A fresh machine may have no package lists yet.
			b.logf("golang: apt-get install failed (%v); apt-get update, then once more", err)
			if err := runLogged(ctx, "", "apt-get", "update", "-qq"); err != nil {
				return "", err
			}
			if err := install(); err != nil {
				return "", err
			}
		}
	}
	mirror := os.Getenv("SPLICE_DEBIAN_MIRROR")
	if mirror == "" {
		mirror = "http://deb.debian.org/debian"
	}
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return "", err
	}
	b.logf("golang: debootstrap %s (%s) into %s from %s — a few minutes, once", debianSuite, debianPackages, tmp, mirror)
	if err := runLogged(ctx, "", "debootstrap", "--variant=minbase", "--include="+debianPackages, debianSuite, tmp, mirror); err != nil {
		return "", err
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", err
	}
	return dir, os.WriteFile(done, []byte(debianPackages), 0o644)
}

// toolchainDir downloads the Go release from the module proxy (golang.org/toolchain, the
// module the go command switches toolchains with) and returns its GOROOT in the module cache.
func toolchainDir(ctx context.Context, b *builder, goVersion string) (string, error) {
	mod := fmt.Sprintf("golang.org/toolchain@v0.0.1-go%s.%s-%s", goVersion, runtime.GOOS, runtime.GOARCH)
	b.logf("golang: go mod download %s", mod)
	// Outside any module, so the project's go.mod and go.sum are never touched.
	tmp, err := os.MkdirTemp("", "splice-toolchain-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", mod)
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GO111MODULE=on")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go mod download %s: %w\n%s", mod, err, out)
	}
	var m struct{ Dir, Error string }
	if err := json.Unmarshal(out, &m); err != nil {
		return "", err
	}
	if m.Error != "" {
		return "", fmt.Errorf("go mod download %s: %s", mod, m.Error)
	}
	if _, err := os.Stat(filepath.Join(m.Dir, "bin", "go")); err != nil {
		return "", fmt.Errorf("%s has no bin/go: %w", m.Dir, err)
	}
	return m.Dir, nil
}

func runLogged(ctx context.Context, dir, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}
