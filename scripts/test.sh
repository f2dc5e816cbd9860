#!/usr/bin/env bash
# Set up (venv + test extras) and run the whole test suite. Used by .ci/run and by people.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip >/dev/null
.venv/bin/python -m pip install --quiet -e '.[dev]'
.venv/bin/ruff check src tests bench
exec .venv/bin/python -m pytest -q "$@"
