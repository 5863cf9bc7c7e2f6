#!/usr/bin/env bash
# Install everything the project needs (idempotent): a virtualenv with the operator and its test tools,
# the shell linter, the local control plane's binaries and promtool (built from the Go module proxy into a cache).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
  || { echo "Python >= 3.11 is required (found $("$PYTHON" --version 2>&1))" >&2; exit 1; }

stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [[ ! -f "$stamp" ]]; then
  echo "[setup] creating .venv and installing the operator with its test tools" >&2
  [[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
  rm -f .venv/.installed-* && touch "$stamp"
fi

if [[ -x hack/install-tools.sh ]]; then hack/install-tools.sh; fi
hack/control-plane.sh build
hack/promtool.sh build >/dev/null   # for the alert rules' tests (tests/unit/test_monitoring.py)
