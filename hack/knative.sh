#!/usr/bin/env bash
# Knative Serving's real control plane on the local API server (hack/control-plane.sh calls this).
#
#   hack/knative.sh build   build Knative's webhook, controller and autoscaler, kwok and kube-scheduler's
#                           manifests into the cache (binaries from the Go module proxy, pinned in versions.env)
#   hack/knative.sh up      on a running control plane (PK_RUN_DIR): install Knative's configuration, start
#                           kube-scheduler, kwok with a fake Node, Knative's three processes and our KIngress
#                           status reconciler; return when Knative's webhook admits and its controller leads
#   hack/knative.sh down    stop exactly what `up` started (by PID)
#
# Only Knative's networking data plane is ours: hack/knative-ingress marks KIngresses Ready. Pods are real pod
# objects, scheduled by kube-scheduler onto kwok's fake Node `kwok-node-0`, which kwok reports Running.
# Knative binds every listener on all addresses with no option to change it, so each Knative process runs in a
# loopback-only network namespace of its own; hack/netns-bridge carries the API server into each namespace and
# the webhook out of its one, all on 127.0.0.1.
set -euo pipefail

HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$HACK_DIR/versions.env"

CACHE_ROOT=${PADDLE_KUSCIA_CACHE:-$HOME/.cache/paddle-kuscia}
K8S_BIN_DIR="$CACHE_ROOT/bin/k8s-v${K8S_VERSION}-etcd-v${ETCD_VERSION}"
KN_BIN_DIR="$CACHE_ROOT/bin/knative-v${KNATIVE_SERVING_VERSION}-kwok-v${KWOK_VERSION}"
KNATIVE_DIR="$CACHE_ROOT/knative-serving-v${KNATIVE_SERVING_VERSION}"
RUN_DIR=${PK_RUN_DIR:-$CACHE_ROOT/run/default}
KN_NS=knative-serving
WEBHOOK_PORT=8443  # inside the webhook's namespace; the API server reaches it at 127.0.0.1:<a free port>
# A non-loopback address the autoscaler writes into its Endpoints (it exits on a loopback POD_IP); nothing dials it.
AUTOSCALER_POD_IP=10.255.255.1
PYTHON=${PYTHON:-python3}

log() { printf '[knative] %s\n' "$*" >&2; }
die() { printf '[knative] ERROR: %s\n' "$*" >&2; exit 1; }

# shellcheck source=lib.sh
source "$HACK_DIR/lib.sh"

binaries_present() {
  local b
  for b in controller webhook autoscaler kwok; do [[ -x "$KN_BIN_DIR/$b" ]] || return 1; done
}

build_knative() {
  local work=$1
  mkdir -p "$work/knative" && cd "$work/knative"
  go mod init local/knativebins >/dev/null 2>&1
  # Knative's own go.mod replaces gorilla/websocket; a replace only counts in the main module, so copy it.
  go mod edit -go=1.22.0 -replace=github.com/gorilla/websocket=github.com/gorilla/websocket@v1.5.0
  go get "knative.dev/serving@v$KNATIVE_SERVING_VERSION"
  local cmd
  for cmd in controller webhook autoscaler; do
    go build -trimpath -ldflags "-s -w" -o "$KN_BIN_DIR/$cmd.tmp" "knative.dev/serving/cmd/$cmd"
    mv "$KN_BIN_DIR/$cmd.tmp" "$KN_BIN_DIR/$cmd"
  done
}

build_kwok() {
  local work=$1
  mkdir -p "$work/kwok" && cd "$work/kwok"
  go mod init local/kwokbin >/dev/null 2>&1
  go get "sigs.k8s.io/kwok@v$KWOK_VERSION"
  go build -trimpath -ldflags "-s -w" -o "$KN_BIN_DIR/kwok.tmp" sigs.k8s.io/kwok/cmd/kwok
  mv "$KN_BIN_DIR/kwok.tmp" "$KN_BIN_DIR/kwok"
}

module_dir() { # module@version -> its directory in the module cache (downloaded if needed)
  (cd "$(mktemp -d)" && go mod download -json "$1" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
}

# Knative's CRDs and configuration, all from the same v$KNATIVE_SERVING_VERSION module graph: serving's copies
# of the networking and caching CRDs are symlinks that the module zip leaves out, so those come from the
# networking and caching versions serving's go.mod requires.
fetch_manifests() {
  local serving networking caching gomod
  serving=$(module_dir "knative.dev/serving@v$KNATIVE_SERVING_VERSION")
  [[ -d "$serving/config/core/300-resources" ]] || die "knative.dev/serving@v$KNATIVE_SERVING_VERSION has no config/core"
  gomod="$serving/go.mod"
  networking=$(module_dir "knative.dev/networking@$(awk '$1 == "knative.dev/networking" {print $2}' "$gomod")")
  caching=$(module_dir "knative.dev/caching@$(awk '$1 == "knative.dev/caching" {print $2}' "$gomod")")
  local out="$KNATIVE_DIR.tmp"
  rm -rf "$out" && mkdir -p "$out/crds" "$out/core"
  cp "$serving"/config/core/300-resources/*.yaml "$out/crds/"
  cp "$networking"/config/{ingress,serverlessservice,certificate,domain-claim}.yaml "$out/crds/"
  cp "$caching/config/image.yaml" "$out/crds/"
  cp "$serving/config/core/100-namespace.yaml" "$serving"/config/core/configmaps/*.yaml "$out/core/"
  cp "$networking/config/config-network.yaml" "$out/core/"
  cp "$serving"/config/core/webhooks/*.yaml "$out/core/"
  chmod -R u+w "$out"
  rm -rf "$KNATIVE_DIR" && mv "$out" "$KNATIVE_DIR"
}

cmd_build() {
  go_build_env Knative
  mkdir -p "$KN_BIN_DIR"
  take_build_lock knative
  if ! binaries_present; then
    log "building Knative Serving v$KNATIVE_SERVING_VERSION (controller, webhook, autoscaler) and kwok v$KWOK_VERSION"
    log "from the Go module proxy into $KN_BIN_DIR; a cold build takes several minutes on 2 cores"
    local work
    work=$(mktemp -d)
    # shellcheck disable=SC2064
    trap "rm -rf '$work'" EXIT
    [[ -x "$KN_BIN_DIR/kwok" ]] || with_progress kwok build_kwok "$work"
    with_progress knative-serving build_knative "$work"
  fi
  [[ -f "$KNATIVE_DIR/crds/service.yaml" ]] || fetch_manifests
  binaries_present || die "build finished but binaries are missing from $KN_BIN_DIR"
  release_build_lock
}

cmd_crd_dir() { echo "$KNATIVE_DIR/crds"; }

kubectl_admin() { "$K8S_BIN_DIR/kubectl" --kubeconfig="$RUN_DIR/admin.kubeconfig" "$@"; }

start_bg() { # name command...: run in the background, output to logs/<name>.log, PID to <name>.pid
  local name=$1; shift
  "$@" >>"$RUN_DIR/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN_DIR/$name.pid"
}

# Knative's configuration for this test world (everything else keeps Knative's defaults).
configure() {
  kubectl_admin apply --server-side --force-conflicts -f "$KNATIVE_DIR/core/100-namespace.yaml" >/dev/null
  local f
  for f in "$KNATIVE_DIR"/core/*.yaml; do
    case $(basename "$f") in
      100-namespace.yaml|defaulting.yaml|resource-validation.yaml|configmap-validation.yaml) ;;
      *) kubectl_admin apply --server-side --force-conflicts -f "$f" >/dev/null ;;
    esac
  done
  # No registry can be reached, so Knative must not resolve tags to digests for any registry our samples and
  # tests name (v0.42.2 matches registry hosts exactly: no wildcard, no switch to turn resolution off).
  local registries="kind.local,ko.local,dev.local,example.invalid,registry.invalid,registry.example.com"
  registries+=",registry.example,registry.baidubce.com,secretflow-registry.cn-hangzhou.cr.aliyuncs.com"
  registries+=",docker.io,index.docker.io,ghcr.io,quay.io,gcr.io,registry.k8s.io"
  # Knative gives a revision 10 minutes to reach its initial scale, then fails it for good ("Initial scale was
  # never achieved"). On 2 shared cores, with hundreds of revisions and kube-apiserver restarted under them
  # (hack/soak.py), its own controllers can take longer than that: 30 minutes here.
  patch_cm config-deployment "{\"queue-sidecar-image\": \"registry.invalid/knative/queue:v$KNATIVE_SERVING_VERSION\",
    \"registries-skipping-tag-resolving\": \"$registries\", \"progress-deadline\": \"1800s\"}"
  patch_cm config-network '{"ingress-class": "fake.ingress.networking.knative.dev"}'
  patch_cm config-domain '{"example.com": ""}'
  patch_cm config-leader-election '{"lease-duration": "15s", "renew-deadline": "10s", "retry-period": "2s"}'
  # What the operator's docs ask users to enable for the scheduling fields of a PaddleService.
  patch_cm config-features '{"kubernetes.podspec-nodeselector": "enabled", "kubernetes.podspec-tolerations": "enabled",
    "kubernetes.podspec-affinity": "enabled", "kubernetes.podspec-runtimeclassname": "enabled",
    "kubernetes.podspec-persistent-volume-claim": "enabled", "kubernetes.podspec-persistent-volume-write": "enabled",
    "kubernetes.podspec-volumes-emptydir": "enabled"}'
  # `initialScale: 0` is a documented PaddleService setting; Knative refuses it unless the cluster allows it.
  patch_cm config-autoscaler '{"allow-zero-initial-scale": "true"}'
  kubectl_admin apply --server-side --force-conflicts -f - >/dev/null <<EOF
apiVersion: v1
kind: Service
metadata: {name: webhook, namespace: $KN_NS}
spec: {type: ExternalName, externalName: 127.0.0.1}
---
# The activator is data plane, which does not run here; the controller only needs its Endpoints to exist.
apiVersion: v1
kind: Endpoints
metadata: {name: activator-service, namespace: $KN_NS}
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-0
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels: {kubernetes.io/hostname: kwok-node-0, kubernetes.io/os: linux, kubernetes.io/arch: amd64, type: kwok}
EOF
  # Capacity is status: written through the status subresource, as a kubelet does. Room for the pods of a
  # 10 000-service benchmark (each asks 225m of CPU with Knative's queue-proxy), and accelerators of each kind.
  local capacity='{"cpu": "4000", "memory": "32Ti", "pods": "20000", "nvidia.com/gpu": "64", "baidu.com/xpu": "64",
    "kunlunxin.com/xpu": "64"}'
  kubectl_admin patch node kwok-node-0 --subresource=status --type=merge \
    -p "{\"status\": {\"capacity\": $capacity, \"allocatable\": $capacity}}" >/dev/null
  # The API server taints a new Node not-ready; the node lifecycle controller that would lift it once kwok
  # reports Ready does not run here (nor would its evictions make sense for a fake Node), so lift it now.
  kubectl_admin taint node kwok-node-0 node.kubernetes.io/not-ready:NoSchedule- >/dev/null 2>&1 || true
}

patch_cm() { # name json-data
  kubectl_admin patch configmap -n "$KN_NS" "$1" --type=merge -p "{\"data\": $2}" >/dev/null
}

# The three webhook configurations, pointed at the bridge's port on the host through the ExternalName Service
# (the webhook fills in its own certificate and caBundle).
register_webhooks() { # host-port
  local f
  for f in defaulting resource-validation configmap-validation; do
    kubectl_admin apply --server-side --force-conflicts -f "$KNATIVE_DIR/core/$f.yaml" >/dev/null
  done
  local kind name
  for kind_name in mutatingwebhookconfiguration/webhook.serving.knative.dev \
    validatingwebhookconfiguration/validation.webhook.serving.knative.dev \
    validatingwebhookconfiguration/config.webhook.serving.knative.dev; do
    kind=${kind_name%%/*} name=${kind_name#*/}
    kubectl_admin patch "$kind" "$name" --type=json \
      -p "[{\"op\": \"add\", \"path\": \"/webhooks/0/clientConfig/service/port\", \"value\": $1}]" >/dev/null
  done
}

# A loopback-only network namespace, held by a sleeping process whose PID names it.
new_netns() { # name
  start_bg "netns-$1" unshare --net -- sh -c 'ip link set lo up && exec sleep 2147483647'
  local pid; pid=$(cat "$RUN_DIR/netns-$1.pid")
  local deadline=$((SECONDS + 10))
  until [[ "$(readlink "/proc/$pid/ns/net" 2>/dev/null)" != "$(readlink /proc/self/ns/net)" ]] \
    && nsenter --net="/proc/$pid/ns/net" ip -o link show lo 2>/dev/null | grep -q 'UP'; do
    ((SECONDS < deadline)) || die "network namespace $1 did not come up"
    sleep 0.1
  done
}

netns_of() { echo "/proc/$(cat "$RUN_DIR/netns-$1.pid")/ns/net"; }

start_knative_process() { # name extra-env...
  local name=$1; shift
  start_bg "knative-$name" nsenter --net="$(netns_of "$name")" -- env \
    SYSTEM_NAMESPACE=$KN_NS METRICS_DOMAIN=knative.dev/internal/serving CONFIG_LOGGING_NAME=config-logging \
    CONFIG_OBSERVABILITY_NAME=config-observability POD_NAME="$name-0" "$@"
}

wait_until() { # seconds what command...
  local seconds=$1 what=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "timed out after $seconds s waiting for $what (logs: $RUN_DIR/logs/)"
    sleep 0.3
  done
}

# Knative's defaulting webhook answers: a server-side dry run comes back with the defaults it adds.
webhook_admits() {
  kubectl_admin create --dry-run=server -o jsonpath='{.spec.template.spec.containers[0].readinessProbe.successThreshold}' \
    -f - <<'EOF' | grep -q 1
apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: knative-smoke, namespace: default}
spec: {template: {spec: {containers: [{image: registry.invalid/knative/smoke:1}]}}}
EOF
}

# The controller's reconcilers that make a Knative Service Ready each lead their lease, and the autoscaler
# holds its bucket.
controller_leads() {
  local holders
  holders=$(kubectl_admin get lease -n $KN_NS -o jsonpath='{range .items[*]}{.metadata.name}={.spec.holderIdentity}{"\n"}{end}')
  local r
  for r in service configuration revision route serverlessservice; do
    grep -q "^controller.knative.dev.serving.pkg.reconciler.$r.reconciler.00-of-01=." <<<"$holders" || return 1
  done
  grep -q "^autoscaler-bucket-00-of-01=autoscaler-0" <<<"$holders"
}

cmd_up() {
  cmd_build
  [[ -f "$RUN_DIR/admin.kubeconfig" ]] || die "the control plane is not running in $RUN_DIR"
  if [[ -f "$RUN_DIR/knative-controller.pid" ]] && kill -0 "$(cat "$RUN_DIR/knative-controller.pid")" 2>/dev/null; then
    log "already running"
    return 0
  fi
  cmd_down  # whatever a failed `up` left behind
  local start=$SECONDS port webhook_port
  port=$(cat "$RUN_DIR/apiserver.port")
  # Several control planes may run on one machine (tests, demo, benchmarks): each gets its own webhook port.
  webhook_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  configure

  start_bg kube-scheduler "$K8S_BIN_DIR/kube-scheduler" --kubeconfig="$RUN_DIR/admin.kubeconfig" \
    --leader-elect=false --bind-address=127.0.0.1 --secure-port=0
  start_bg kwok "$KN_BIN_DIR/kwok" --kubeconfig="$RUN_DIR/admin.kubeconfig" --manage-all-nodes=true \
    --cidr=10.244.0.1/16 --node-ip=10.244.255.254 --node-lease-duration-seconds=0 \
    --config="$HACK_DIR/kwok-stages.yaml"

  # One namespace per Knative process; inside each, 127.0.0.1:<API server port> reaches the API server.
  local name forwards=()
  for name in webhook controller autoscaler; do
    new_netns "$name"
    forwards+=(--forward "$(cat "$RUN_DIR/netns-$name.pid")@127.0.0.1:$port=127.0.0.1:$port")
  done
  # And the API server reaches the webhook at 127.0.0.1:<webhook_port> on the host.
  forwards+=(--forward "127.0.0.1:$webhook_port=$(cat "$RUN_DIR/netns-webhook.pid")@127.0.0.1:$WEBHOOK_PORT")
  rm -f "$RUN_DIR/netns-bridge.ready"
  start_bg netns-bridge "$PYTHON" "$HACK_DIR/netns-bridge" --ready-file "$RUN_DIR/netns-bridge.ready" "${forwards[@]}"
  wait_until 15 "the network namespace bridge" test -f "$RUN_DIR/netns-bridge.ready"

  local kubeconfig="--kubeconfig=$RUN_DIR/admin.kubeconfig"
  start_knative_process webhook WEBHOOK_NAME=webhook WEBHOOK_PORT=$WEBHOOK_PORT PROFILING_PORT=8009 \
    "$KN_BIN_DIR/webhook" "$kubeconfig" --disable-ha
  start_knative_process controller PROFILING_PORT=8008 "$KN_BIN_DIR/controller" "$kubeconfig"
  start_knative_process autoscaler POD_IP=$AUTOSCALER_POD_IP PROFILING_PORT=8010 "$KN_BIN_DIR/autoscaler" "$kubeconfig"
  start_bg knative-ingress "$PYTHON" "$HACK_DIR/knative-ingress" --run-dir "$RUN_DIR"
  register_webhooks "$webhook_port"

  wait_until 90 "Knative's webhook to admit" webhook_admits
  wait_until 90 "Knative's controller and autoscaler to take their leases" controller_leads
  log "up in $((SECONDS - start)) s: Knative Serving v$KNATIVE_SERVING_VERSION, kwok node kwok-node-0"
}

cmd_down() {
  local name
  for name in knative-ingress knative-controller knative-autoscaler knative-webhook netns-bridge \
    netns-webhook netns-controller netns-autoscaler kwok kube-scheduler; do
    stop_pidfile "$RUN_DIR/$name.pid"
  done
}

case "${1:-}" in
  build) cmd_build ;;
  up) cmd_up ;;
  down) cmd_down ;;
  crd-dir) cmd_crd_dir ;;
  bin-dir) echo "$KN_BIN_DIR" ;;
  *) echo "usage: $0 build|up|down|crd-dir|bin-dir" >&2; exit 2 ;;
esac
