#!/usr/bin/env bash
# Ceph RGW: a persistent topic pushing to imagedrop's /events, and a bucket notification on it.
source "$(dirname "$0")/../_common.sh"

need RGW_ENDPOINT "the RGW S3 endpoint, e.g. https://rgw.example.com"
need BUCKET "the bucket to watch"
need IMAGEDROP_URL "imagedrop's base URL as RGW reaches it"
need IMAGEDROP_INTAKE_TOKEN "the same value imagedrop has"
check_token
need_tool aws "the AWS CLI, with the RGW user's keys in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
TOPIC="${TOPIC:-imagedrop}"
rgw=(aws --endpoint-url "${RGW_ENDPOINT}")

# 1. The topic. persistent=true queues each notification in RGW and retries it until imagedrop
#    acknowledges it, so uploads never wait on imagedrop. The token rides in the URL's query.
push="${IMAGEDROP_URL%/}/events?token=${IMAGEDROP_INTAKE_TOKEN}"
attributes="{\"push-endpoint\": \"${push}\", \"persistent\": \"true\", \"verify-ssl\": \"${VERIFY_SSL:-true}\", \"cloudevents\": \"false\"}"
arn="$("${rgw[@]}" sns create-topic --name "${TOPIC}" --attributes "${attributes}" \
  --query TopicArn --output text)"

# 2. The bucket notification (this REPLACES the bucket's notification configuration).
config="{\"TopicConfigurations\": [{\"Id\": \"imagedrop\", \"TopicArn\": \"${arn}\", \"Events\": [\"s3:ObjectCreated:*\"], \"Filter\": {\"Key\": {\"FilterRules\": [{\"Name\": \"prefix\", \"Value\": \"${PREFIX:-}\"}]}}}]}"
"${rgw[@]}" s3api put-bucket-notification-configuration --bucket "${BUCKET}" \
  --notification-configuration "${config}"

# 3. Verify: the notification is stored, and imagedrop accepts a Ceph notification.
"${rgw[@]}" s3api get-bucket-notification-configuration --bucket "${BUCKET}"
run_check "${IMAGEDROP_URL}" ceph
