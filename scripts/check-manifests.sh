#!/usr/bin/env bash
# Client-side parse of the Kubernetes manifests with kubectl (no cluster
# needed: `kubectl kustomize` reads and re-emits every document): the CRDs,
# the chart's copy of them, examples/, the e2e manifests and the render
# tests' golden files. Skipped with a note where kubectl is not installed.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v kubectl >/dev/null; then
  echo "check-manifests: kubectl not installed; skipped" >&2
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
files=(crds/*.yaml charts/pika-operator/crds/*.yaml examples/*.yaml e2e/manifests/*.yaml operator/tests/golden/*.yaml)
for f in "${files[@]}"; do
  cp "$f" "$work/doc.yaml"
  printf 'resources:\n- doc.yaml\n' > "$work/kustomization.yaml"
  KUBECONFIG=/dev/null kubectl kustomize "$work" > "$work/out.yaml" 2> "$work/err" || {
    echo "kubectl cannot parse $f:" >&2; cat "$work/err" >&2; exit 1; }
  grep -q '^kind:' "$work/out.yaml" || { echo "$f has no objects" >&2; exit 1; }
done
echo "check-manifests: kubectl parsed ${#files[@]} manifest files" >&2
