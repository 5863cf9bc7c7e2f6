#!/usr/bin/env bash
# promtool, pinned, built from the Go module proxy into the cache (never into the repository).
#
#   hack/promtool.sh build        build (or reuse) promtool; prints its path on stdout
#   hack/promtool.sh path         print the path promtool is (or would be) built at
#   hack/promtool.sh ARGS...      build if needed, then run promtool ARGS...
#
# Environment: PADDLE_KUSCIA_CACHE (cache root, default ~/.cache/paddle-kuscia); BUILD_PARALLELISM
# (go build -p, default: the number of cores).
set -euo pipefail

HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$HACK_DIR/versions.env"

CACHE_ROOT=${PADDLE_KUSCIA_CACHE:-$HOME/.cache/paddle-kuscia}
BIN_DIR="$CACHE_ROOT/bin/promtool-v${PROMETHEUS_MODULE_VERSION}"
PROMTOOL="$BIN_DIR/promtool"

log() { printf '[promtool] %s\n' "$*" >&2; }
die() { printf '[promtool] ERROR: %s\n' "$*" >&2; exit 1; }

# shellcheck source=lib.sh
source "$HACK_DIR/lib.sh"

build_promtool() {
  local work=$1
  mkdir -p "$work/promtool" && cd "$work/promtool"
  go mod init local/promtoolbin >/dev/null 2>&1
  go get "github.com/prometheus/prometheus/cmd/promtool@v$PROMETHEUS_MODULE_VERSION"
  go build -trimpath -ldflags "-s -w" -o "$PROMTOOL.tmp" github.com/prometheus/prometheus/cmd/promtool
  mv "$PROMTOOL.tmp" "$PROMTOOL"
}

cmd_build() {
  if [[ -x "$PROMTOOL" ]]; then
    echo "$PROMTOOL"
    return
  fi
  go_build_env promtool
  mkdir -p "$BIN_DIR"
  log "building promtool from github.com/prometheus/prometheus@v$PROMETHEUS_MODULE_VERSION into $BIN_DIR"
  local work
  work=$(mktemp -d)
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" EXIT
  with_progress "promtool-v$PROMETHEUS_MODULE_VERSION" build_promtool "$work"
  [[ -x "$PROMTOOL" ]] || die "build finished but $PROMTOOL is missing"
  echo "$PROMTOOL"
}

case "${1:-}" in
  build) cmd_build ;;
  path) echo "$PROMTOOL" ;;
  "") die "usage: hack/promtool.sh build | path | ARGS..." ;;
  *) cmd_build >/dev/null && exec "$PROMTOOL" "$@" ;;
esac
