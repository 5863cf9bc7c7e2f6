#!/usr/bin/env bash
# Install the command-line tools the test suite needs that pip cannot provide (today: shellcheck).
# Idempotent and non-interactive: tools already on PATH are left alone, so it is safe to run before
# every test run. Uses apt-get (Debian/Ubuntu); elsewhere it says what to install instead.
set -euo pipefail

log() { printf '[install-tools] %s\n' "$*" >&2; }
die() { printf '[install-tools] ERROR: %s\n' "$*" >&2; exit 1; }

# command -> Debian package
declare -A PACKAGES=(
  [shellcheck]=shellcheck
)

missing=()
for tool in "${!PACKAGES[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${PACKAGES[$tool]}")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

command -v apt-get >/dev/null 2>&1 \
  || die "apt-get not found; install these packages with your package manager: ${missing[*]}"

sudo=()
if ((EUID != 0)); then
  command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to apt-get install: ${missing[*]}"
  sudo=(sudo --non-interactive)
fi

export DEBIAN_FRONTEND=noninteractive
log "installing: ${missing[*]}"
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

for tool in "${!PACKAGES[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is still missing after installing ${PACKAGES[$tool]}"
done
log "installed: ${missing[*]}"
