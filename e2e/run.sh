#!/usr/bin/env bash
# End-to-end test on a kind cluster (needs docker, kind, kubectl, helm).
# Never part of .ci/run; .github/workflows/e2e.yml runs it on hosted runners.
#
#   bash e2e/run.sh          # create cluster, build+load images, install, test, delete
#   KEEP=1 bash e2e/run.sh   # keep the cluster afterwards for debugging
set -euo pipefail
cd "$(dirname "$0")/.."
cluster=pika-e2e
for tool in docker kind kubectl helm cargo; do
  command -v "$tool" >/dev/null || { echo "e2e needs $tool on PATH" >&2; exit 2; }
done
cleanup() {
  if [ "${KEEP:-0}" != 1 ]; then kind delete cluster --name "$cluster" || true; fi
}
trap cleanup EXIT

kind get clusters | grep -qx "$cluster" || kind create cluster --config e2e/kind.yaml --wait 120s
kubectl config use-context "kind-$cluster"

for bin in operator dataplane sidecar; do
  docker build -f "$bin/Dockerfile" -t "pika-$bin:e2e" .
  kind load docker-image --name "$cluster" "pika-$bin:e2e"
done

kubectl apply -f e2e/manifests/backends.yaml
kubectl -n pika rollout status deploy/postgres deploy/redis deploy/rabbitmq deploy/falkordb --timeout=300s

helm upgrade --install pika-operator charts/pika-operator \
  --namespace pika-system --create-namespace \
  --set image.repository=pika-operator --set image.tag=e2e --set image.pullPolicy=Never \
  --wait --timeout 180s

cargo test --release -p pika-e2e -- --ignored --nocapture --test-threads=1
