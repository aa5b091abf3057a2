#!/usr/bin/env bash
# helm.sh DEST_DIR — provide the real helm, $HELM_VERSION, at DEST_DIR/helm-$HELM_VERSION and
# print its path. Built from the Go module proxy with `go install` (outside the project's module,
# so go.mod is untouched) and stamped as helm's own Makefile does: its version, and the
# Kubernetes version `helm template` and `helm lint` assume (that of the client-go it is built
# with), without which charts that declare a kubeVersion fail to render.
set -euo pipefail
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
dest="${1:?usage: $0 DEST_DIR}"
mkdir -p "$dest"; dest="$(cd "$dest" && pwd)"
bin="$dest/helm-$HELM_VERSION"
if [ ! -x "$bin" ]; then
  gomod="$(cd "$(mktemp -d)" && GOFLAGS= go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  cg="$(awk '$1 == "k8s.io/client-go" {print $2}' "$gomod")"   # v0.MINOR.PATCH
  minor="$(echo "$cg" | cut -d. -f2)"
  ld="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do ld+=" -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$minor"; done
  echo "[helm] building helm $HELM_VERSION (Kubernetes 1.$minor) from the Go module proxy into $bin" >&2
  tmp="$(mktemp -d)" start=$SECONDS
  # A heartbeat: the first build takes a few minutes on 2 cores.
  ( while sleep 30; do echo "[helm]   … still building ($((SECONDS - start))s)" >&2; done ) &
  beat=$!
  rc=0
  (cd "$tmp" && GOFLAGS= GOBIN="$tmp" CGO_ENABLED=0 go install -trimpath -ldflags "$ld" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION") || rc=$?
  kill "$beat" 2>/dev/null; wait "$beat" 2>/dev/null || true
  [ "$rc" -eq 0 ] || { rm -rf "$tmp"; exit "$rc"; }
  mv "$tmp/helm" "$bin"; rm -rf "$tmp"
  echo "[helm] built in $((SECONDS - start))s" >&2
fi
echo "$bin"
