# shellcheck shell=bash
# Shell helpers shared by hack/control-plane.sh and hack/knative.sh (sourced; expects log, die and CACHE_ROOT).

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
