#!/usr/bin/env bash
# The operator's main job on an embedded local setup, all on 127.0.0.1:
#   a real kube-apiserver + etcd + kube-controller-manager + kube-scheduler, Knative Serving's real controller,
#   webhook and autoscaler with pods on kwok's fake Node (hack/knative.sh), the Kuscia API emulator, and
#   `paddle-kuscia run` under its own ServiceAccount and ClusterRole (manifests/base).
# It applies manifests/samples into namespace `demo`, waits for every sample to be Ready, and prints them.
#
#   hack/demo.sh          set up (idempotent) and leave everything running
#   hack/demo.sh down     stop exactly what `hack/demo.sh` started (by PID) and remove its state
#   hack/demo.sh env      print the `export KUBECONFIG=...` line for kubectl
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
CACHE_ROOT=${PADDLE_KUSCIA_CACHE:-$HOME/.cache/paddle-kuscia}
export PK_RUN_DIR=${PK_DEMO_DIR:-$CACHE_ROOT/run/demo}
STATE="$PK_RUN_DIR/demo"
NS=demo
# shellcheck source=versions.env
source hack/versions.env

say() { printf '[demo] %s\n' "$*" >&2; }

stop_pid() { # name
  local f="$STATE/$1.pid"
  if [[ -f "$f" ]]; then
    local pid; pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      local deadline=$((SECONDS + 20))
      while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  fi
}

down() {
  for p in operator kuscia-sandbox; do stop_pid "$p"; done
  hack/control-plane.sh down
  say "stopped"
}

running() { [[ -f "$STATE/$1.pid" ]] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }

start_bg() { # name logfile command...
  local name=$1 logfile=$2; shift 2
  setsid "$@" >>"$logfile" 2>&1 < /dev/null &
  echo $! >"$STATE/$name.pid"
}

wait_file() { # file seconds what
  local deadline=$((SECONDS + $2))
  until [[ -s "$1" ]]; do
    ((SECONDS < deadline)) || { say "timed out waiting for $3"; exit 1; }
    sleep 0.2
  done
}

case "${1:-up}" in
  down) down; exit 0 ;;
  env) hack/control-plane.sh env; exit 0 ;;
  up) ;;
  *) echo "usage: $0 [up|down|env]" >&2; exit 2 ;;
esac

start=$SECONDS
hack/setup.sh
say "starting the control plane and Knative Serving (the first run builds them; a progress line every 15 s)"
hack/control-plane.sh up >/dev/null
eval "$(hack/control-plane.sh env)"
mkdir -p "$STATE"
say "control plane: Kubernetes $(kubectl version -o json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])'), knative.dev/serving v$KNATIVE_SERVING_VERSION"

# The operator's identity and permissions, exactly as manifests/base grants them.
kubectl apply -f manifests/base/clusterrole.yaml -f manifests/base/clusterrolebinding.yaml >/dev/null

if ! running kuscia-sandbox; then
  say "starting the Kuscia API emulator (mTLS + Token on 127.0.0.1)"
  rm -f "$STATE/kuscia.port" "$STATE/bfia.port"
  start_bg kuscia-sandbox "$STATE/kuscia-sandbox.log" .venv/bin/python hack/kuscia-sandbox \
    --certs-dir "$STATE/kuscia-certs" --port-file "$STATE/kuscia.port" --bfia-port-file "$STATE/bfia.port" \
    --step-seconds 1
  wait_file "$STATE/kuscia.port" 30 "the Kuscia emulator"
  wait_file "$STATE/bfia.port" 30 "the Kuscia emulator's BFIA port"
fi

if ! running operator; then
  say "starting the operator under ServiceAccount paddle-kuscia-system/paddle-kuscia-operator"
  start_bg operator "$STATE/operator.log" env KUBECONFIG="$PK_RUN_DIR/operator.kubeconfig" \
    .venv/bin/paddle-kuscia run --all-namespaces --standalone \
    --liveness=http://127.0.0.1:18080/healthz --metrics-port=19090 --metrics-address=127.0.0.1 \
    --kuscia-url "https://127.0.0.1:$(cat "$STATE/kuscia.port")" --kuscia-credentials-dir "$STATE/kuscia-certs" \
    --bfia-url "http://127.0.0.1:$(cat "$STATE/bfia.port")" --kuscia-poll-interval 2
fi

kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
say "applying manifests/samples into namespace $NS"
kubectl apply -n "$NS" -k manifests/samples

say "waiting for every sample to be Ready"
kubectl wait -n "$NS" --for=condition=Ready --timeout=180s paddleservices --all
kubectl wait -n "$NS" --for=condition=Ready --timeout=180s kusciadeployments --all
kubectl wait -n "$NS" --for=condition=Ready --timeout=180s kusciajobs --all

echo
kubectl get -n "$NS" paddleservices -o wide
echo
kubectl get -n "$NS" kusciadeployments,kusciajobs
echo
say "what Knative made of them: Services, Revisions, Routes, Deployments, and pods on kwok's fake Node"
kubectl get -n "$NS" ksvc,revisions,routes
echo
kubectl get -n "$NS" deployments,pods -o wide
echo
say "the canary sample's split, as Knative's Route reports it and as the PaddleService reports it:"
kubectl get route -n "$NS" paddleservice-canary-gpu -o jsonpath='{.status.traffic}'; echo
kubectl get ps -n "$NS" paddleservice-canary-gpu -o jsonpath='{.status.traffic}'; echo
echo
kubectl get -n "$NS" events --sort-by=.lastTimestamp | tail -n 25
echo
say "ready in $((SECONDS - start)) s. Try: eval \"\$(hack/demo.sh env)\"; kubectl describe ps -n $NS paddleservice-canary-gpu"
say "logs: $STATE/*.log; stop everything with: hack/demo.sh down"
