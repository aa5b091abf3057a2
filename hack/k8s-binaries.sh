#!/usr/bin/env bash
# k8s-binaries.sh — provide Kubernetes control-plane binaries (kube-apiserver, etcd, kubectl, …)
# for envtest, the local control plane and the local cluster.
#
# Usage: hack/k8s-binaries.sh DEST_DIR COMPONENT...
#   COMPONENT is etcd or any k8s.io/kubernetes/cmd/<name> (kube-apiserver, kubectl, kubelet, …).
#
# Order of preference, per the project's rule "use the download where it is reachable":
#   1. already present in DEST_DIR (a stamp file records the version) -> nothing to do;
#   2. the envtest release tarball (kube-apiserver, etcd, kubectl only), tried once with a short timeout;
#   3. built from the Go module proxy: a throw-away module that requires k8s.io/kubernetes at
#      K8S_VERSION with every staging module replaced by its published v0.Y.Z twin, and one that
#      requires go.etcd.io/etcd/server/v3 at ETCD_VERSION. Builds are cached by Go; the first
#      kube-apiserver build takes ~10 minutes on 2 cores, later runs take seconds.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-3.6.16}"
dest="${1:?usage: $0 DEST_DIR COMPONENT...}"; shift
[ "$#" -gt 0 ] || { echo "usage: $0 DEST_DIR COMPONENT..." >&2; exit 2; }
mkdir -p "$dest"
dest="$(cd "$dest" && pwd)"
work="$(dirname "$dest")/.build"
log() { printf '[k8s-binaries %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

version_of() { if [ "$1" = etcd ]; then echo "$ETCD_VERSION"; else echo "$K8S_VERSION"; fi; }
have() { [ -x "$dest/$1" ] && [ "$(cat "$dest/.$1.version" 2>/dev/null)" = "$(version_of "$1")" ]; }
stamp() { version_of "$1" > "$dest/.$1.version"; }

missing=()
for c in "$@"; do have "$c" || missing+=("$c"); done
[ "${#missing[@]}" -eq 0 ] && exit 0

# 2. The envtest release, where reachable.
try_download() {
  local url="https://github.com/kubernetes-sigs/controller-tools/releases/download/envtest-v${K8S_VERSION}/envtest-v${K8S_VERSION}-linux-amd64.tar.gz"
  local tmp; tmp="$(mktemp -d)"
  log "trying the envtest download ($url)"
  if curl -fsSL --connect-timeout 5 --max-time 120 -o "$tmp/envtest.tgz" "$url" 2>/dev/null \
     && tar -xzf "$tmp/envtest.tgz" -C "$tmp"; then
    local f
    for f in kube-apiserver etcd kubectl; do
      if [ -x "$tmp/controller-tools/envtest/$f" ]; then
        cp "$tmp/controller-tools/envtest/$f" "$dest/$f"
        # The envtest etcd is whatever etcd the release ships; record it as satisfying the request.
        stamp "$f"
      fi
    done
    rm -rf "$tmp"; return 0
  fi
  rm -rf "$tmp"; log "download unreachable; building from the Go module proxy"; return 1
}
case " ${missing[*]} " in
  *" kube-apiserver "*|*" etcd "*|*" kubectl "*) try_download || true ;;
esac

build_etcd() {
  local m="$work/etcd-$ETCD_VERSION"
  mkdir -p "$m"
  if [ ! -f "$m/go.mod" ]; then
    (cd "$m" && cat > go.mod <<MOD
module splice.local/build-etcd

go 1.26
MOD
     GOFLAGS=-mod=mod go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" >&2)
  fi
  log "building etcd v$ETCD_VERSION (about a minute on a cold cache)"
  (cd "$m" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -o "$dest/etcd" go.etcd.io/etcd/server/v3)
  stamp etcd
}

# The packages the throw-away module's go.sum must cover: every component this script builds, so
# that one `go mod tidy` serves them all (adding a component re-tidies once).
K8S_TOOL_IMPORTS=(
  k8s.io/kubernetes/cmd/kube-apiserver/app
  k8s.io/kubernetes/cmd/kube-controller-manager/app
  k8s.io/kubernetes/cmd/kube-scheduler/app
  k8s.io/kubernetes/cmd/kubelet/app
  k8s.io/kubernetes/cmd/kube-proxy/app
)

k8s_tools_go() {
  printf '//go:build tools\n\npackage tools\n\nimport (\n'
  printf '\t_ "%s"\n' "${K8S_TOOL_IMPORTS[@]}"
  printf ')\n'
}

k8s_module() {
  local m="$work/kubernetes-$K8S_VERSION"
  if [ -f "$m/go.sum" ] && [ "$(k8s_tools_go)" != "$(cat "$m/tools.go" 2>/dev/null)" ]; then
    log "the component list changed; re-resolving the k8s.io/kubernetes module"
    k8s_tools_go > "$m/tools.go"
    (cd "$m" && GOFLAGS=-mod=mod go mod tidy >&2)
  fi
  if [ ! -f "$m/go.sum" ]; then
    mkdir -p "$m"
    log "preparing a module for k8s.io/kubernetes v$K8S_VERSION"
    local gomod
    gomod="$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
    {
      printf 'module splice.local/build-kubernetes\n\ngo 1.26.0\n\ngodebug default=go1.26\n\nrequire k8s.io/kubernetes v%s\n\nreplace (\n' "$K8S_VERSION"
      sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/k8s.io/.*#\t\1 => \1 v0.'"${K8S_VERSION#1.}"'#p' "$gomod"
      printf ')\n'
    } > "$m/go.mod"
    k8s_tools_go > "$m/tools.go"
    (cd "$m" && GOFLAGS=-mod=mod go mod tidy >&2)
  fi
  echo "$m"
}

build_k8s() {
  local name="$1" m; m="$(k8s_module)"
  local minor="${K8S_VERSION#*.}"; minor="${minor%%.*}"
  local ldflags=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  log "building $name v$K8S_VERSION from the Go module proxy (kube-apiserver ~10 min, kubelet ~6 min on 2 cores when the cache is cold)"
  local start=$SECONDS
  # Print a heartbeat so a long cold build is visibly alive.
  ( while sleep 30; do log "  … still building $name ($((SECONDS - start))s)"; done ) &
  local beat=$!
  local rc=0
  (cd "$m" && GOFLAGS=-mod=mod CGO_ENABLED="${CGO_ENABLED_K8S:-0}" go build -trimpath -ldflags "$ldflags" -o "$dest/$name" "k8s.io/kubernetes/cmd/$name") || rc=$?
  kill "$beat" 2>/dev/null; wait "$beat" 2>/dev/null || true
  [ "$rc" -eq 0 ] || { log "building $name failed"; return "$rc"; }
  stamp "$name"
  log "built $name in $((SECONDS - start))s"
}

for c in "${missing[@]}"; do
  have "$c" && continue
  case "$c" in
    etcd) build_etcd ;;
    *) build_k8s "$c" ;;
  esac
done
