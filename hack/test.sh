#!/usr/bin/env bash
# Set everything up, then run every check and test: lint, format, layering contract, CRD freshness,
# unit tests and integration tests against a real local control plane.
#   hack/test.sh                 everything
#   hack/test.sh -k canary       extra arguments go to pytest
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
start=$SECONDS

hack/setup.sh

echo "[test] ruff" >&2
.venv/bin/ruff check operator tests hack
.venv/bin/ruff format --check operator tests hack
echo "[test] import-linter (pure layers stay free of kopf, httpx and the kubernetes client)" >&2
.venv/bin/lint-imports
echo "[test] mypy --strict on operator/ (overrides in pyproject.toml)" >&2
.venv/bin/mypy
echo "[test] crds/ is what the models generate" >&2
.venv/bin/python hack/gen-crds.py --check
echo "[test] manifests/argocd health checks are what hack/argocd-health generates" >&2
.venv/bin/python hack/gen-argocd-health.py --check
if command -v shellcheck >/dev/null; then
  echo "[test] shellcheck" >&2
  shellcheck -x -P hack hack/*.sh
fi

echo "[test] pytest" >&2
set +e
.venv/bin/pytest tests -p no:cacheprovider -ra "$@"
code=$?
set -e
echo "[test] finished in $((SECONDS - start)) s with exit code $code" >&2
exit $code
