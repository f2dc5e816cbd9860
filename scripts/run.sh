#!/usr/bin/env bash
# Set up (venv) and run imagedrop on the embedded default: local folder ./imagedrop-data, SQLite,
# the local Pillow provider unless OPENAI_API_KEY is set. Extra arguments go to `imagedrop serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip >/dev/null
.venv/bin/python -m pip install --quiet -e .
exec .venv/bin/imagedrop serve "$@"
