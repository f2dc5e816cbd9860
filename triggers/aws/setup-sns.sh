#!/usr/bin/env bash
# AWS: S3 -> SNS topic -> HTTPS subscription to imagedrop's /events (confirmed by imagedrop).
source "$(dirname "$0")/../_common.sh"

need BUCKET "the bucket to watch"
need IMAGEDROP_URL "imagedrop's public https:// base URL (SNS needs a trusted certificate)"
need IMAGEDROP_INTAKE_TOKEN "the same value imagedrop has"
check_token
need_tool aws "the AWS CLI v2, signed in to the bucket's account and region"
TOPIC="${TOPIC:-imagedrop-drops}"

# 1. A topic that only this bucket (in this account) may publish to.
arn="$(aws sns create-topic --name "${TOPIC}" --query TopicArn --output text)"
account="$(aws sts get-caller-identity --query Account --output text)"
policy="{\"Version\": \"2012-10-17\", \"Statement\": [{\"Effect\": \"Allow\", \"Principal\": {\"Service\": \"s3.amazonaws.com\"}, \"Action\": \"SNS:Publish\", \"Resource\": \"${arn}\", \"Condition\": {\"ArnLike\": {\"aws:SourceArn\": \"arn:aws:s3:::${BUCKET}\"}, \"StringEquals\": {\"aws:SourceAccount\": \"${account}\"}}}]}"
aws sns set-topic-attributes --topic-arn "${arn}" --attribute-name Policy \
  --attribute-value "${policy}"

# 2. imagedrop as an HTTPS subscriber; it confirms the subscription itself (it fetches the
#    SubscribeURL when that points at sns.<region>.amazonaws.com).
aws sns subscribe --topic-arn "${arn}" --protocol https \
  --notification-endpoint "${IMAGEDROP_URL%/}/events?token=${IMAGEDROP_INTAKE_TOKEN}"

# 3. The bucket notification (this REPLACES the bucket's notification configuration). S3 sends
#    an s3:TestEvent at once; imagedrop acknowledges and ignores it.
config="{\"TopicConfigurations\": [{\"Id\": \"imagedrop\", \"TopicArn\": \"${arn}\", \"Events\": [\"s3:ObjectCreated:*\"], \"Filter\": {\"Key\": {\"FilterRules\": [{\"Name\": \"prefix\", \"Value\": \"${PREFIX:-}\"}]}}}]}"
aws s3api put-bucket-notification-configuration --bucket "${BUCKET}" \
  --notification-configuration "${config}"

# 4. Verify: the subscription is confirmed (no PendingConfirmation), imagedrop accepts SNS.
aws sns list-subscriptions-by-topic --topic-arn "${arn}" \
  --query 'Subscriptions[].SubscriptionArn' --output text
run_check "${IMAGEDROP_URL}" aws-sns
