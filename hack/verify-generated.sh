#!/usr/bin/env bash
# verify-generated.sh — fail when the generated files (CRDs, RBAC, deepcopy) differ from what the
# markers produce. It regenerates in a scratch copy of the tree, so it never modifies the checkout.
set -euo pipefail
: "${CONTROLLER_GEN:?set CONTROLLER_GEN}"
root="$(cd "$(dirname "$0")/.." && pwd)"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
# Copy sources only (no bin/, no build output).
(cd "$root" && tar --exclude=./bin --exclude=./.git --exclude=./.local -cf - .) | (cd "$scratch" && tar -xf -)
cd "$scratch"
make --no-print-directory -s manifests generate CONTROLLER_GEN="$CONTROLLER_GEN" >/dev/null
stale=0
for path in config/crd config/rbac config/webhook api; do
  if ! diff -ru "$root/$path" "$scratch/$path" >"$scratch/.diff" 2>&1; then
    stale=1
    cat "$scratch/.diff" | head -40
  fi
done
if [ "$stale" -ne 0 ]; then
  echo "generated files are stale: run 'make manifests generate' and commit the result" >&2
  exit 1
fi
echo "generated files are up to date"
