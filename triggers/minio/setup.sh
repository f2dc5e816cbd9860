#!/usr/bin/env bash
# MinIO: a webhook target named IMAGEDROP (minio.env) and a bucket rule that uses it.
source "$(dirname "$0")/../_common.sh"

need BUCKET "the bucket to watch"
need IMAGEDROP_URL "imagedrop's base URL as this machine reaches it, e.g. http://127.0.0.1:8080"
need IMAGEDROP_INTAKE_TOKEN "the same value as MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_IMAGEDROP"
check_token
need_tool mc "https://min.io/docs/minio/linux/reference/minio-mc.html"
ALIAS="${MINIO_ALIAS:-local}"
ARN="arn:minio:sqs::IMAGEDROP:webhook"

# 1. The target must exist (from minio.env at server start, or `mc admin config set`).
if ! mc admin config get "${ALIAS}" notify_webhook | grep -q "IMAGEDROP"; then
  echo "error: MinIO has no webhook target IMAGEDROP; start it with minio.env" >&2
  exit 1
fi

# 2. The rule: object writes under PREFIX (suffix optional; manifests filter images anyway).
filters=()
[[ -n "${PREFIX:-}" ]] && filters+=(--prefix "${PREFIX}")
[[ -n "${SUFFIX:-}" ]] && filters+=(--suffix "${SUFFIX}")
mc event add "${ALIAS}/${BUCKET}" "${ARN}" --event put "${filters[@]}"

# 3. Verify: the rule is there, and imagedrop answers MinIO's HEAD probe and its POST.
mc event ls "${ALIAS}/${BUCKET}" "${ARN}"
run_check "${IMAGEDROP_URL}" minio
