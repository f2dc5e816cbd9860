#!/usr/bin/env bash
# AWS: S3 -> EventBridge rule -> API destination (imagedrop's /events, token as X-API-Key).
source "$(dirname "$0")/../_common.sh"

need BUCKET "the bucket to watch"
need IMAGEDROP_URL "imagedrop's public https:// base URL"
need IMAGEDROP_INTAKE_TOKEN "the same value imagedrop has"
check_token
need_tool aws "the AWS CLI v2, signed in to the bucket's account and region"
NAME="${NAME:-imagedrop}"

# 1. The bucket sends all its events to EventBridge (this REPLACES its notification config).
aws s3api put-bucket-notification-configuration --bucket "${BUCKET}" \
  --notification-configuration '{"EventBridgeConfiguration": {}}'

# 2. A connection holding the token, and the API destination that uses it.
auth="{\"ApiKeyAuthParameters\": {\"ApiKeyName\": \"X-API-Key\", \"ApiKeyValue\": \"${IMAGEDROP_INTAKE_TOKEN}\"}}"
connection="$(aws events create-connection --name "${NAME}" --authorization-type API_KEY \
  --auth-parameters "${auth}" --query ConnectionArn --output text)"
destination="$(aws events create-api-destination --name "${NAME}" \
  --connection-arn "${connection}" --invocation-endpoint "${IMAGEDROP_URL%/}/events" \
  --http-method POST --invocation-rate-limit-per-second "${RATE:-50}" \
  --query ApiDestinationArn --output text)"

# 3. A role EventBridge assumes to call the destination.
trust='{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "Action": "sts:AssumeRole"}]}'
role="$(aws iam create-role --role-name "${NAME}-eventbridge" \
  --assume-role-policy-document "${trust}" --query Role.Arn --output text)"
invoke="{\"Version\": \"2012-10-17\", \"Statement\": [{\"Effect\": \"Allow\", \"Action\": \"events:InvokeApiDestination\", \"Resource\": \"${destination}\"}]}"
aws iam put-role-policy --role-name "${NAME}-eventbridge" --policy-name invoke-imagedrop \
  --policy-document "${invoke}"

# 4. The rule: Object Created in this bucket, under PREFIX.
pattern="{\"source\": [\"aws.s3\"], \"detail-type\": [\"Object Created\"], \"detail\": {\"bucket\": {\"name\": [\"${BUCKET}\"]}, \"object\": {\"key\": [{\"prefix\": \"${PREFIX:-}\"}]}}}"
aws events put-rule --name "${NAME}-drops" --event-pattern "${pattern}"
aws events put-targets --rule "${NAME}-drops" \
  --targets "Id=imagedrop,Arn=${destination},RoleArn=${role}"

# 5. Verify: the rule targets the destination, and imagedrop accepts an EventBridge event.
aws events list-targets-by-rule --rule "${NAME}-drops"
run_check "${IMAGEDROP_URL}" aws-eventbridge
