# shellcheck shell=bash
# Shell helpers shared by the build scripts in hack/ (sourced; expects log, die and CACHE_ROOT).

# Builds from the Go module proxy only, with the local toolchain, as static binaries.
go_build_env() { # what
  command -v go >/dev/null || die "Go is not installed; $1 is built from the Go module proxy (Go >= 1.24 needed)"
  export GOTOOLCHAIN=local GOFLAGS="-mod=mod -p=${BUILD_PARALLELISM:-$(nproc)}" CGO_ENABLED=0
}

# One build of a kind at a time per cache: a second caller waits here, then finds the binaries built.
take_build_lock() { # name
  exec {BUILD_LOCK_FD}>>"$CACHE_ROOT/.build-$1.lock"
  flock "$BUILD_LOCK_FD"
}

# Processes started after this must not inherit (and hold) the lock.
release_build_lock() { exec {BUILD_LOCK_FD}>&-; }

# Run a long build step in the background with a progress line every 15 s, so a cold build does not look hung.
with_progress() {
  local what=$1; shift
  local logfile="$CACHE_ROOT/build-logs/$what.log"
  mkdir -p "$(dirname "$logfile")"
  local start=$SECONDS
  "$@" >"$logfile" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 15 &
    wait $! || true
    kill -0 "$pid" 2>/dev/null && log "... still building $what ($((SECONDS - start)) s so far; log: $logfile)"
  done
  if ! wait "$pid"; then
    tail -n 40 "$logfile" >&2
    die "building $what failed after $((SECONDS - start)) s (full log: $logfile)"
  fi
  log "built $what in $((SECONDS - start)) s"
}

pid_alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Stop the process whose PID the file names (TERM, then KILL after 15 s) and remove the file.
stop_pidfile() {
  local f=$1
  if pid_alive "$f"; then
    local pid; pid=$(cat "$f")
    kill "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 15))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}
