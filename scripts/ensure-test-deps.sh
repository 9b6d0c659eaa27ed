#!/usr/bin/env bash
# Installs what the test suite needs beyond Python packages, when missing:
# Debian's Chromium for the browser tests, and a running PostgreSQL.
# Needs nothing from .venv: `make test` runs it while it builds .venv (two installs that wait
# mostly on downloads and unpacking overlap instead of queueing; about a minute on a clean clone).
set -euo pipefail
PY="${PY:-python3}"

if ! command -v chromium >/dev/null 2>&1; then
  echo "ensure-test-deps: installing Debian chromium for browser tests" >&2
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
fi

if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  echo "ensure-test-deps: starting PostgreSQL" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi

# The released MLflow client in its own venv (benchmarks/.mlflow-venv), driven against Podstack
# by tests/mlflow_compat (issue 17); a no-op once it holds the pinned version. The system
# interpreter runs it (ensure_venv uses only the standard library).
"$PY" -c 'from benchmarks.mlflow_compare.mlflow_env import ensure_venv; ensure_venv()'

# The real OpenID provider of the single sign-on tests (oidc-provider under Node, pinned by
# tests/oidc/provider/package-lock.json); installed from the lock file when missing.
if [ ! -d tests/oidc/provider/node_modules/oidc-provider ]; then
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "ensure-test-deps: installing Node.js and npm for the single sign-on tests" >&2
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
    else
      sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
    fi
  fi
  echo "ensure-test-deps: npm ci in tests/oidc/provider" >&2
  (cd tests/oidc/provider && npm ci --no-audit --no-fund --loglevel=error)
fi

# KServe's published API model (the generated OpenAPI classes inside the `kserve` wheel from
# PyPI), against which tests/server/deployments checks every InferenceService we write. Only
# downloaded, never installed: the package's own dependencies would pin older psutil and
# protobuf than ours, and the checker needs just its model classes. The MLflow venv's pip fetches
# it (.venv may still be under construction).
kserve_wheels=.venv/kserve-wheel
if ! ls "$kserve_wheels"/kserve-0.21.0-*.whl >/dev/null 2>&1; then
  echo "ensure-test-deps: downloading the kserve 0.21.0 wheel (its API model, not installed)" >&2
  mkdir -p "$kserve_wheels"
  benchmarks/.mlflow-venv/bin/python -m pip download -q --disable-pip-version-check --no-deps \
    --only-binary=:all: -d "$kserve_wheels" kserve==0.21.0
fi
