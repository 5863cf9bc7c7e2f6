#!/usr/bin/env bash
# A real, local Kubernetes control plane: etcd + kube-apiserver + kube-controller-manager + kube-scheduler,
# built from the Go module proxy, with Knative Serving's real control plane on it (hack/knative.sh), all on
# 127.0.0.1 only.
#
#   hack/control-plane.sh build   build (or reuse) the binaries, Knative's included, into the cache
#   hack/control-plane.sh up      start etcd, kube-apiserver, kube-controller-manager; install CRDs; start Knative
#   hack/control-plane.sh down    stop exactly the processes `up` started (by PID) and remove the run dir
#   hack/control-plane.sh env     print the `export ...` lines for the running control plane
#   hack/control-plane.sh status  say whether it is running
#
# Environment:
#   PADDLE_KUSCIA_CACHE   cache root (default ~/.cache/paddle-kuscia); binaries go to a versioned subdirectory
#   PK_RUN_DIR            where certificates, kubeconfigs, data, logs and PIDs live (default $CACHE/run/default)
#   PK_KNATIVE=0          `up` without Knative's processes (its CRDs are installed all the same)
set -euo pipefail

HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT_DIR=$(cd "$HACK_DIR/.." && pwd)
# shellcheck source=versions.env
source "$HACK_DIR/versions.env"

CACHE_ROOT=${PADDLE_KUSCIA_CACHE:-$HOME/.cache/paddle-kuscia}
BIN_DIR="$CACHE_ROOT/bin/k8s-v${K8S_VERSION}-etcd-v${ETCD_VERSION}"
RUN_DIR=${PK_RUN_DIR:-$CACHE_ROOT/run/default}

# The operator's identity: the ServiceAccount from manifests/base, presented as a client certificate.
OPERATOR_NAMESPACE=paddle-kuscia-system
OPERATOR_SA=paddle-kuscia-operator

log() { printf '[control-plane] %s\n' "$*" >&2; }
die() { printf '[control-plane] ERROR: %s\n' "$*" >&2; exit 1; }

K8S_COMMANDS=(kube-apiserver kube-controller-manager kube-scheduler kubectl)

binaries_present() {
  local cmd
  for cmd in "${K8S_COMMANDS[@]}" etcd; do [[ -x "$BIN_DIR/$cmd" ]] || return 1; done
}

# shellcheck source=lib.sh
source "$HACK_DIR/lib.sh"

build_k8s() {
  local work=$1 minor patch gomod
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  patch=${K8S_VERSION##*.}
  mkdir -p "$work/k8s" && cd "$work/k8s"
  go mod init local/k8sbins >/dev/null 2>&1
  go mod edit -go=1.24.0 -godebug=default=go1.24
  gomod=$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [[ -f "$gomod" ]] || die "could not download k8s.io/kubernetes@v$K8S_VERSION's go.mod from the Go module proxy"
  # Every staging module that k8s.io/kubernetes replaces with ./staging/... must point at its published tag.
  local m
  while read -r m; do
    go mod edit -replace="$m=$m@v0.$minor.$patch"
  done < <(sed -n 's|^[[:space:]]*\(k8s.io/[^ ]*\) => \./staging/src/.*|\1|p' "$gomod")
  local cmd packages=()
  for cmd in "${K8S_COMMANDS[@]}"; do packages+=("k8s.io/kubernetes/cmd/$cmd@v$K8S_VERSION"); done
  go get "${packages[@]}"
  local vflags="-X k8s.io/component-base/version.gitVersion=v$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1"
  vflags+=" -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
  vflags+=" -X k8s.io/client-go/pkg/version.gitVersion=v$K8S_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1"
  vflags+=" -X k8s.io/client-go/pkg/version.gitMinor=$minor"
  for cmd in "${K8S_COMMANDS[@]}"; do
    [[ -x "$BIN_DIR/$cmd" ]] && continue
    go build -trimpath -ldflags "-s -w $vflags" -o "$BIN_DIR/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd"
    mv "$BIN_DIR/$cmd.tmp" "$BIN_DIR/$cmd"
  done
}

build_etcd() {
  local work=$1
  # A module of its own, so etcd's grpc/otel versions are not unified with Kubernetes'.
  mkdir -p "$work/etcd" && cd "$work/etcd"
  go mod init local/etcdbin >/dev/null 2>&1
  go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
  go build -trimpath -ldflags "-s -w" -o "$BIN_DIR/etcd.tmp" go.etcd.io/etcd/server/v3
  mv "$BIN_DIR/etcd.tmp" "$BIN_DIR/etcd"
}

cmd_build() {
  go_build_env "the local control plane"
  mkdir -p "$BIN_DIR"
  take_build_lock k8s
  if ! binaries_present; then
    log "building Kubernetes v$K8S_VERSION and etcd v$ETCD_VERSION from the Go module proxy into $BIN_DIR"
    log "a cold build takes about 8 minutes on 2 cores; later runs reuse the cache"
    local work
    work=$(mktemp -d)
    # shellcheck disable=SC2064
    trap "rm -rf '$work'" EXIT
    [[ -x "$BIN_DIR/etcd" ]] || with_progress etcd build_etcd "$work"
    with_progress kubernetes build_k8s "$work"
  fi
  binaries_present || die "build finished but binaries are missing from $BIN_DIR"
  "$HACK_DIR/knative.sh" build
  release_build_lock
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

gen_certs() {
  local d="$RUN_DIR/pki"
  mkdir -p "$d" && cd "$d"
  local ca_ext leaf_ext
  ca_ext=$(printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash')
  leaf_ext='authorityKeyIdentifier=keyid,issuer\nsubjectKeyIdentifier=hash\nbasicConstraints=CA:FALSE'
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=paddle-kuscia-local-ca" \
    -keyout ca.key -out ca.crt -extensions v3_ca -config <(printf '[req]\ndistinguished_name=dn\n[dn]\n[v3_ca]\n%s\n' "$ca_ext") 2>/dev/null
  issue() { # name subject eku [san]
    local name=$1 subj=$2 eku=$3 san=${4:-}
    openssl req -newkey rsa:2048 -nodes -subj "$subj" -keyout "$name.key" -out "$name.csr" 2>/dev/null
    local ext
    ext=$(printf "$leaf_ext\nextendedKeyUsage=%s\n%s" "$eku" "$san")
    openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -out "$name.crt" \
      -extfile <(printf '%s\n' "$ext") 2>/dev/null
    rm -f "$name.csr"
  }
  issue apiserver "/CN=kube-apiserver" serverAuth "subjectAltName=IP:127.0.0.1,DNS:localhost"
  issue admin "/CN=admin/O=system:masters" clientAuth
  issue controller-manager "/CN=system:kube-controller-manager" clientAuth
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  chmod 600 ./*.key
}

write_kubeconfig() { # file user port [token]
  local file=$1 user=$2 port=$3 token=${4:-} d="$RUN_DIR/pki" credentials
  if [[ -n "$token" ]]; then
    credentials="    token: $token"
  else
    credentials="    client-certificate-data: $(base64 -w0 <"$d/$user.crt")
    client-key-data: $(base64 -w0 <"$d/$user.key")"
  fi
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority-data: $(base64 -w0 <"$d/ca.crt")
users:
- name: $user
  user:
$credentials
contexts:
- name: local
  context: {cluster: local, user: $user, namespace: default}
current-context: local
EOF
  chmod 600 "$file"
}

wait_ready() { # url what timeout
  local url=$1 what=$2 deadline=$((SECONDS + ${3:-60}))
  until curl -fsS --cacert "$RUN_DIR/pki/ca.crt" --cert "$RUN_DIR/pki/admin.crt" --key "$RUN_DIR/pki/admin.key" \
    "$url" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { tail -n 30 "$RUN_DIR/logs/$what.log" >&2; die "$what did not become ready at $url"; }
    sleep 0.3
  done
}

start_etcd() {
  local etcd_port peer_port
  etcd_port=$(free_port); peer_port=$(free_port)
  echo "$etcd_port" >"$RUN_DIR/etcd.port"
  "$BIN_DIR/etcd" --name=local --data-dir="$RUN_DIR/etcd-data" \
    --listen-client-urls="http://127.0.0.1:$etcd_port" --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$peer_port" --initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-cluster="local=http://127.0.0.1:$peer_port" \
    --unsafe-no-fsync=true --quota-backend-bytes=4294967296 \
    >"$RUN_DIR/logs/etcd.log" 2>&1 &
  echo $! >"$RUN_DIR/etcd.pid"
  local deadline=$((SECONDS + 30))
  until curl -fsS "http://127.0.0.1:$etcd_port/health" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { tail -n 30 "$RUN_DIR/logs/etcd.log" >&2; die "etcd did not become healthy"; }
    sleep 0.2
  done
}

# kube-apiserver only: restartable on its own (the chaos tests restart it mid-rollout).
start_apiserver() {
  local port d="$RUN_DIR/pki"
  if [[ -f "$RUN_DIR/apiserver.port" ]]; then port=$(cat "$RUN_DIR/apiserver.port"); else port=$(free_port); fi
  echo "$port" >"$RUN_DIR/apiserver.port"
  cat >"$RUN_DIR/audit-policy.yaml" <<EOF
# Record who wrote what (never request bodies). Everything the operator's ServiceAccount does is recorded,
# reads included, so tests can compare the verbs it uses with the ClusterRole it is granted.
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  users: ["system:serviceaccount:$OPERATOR_NAMESPACE:$OPERATOR_SA"]
- level: None
  resources: [{group: coordination.k8s.io, resources: [leases]}]
- level: Metadata
  verbs: [create, update, patch, delete, deletecollection]
- level: None
EOF
  # A /12 of ClusterIPs: Knative makes two Services per Revision, and benchmarks run thousands of them.
  # The audit log is never rotated (a maxsize of 0 would mean the default 100 MB, then a new file): the
  # benchmarks and hack/soak.py read it from offsets taken earlier in the same file.
  "$BIN_DIR/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$(cat "$RUN_DIR/etcd.port")" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$port" \
    --tls-cert-file="$d/apiserver.crt" --tls-private-key-file="$d/apiserver.key" \
    --client-ca-file="$d/ca.crt" \
    --service-account-issuer="https://127.0.0.1:$port/" --service-account-key-file="$d/sa.pub" \
    --service-account-signing-key-file="$d/sa.key" \
    --service-cluster-ip-range=10.96.0.0/12 --authorization-mode=RBAC --allow-privileged=true \
    --disable-admission-plugins=ServiceAccount --endpoint-reconciler-type=none \
    --audit-policy-file="$RUN_DIR/audit-policy.yaml" --audit-log-path="$RUN_DIR/logs/audit.log" \
    --audit-log-format=json --audit-log-mode=blocking --audit-log-maxsize=1000000 \
    >>"$RUN_DIR/logs/kube-apiserver.log" 2>&1 &
  echo $! >"$RUN_DIR/kube-apiserver.pid"
  wait_ready "https://127.0.0.1:$port/readyz" kube-apiserver 90
}

start_controller_manager() {
  "$BIN_DIR/kube-controller-manager" --kubeconfig="$RUN_DIR/controller-manager.kubeconfig" \
    --controllers=garbagecollector,namespace,deployment,replicaset,endpoint,endpointslice,serviceaccount,podgc \
    --leader-elect=false --use-service-account-credentials=false \
    --bind-address=127.0.0.1 --secure-port=0 --concurrent-gc-syncs=20 \
    >"$RUN_DIR/logs/kube-controller-manager.log" 2>&1 &
  echo $! >"$RUN_DIR/kube-controller-manager.pid"
}

kubectl_admin() { "$BIN_DIR/kubectl" --kubeconfig="$RUN_DIR/admin.kubeconfig" "$@"; }

install_crds() {
  kubectl_admin apply --server-side --force-conflicts -f "$("$HACK_DIR/knative.sh" crd-dir)/" >/dev/null
  kubectl_admin apply --server-side --force-conflicts -k "$ROOT_DIR/crds/" >/dev/null
  kubectl_admin wait --for=condition=Established --timeout=60s crd --all >/dev/null
}

cmd_up() {
  cmd_build
  if pid_alive "$RUN_DIR/kube-apiserver.pid"; then
    log "already running (run dir $RUN_DIR)"
    install_crds
    [[ "${PK_KNATIVE:-1}" == 0 ]] || "$HACK_DIR/knative.sh" up
    return 0
  fi
  rm -rf "$RUN_DIR" && mkdir -p "$RUN_DIR/logs"
  gen_certs
  start_etcd
  start_apiserver
  local port; port=$(cat "$RUN_DIR/apiserver.port")
  write_kubeconfig "$RUN_DIR/admin.kubeconfig" admin "$port"
  write_kubeconfig "$RUN_DIR/controller-manager.kubeconfig" controller-manager "$port"
  # The controller manager identity gets cluster-admin: it must list/delete every kind for GC and namespaces.
  kubectl_admin create clusterrolebinding local-controller-manager --clusterrole=cluster-admin \
    --user=system:kube-controller-manager >/dev/null
  # CRDs before the controller manager, so its garbage collector discovers their kinds at start.
  install_crds
  start_controller_manager
  # The operator's identity: a real ServiceAccount token from the TokenRequest API (RBAC comes from manifests/).
  kubectl_admin create namespace "$OPERATOR_NAMESPACE" >/dev/null
  kubectl_admin create serviceaccount -n "$OPERATOR_NAMESPACE" "$OPERATOR_SA" >/dev/null
  write_kubeconfig "$RUN_DIR/operator.kubeconfig" operator "$port" \
    "$(kubectl_admin create token -n "$OPERATOR_NAMESPACE" "$OPERATOR_SA" --duration=8760h)"
  [[ "${PK_KNATIVE:-1}" == 0 ]] || "$HACK_DIR/knative.sh" up
  log "up: kube-apiserver $("$BIN_DIR/kubectl" --kubeconfig="$RUN_DIR/admin.kubeconfig" version -o json \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])') at https://127.0.0.1:$port"
  cmd_env
}

cmd_down() {
  "$HACK_DIR/knative.sh" down
  local f
  for f in kube-controller-manager kube-apiserver etcd; do stop_pidfile "$RUN_DIR/$f.pid"; done
  [[ -d "$RUN_DIR" ]] && rm -rf "$RUN_DIR"
  log "down"
}

cmd_env() {
  [[ -f "$RUN_DIR/admin.kubeconfig" ]] || die "not running (no $RUN_DIR/admin.kubeconfig); run: hack/control-plane.sh up"
  echo "export KUBECONFIG=$RUN_DIR/admin.kubeconfig"
  echo "export PATH=$BIN_DIR:\$PATH"
}

cmd_status() {
  if pid_alive "$RUN_DIR/kube-apiserver.pid"; then
    echo "running: https://127.0.0.1:$(cat "$RUN_DIR/apiserver.port") (run dir $RUN_DIR)"
  else
    echo "not running"; return 1
  fi
}

case "${1:-}" in
  build) cmd_build ;;
  up) cmd_up ;;
  down) cmd_down ;;
  env) cmd_env ;;
  status) cmd_status ;;
  restart-apiserver) stop_pidfile "$RUN_DIR/kube-apiserver.pid"; start_apiserver ;;
  bin-dir) echo "$BIN_DIR" ;;
  *) echo "usage: $0 build|up|down|env|status|restart-apiserver|bin-dir" >&2; exit 2 ;;
esac
