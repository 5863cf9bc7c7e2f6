#!/usr/bin/env bash
# End-to-end check on a throwaway kind cluster, for machines with Docker:
#   kind cluster -> Knative Serving + Kourier -> operator image built and loaded -> CRDs -> operator
#   (manifests/overlays/dev) -> manifests/samples/paddleservice-minimal.yaml -> wait until it is Ready.
#
#   hack/kind-e2e.sh                  run and delete the cluster afterwards (also on failure)
#   KEEP_CLUSTER=1 hack/kind-e2e.sh   keep the cluster to look around (kubectl --context kind-paddle-kuscia-e2e)
#
# Needs docker, kind and kubectl on PATH, and network access to GitHub releases and PyPI.
# Environment: CLUSTER_NAME, KIND_NODE_IMAGE, KNATIVE_VERSION, KOURIER_VERSION, TEST_NAMESPACE, KEEP_CLUSTER.
# An existing cluster named $CLUSTER_NAME is reused and never deleted.
set -euo pipefail

HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT_DIR=$(cd "$HACK_DIR/.." && pwd)

CLUSTER_NAME=${CLUSTER_NAME:-paddle-kuscia-e2e}
KIND_NODE_IMAGE=${KIND_NODE_IMAGE:-kindest/node:v1.34.0}
# Knative Serving and net-kourier release together; both are tagged knative-v<version>.
KNATIVE_VERSION=${KNATIVE_VERSION:-1.21.0}
KOURIER_VERSION=${KOURIER_VERSION:-1.21.0}
TEST_NAMESPACE=${TEST_NAMESPACE:-paddle-e2e}
KEEP_CLUSTER=${KEEP_CLUSTER:-0}
# The image manifests/overlays/dev deploys (never pulled: imagePullPolicy IfNotPresent + kind load).
IMAGE=paddle-kuscia-operator:dev
OPERATOR_NAMESPACE=paddle-kuscia-system

created_cluster=0

log() { printf '[kind-e2e] %s\n' "$*" >&2; }
die() { printf '[kind-e2e] ERROR: %s\n' "$*" >&2; exit 1; }
k() { kubectl --context "kind-$CLUSTER_NAME" "$@"; }

dump_diagnostics() {
  log "diagnostics follow"
  k get pods --all-namespaces -o wide || true
  k -n "$OPERATOR_NAMESPACE" logs deployment/paddle-kuscia-operator --tail=200 || true
  k -n "$TEST_NAMESPACE" get paddleservices,ksvc,revisions,pods -o wide || true
  k -n "$TEST_NAMESPACE" get paddleservices -o yaml || true
  k -n "$TEST_NAMESPACE" get events --sort-by=.lastTimestamp || true
}

cleanup() {
  local rc=$?
  trap - EXIT
  if ((rc != 0)); then dump_diagnostics; fi
  if ((created_cluster)) && [[ $KEEP_CLUSTER != 1 ]]; then
    log "deleting cluster $CLUSTER_NAME"
    kind delete cluster --name "$CLUSTER_NAME" || true
  fi
  exit "$rc"
}
trap cleanup EXIT

require_tools() {
  local tool
  for tool in docker kind kubectl; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required on PATH"
  done
  docker info >/dev/null 2>&1 || die "the Docker daemon is not reachable"
}

create_cluster() {
  if kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
    log "reusing existing cluster $CLUSTER_NAME"
    return
  fi
  log "creating cluster $CLUSTER_NAME ($KIND_NODE_IMAGE)"
  created_cluster=1
  kind create cluster --name "$CLUSTER_NAME" --image "$KIND_NODE_IMAGE" --wait 120s
}

install_knative() {
  local serving="https://github.com/knative/serving/releases/download/knative-v$KNATIVE_VERSION"
  local kourier="https://github.com/knative/net-kourier/releases/download/knative-v$KOURIER_VERSION"
  log "installing Knative Serving v$KNATIVE_VERSION and Kourier v$KOURIER_VERSION"
  k apply -f "$serving/serving-crds.yaml"
  k wait --for=condition=Established --timeout=120s crd/services.serving.knative.dev
  k apply -f "$serving/serving-core.yaml"
  k apply -f "$kourier/kourier.yaml"
  # Knative's webhook validates its ConfigMaps, so patch them only once it is up.
  k -n knative-serving wait --for=condition=Available deployment --all --timeout=5m
  k -n kourier-system wait --for=condition=Available deployment --all --timeout=5m
  k -n knative-serving patch configmap/config-network --type merge \
    -p '{"data":{"ingress-class":"kourier.ingress.networking.knative.dev"}}'
  # PaddleService's nodeSelector/affinity/tolerations/runtimeClassName reach the pod only with these.
  k -n knative-serving patch configmap/config-features --type merge -p '{"data":{
    "kubernetes.podspec-nodeselector":"enabled",
    "kubernetes.podspec-affinity":"enabled",
    "kubernetes.podspec-tolerations":"enabled",
    "kubernetes.podspec-runtimeclassname":"enabled"}}'
}

install_operator() {
  log "building $IMAGE"
  docker build -t "$IMAGE" "$ROOT_DIR"
  kind load docker-image "$IMAGE" --name "$CLUSTER_NAME"
  log "installing CRDs and the operator (manifests/overlays/dev)"
  k apply --server-side -k "$ROOT_DIR/crds/"
  k wait --for=condition=Established --timeout=60s \
    crd/paddleservices.elasticserving.paddlepaddle.org crd/kusciajobs.kuscia.secretflow \
    crd/kusciadeployments.kuscia.secretflow
  k apply -k "$ROOT_DIR/manifests/overlays/dev"
  k -n "$OPERATOR_NAMESPACE" rollout status deployment/paddle-kuscia-operator --timeout=3m
}

run_sample() {
  log "applying the minimal PaddleService into namespace $TEST_NAMESPACE"
  k create namespace "$TEST_NAMESPACE" --dry-run=client -o yaml | k apply -f -
  k -n "$TEST_NAMESPACE" apply -f "$ROOT_DIR/manifests/samples/paddleservice-minimal.yaml"
  k -n "$TEST_NAMESPACE" wait --for=condition=Ready ps/paddleservice-minimal --timeout=10m
  local url
  url=$(k -n "$TEST_NAMESPACE" get ps/paddleservice-minimal -o jsonpath='{.status.url}')
  [[ -n $url ]] || die "paddleservice-minimal is Ready but has no status.url"
  k -n "$TEST_NAMESPACE" get ps/paddleservice-minimal -o wide
  log "passed: paddleservice-minimal is Ready at $url"
}

require_tools
create_cluster
install_knative
install_operator
run_sample
