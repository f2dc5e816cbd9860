#!/usr/bin/env bash
# IBM Code Engine: deliver COS object writes to imagedrop's /events (see README.md here).
source "$(dirname "$0")/../_common.sh"

need CE_PROJECT "the Code Engine project that runs imagedrop"
need COS_INSTANCE "the name of the COS service instance that holds the bucket"
need BUCKET "a regional bucket in the project's region"
need IMAGEDROP_INTAKE_TOKEN "the same value the imagedrop app has"
check_token
need_tool ibmcloud "https://cloud.ibm.com/docs/cli, then: ibmcloud plugin install code-engine"
APP="${APP:-imagedrop}"
SUBSCRIPTION="${SUBSCRIPTION:-${APP}-drops}"

ibmcloud ce project select --name "${CE_PROJECT}"

# 1. Code Engine may create notifications on the COS instance (once per project and instance).
ibmcloud iam authorization-policy-create codeengine cloud-object-storage \
  "Notifications Manager" \
  --source-service-instance-name "${CE_PROJECT}" \
  --target-service-instance-name "${COS_INSTANCE}" \
  || echo "note: not created; if it exists already, 'ibmcloud iam authorization-policies' lists it"

# 2. The subscription: writes only, to /events, the intake token as a CloudEvents extension
#    (it arrives as the ce-token header). Prefix and suffix are literal strings, no wildcards.
filters=()
[[ -n "${PREFIX:-}" ]] && filters+=(--prefix "${PREFIX}")
[[ -n "${SUFFIX:-}" ]] && filters+=(--suffix "${SUFFIX}")
ibmcloud ce subscription cos create --name "${SUBSCRIPTION}" \
  --destination-type app --destination "${APP}" --path /events \
  --bucket "${BUCKET}" --event-type write "${filters[@]}" \
  --extension "token=${IMAGEDROP_INTAKE_TOKEN}" --wait

# 3. Verify: the subscription is Ready, and imagedrop accepts a Code Engine notification.
ibmcloud ce subscription cos get --name "${SUBSCRIPTION}"
run_check "$(ibmcloud ce application get --name "${APP}" --output url)" code-engine
