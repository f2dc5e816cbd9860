# Shared by the setup scripts: fail early, with the name of what is missing.
# shellcheck shell=bash
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

need() {  # need VAR "what it is": stop with a clear message when VAR is unset or empty
  if [[ -z "${!1:-}" ]]; then
    echo "error: set $1 ($2)" >&2
    exit 2
  fi
}

need_tool() {
  command -v "$1" >/dev/null 2>&1 || { echo "error: '$1' is not installed ($2)" >&2; exit 2; }
}

check_token() {  # the token travels in URLs and headers: keep it URL-safe
  if [[ ! "${IMAGEDROP_INTAKE_TOKEN}" =~ ^[A-Za-z0-9._~-]{16,}$ ]]; then
    echo "error: IMAGEDROP_INTAKE_TOKEN must be 16+ URL-safe characters; make one with" >&2
    echo "  python3 -c 'import secrets; print(secrets.token_urlsafe(32))'" >&2
    exit 2
  fi
}

run_check() {  # run_check URL PRODUCER: the local check against the running imagedrop
  python3 "${here}/../check.py" --url "$1" --token "${IMAGEDROP_INTAKE_TOKEN}" \
    --bucket "${BUCKET}" --producer "$2"
}
