"""The API's registry as data: every route (`ROUTES`) and subscriber webhook (`WEBHOOKS`) with
its texts. Adding an endpoint is one `Route(...)` entry; `openapi.build_openapi` renders them.
"""

from __future__ import annotations

from imagedrop.payloads import (
    B64Completed,
    BatchCompletedEvent,
    BatchSummary,
    BudgetReachedEvent,
    CosCompleted,
    DeliveryExhaustedEvent,
    ImageCompletedEvent,
    ImageFailed,
    ImageFailedEvent,
    TestEvent,
)
from imagedrop.web.apispec import Param, Route, Webhook, async_route
from imagedrop.web.drop_models import (
    EventsResult,
    ReplayRequest,
    ReplayResult,
    TriggerAccepted,
    TriggerEstimate,
    TriggerRequest,
)
from imagedrop.web.listing_models import (
    MAX_LIMIT,
    DeliveryPage,
    JobPage,
    SubscriberChanged,
    SubscriberPage,
    SubscriberRequest,
    TestResult,
)
from imagedrop.web.models import BatchRequest, CosConfig, Health, ImageRequest, Ready
from imagedrop.web.status import BatchStatus, JobStatus

_JSON = "application/json"


def _query(name: str, description: str, kind: str = "string") -> Param:
    return Param(name, "query", description, {"type": kind}, required=False)

_BINARY = {"schema": {"type": "string", "format": "binary"}}
_ANY_JSON = {"type": "object", "additionalProperties": True,
             "description": "A notification in any supported producer's format."}

ROUTES: tuple[Route, ...] = (
    async_route(
        "/process-image-async-b64", "processImageAsyncToBase64",
        "Edit one image; result returned as base64",
        "Edits one base64-encoded image with the given prompt. Answers 202 with a job id at "
        "once; when the edit is done, POSTs the edited image (base64) or the failure reason "
        "to the callbackUrl header.",
        request=ImageRequest, callback=(B64Completed, ImageFailed), image=True,
        callback_description="The edited image as base64 (status completed), or why it "
                             "failed (status failed).",
    ),
    async_route(
        "/process-image-async", "processImageAsyncToCos",
        "Edit one image; result stored with a download link",
        "Edits one base64-encoded image with the given prompt and stores the result in the "
        "output bucket. Answers 202 with a job id at once; when the edit is done, POSTs the "
        "object key and a presigned download URL, or the failure reason, to the callbackUrl "
        "header.",
        request=ImageRequest, callback=(CosCompleted, ImageFailed), image=True,
        callback_description="Where the edited image is stored and a presigned URL to it "
                             "(status completed), or why it failed (status failed).",
    ),
    async_route(
        "/batch-process-images", "batchProcessImages",
        "Edit every image in a folder",
        "Edits every image under a bucket folder (default: the configured input bucket and "
        "prefix) with the given prompt and writes the results to the output folder. Answers "
        "202 with the batch id at once; when every image is done, POSTs one summary with "
        "counts and up to 20 error messages to the callbackUrl header.",
        request=BatchRequest, callback=(BatchSummary,), image=False,
        callback_description="Summary of the whole folder: counts, output location, errors.",
    ),
    Route(
        "get", "/health", "getHealth", "Liveness check",
        "Answers {\"ok\": true} while the process serves. Needs no credentials and touches "
        "neither storage nor the database.", "service", ok=(Health,), public=True,
    ),
    Route(
        "get", "/cos/config", "getCosConfig", "Storage configuration",
        "Shows where images are read and written: storage kind, endpoint, region, input and "
        "output buckets and prefixes, and how long presigned URLs last. Never shows a "
        "credential.", "service", ok=(CosConfig,),
    ),
    Route(
        "get", "/jobs/{job_id}", "getJob", "Job or batch status",
        "Shows a job's state, attempts, timings, input, result location, error and callback "
        "deliveries; for a batch id, the batch's progress and, once finished, its summary.",
        "jobs", ok=(JobStatus, BatchStatus),
        params=(Param("job_id", "path", "A job id or batch id from a 202 answer.",
                      {"type": "string"}),),
        errors=((404, "No job or batch has this id."),),
    ),
    Route(
        "get", "/ready", "getReady", "Readiness check",
        "Answers 200 when the ledger answers a query and the storage a cheap listing, each "
        "within IMAGEDROP_READY_TIMEOUT seconds; else 503 with what failed. For readiness "
        "probes (GET /health is the liveness probe). Needs no credentials.", "service",
        ok=(Ready,), public=True,
        errors=((503, "The ledger or the storage did not answer: `failed` says which and why."),),
    ),
    Route(
        "get", "/metrics", "getMetrics", "Prometheus metrics",
        "Prometheus text format: imagedrop_jobs_total, imagedrop_jobs_queued, "
        "imagedrop_provider_request_seconds, imagedrop_deliveries_total, "
        "imagedrop_notifications_total, imagedrop_provider_paused, "
        "imagedrop_provider_cost_usd_total and the process collector. Behind the API keys "
        "unless IMAGEDROP_METRICS_PUBLIC=1.", "service",
        ok_description="The metrics, in the Prometheus text exposition format.",
        ok_content={"text/plain": {"schema": {"type": "string"}}},
    ),
    Route(
        "get", "/jobs", "listJobs", "List jobs",
        "Jobs, newest first, a page at a time: filter by state, kind, input bucket, key "
        "prefix, batch and time; pass the answer's `next` as `after` for the next page.",
        "jobs", ok=(JobPage,),
        params=(
            _query("state", "queued, running, held, completed or failed."),
            _query("kind", "b64, cos, batch or drop."),
            _query("bucket", "Bucket of the input."),
            _query("prefix", "The input key starts with this (literally)."),
            _query("batch_id", "Jobs of one batch."),
            _query("since", "Recorded at or after: ISO 8601 or Unix seconds."),
            _query("after", "The `next` cursor of the previous page."),
            _query("limit", f"Jobs per page, 1 to {MAX_LIMIT} (default 50).", "integer"),
        ),
        errors=((400, "A filter is unknown or has a bad value, or the cursor is not one this "
                      "listing gave out; `error` says which."),),
    ),
    Route(
        "get", "/deliveries", "listDeliveries", "List callback deliveries",
        "Callback and subscriber deliveries, newest first, each with every attempt (time, "
        "HTTP status, error, duration): filter by state, endpoint URL, job and time.",
        "jobs", ok=(DeliveryPage,),
        params=(
            _query("state", "pending, delivered, failed or disabled."),
            _query("url", "Deliveries to this endpoint."),
            _query("job_id", "Deliveries of one job."),
            _query("since", "Recorded at or after: ISO 8601 or Unix seconds."),
            _query("after", "The `next` cursor of the previous page."),
            _query("limit", f"Deliveries per page, 1 to {MAX_LIMIT} (default 50).", "integer"),
        ),
        errors=((400, "A filter is unknown or has a bad value, or the cursor is not one this "
                      "listing gave out; `error` says which."),),
    ),
    Route(
        "get", "/subscribers", "listSubscribers", "List subscribers",
        "Every subscriber URL events were sent to (or that is disabled), by URL: active, "
        "failing (its latest outcome is a failure or a retry) or disabled (410 Gone, or an "
        "operator), with counts and its latest success and failure.", "subscribers",
        ok=(SubscriberPage,),
        params=(_query("after", "The `next` cursor of the previous page."),
                _query("limit", f"Subscribers per page, 1 to {MAX_LIMIT} (default 100).",
                       "integer")),
        errors=((400, "A parameter is unknown or has a bad value."),),
    ),
    Route(
        "post", "/subscribers/disable", "disableSubscriber", "Stop sending to a subscriber",
        "No new event goes to this URL until it is enabled again (or a replay names it).",
        "subscribers", ok=(SubscriberChanged,), request=SubscriberRequest,
        errors=((422, "The body has no valid `url`."),),
    ),
    Route(
        "post", "/subscribers/enable", "enableSubscriber", "Send to a subscriber again",
        "Events go to this URL again; deliveries that failed meanwhile stay failed (replay them "
        "with POST /replay {\"url\": …, \"since\": …}).", "subscribers",
        ok=(SubscriberChanged,), request=SubscriberRequest,
        errors=((422, "The body has no valid `url`."),),
    ),
    Route(
        "post", "/subscribers/test", "testSubscriber", "Send a test event",
        "Sends a signed imagedrop.test event to the URL now (signed with the secret its latest "
        "event was signed with, if any), under the same address rules as every event, and "
        "answers with what the receiver said. Nothing is recorded.", "subscribers",
        ok=(TestResult,), request=SubscriberRequest,
        errors=((422, "The body has no valid `url`."),
                (503, "This process runs no callback delivery.")),
    ),
    Route(
        "get", "/openapi.json", "getOpenApi", "This OpenAPI document",
        "Returns the OpenAPI 3.0 document of the whole API, as importable by watsonx "
        "Orchestrate (one server URL, async tools with callbacks).", "service",
        ok_description="The OpenAPI document.",
        ok_content={_JSON: {"schema": {"type": "object", "additionalProperties": True}}},
    ),
    Route(
        "get", "/files/{bucket}/{key}", "downloadFile", "Download a result (signed link)",
        "Local-folder mode's stand-in for a presigned URL: serves a stored object when the link "
        "carries a valid, unexpired signature. Needs no other credentials. The key may contain "
        "'/' (it is not escaped).", "files", public=True,
        ok_description="The object's bytes.",
        ok_content={"image/*": _BINARY, "application/octet-stream": _BINARY},
        params=(
            Param("bucket", "path", "Bucket (a folder in local mode).", {"type": "string"}),
            Param("key", "path", "Object key; may contain '/'.", {"type": "string"}),
            Param("expires", "query", "Expiry time of the link, Unix seconds.",
                  {"type": "integer", "format": "int64"}),
            Param("sig", "query", "Signature over bucket, key and expires.", {"type": "string"}),
        ),
        errors=((403, "The signature is missing, wrong or expired."),
                (404, "No such object.")),
    ),
    async_route(
        "/trigger", "triggerFolder", "Process a folder now",
        "Edits every image under a bucket folder now, as the folder's manifest (the nearest "
        "imagedrop.yaml at or above it) says: prompt, provider options, output location, "
        "subscribers. Body fields override the manifest's; `prompt` is required when no "
        "manifest governs the folder. An image version already edited with the same recipe "
        "is not edited again. Answers 202 with the batch id at once (GET /jobs/{batch_id} "
        "shows progress); when every image is final, POSTs the summary to the optional "
        "callbackUrl header and sends batch.completed to the manifest's subscribers.",
        request=TriggerRequest, callback=(BatchSummary,), image=False, tag="drops",
        callback_required=False, ok=(TriggerAccepted,),
        also=((200, TriggerEstimate, "`dry_run`: what a trigger would do and cost now; "
               "nothing was recorded, edited or sent."),),
        callback_description="Summary of the whole folder (with batch_id): counts, output "
                             "location, errors.",
        errors=((404, "The bucket does not exist, or nothing is stored under the folder."),
                (422, "The JSON body failed validation, or no manifest governs the folder and "
                      "the body gives no prompt; `error` names each field.")),
    ),
    Route(
        "post", "/replay", "replay", "Run jobs or callbacks again",
        "Queues final jobs again and/or makes failed callback deliveries pending again. Jobs "
        "are selected by `job_ids`, `batch_id` or folder (`bucket` + `prefix`); deliveries by "
        "`delivery_ids`, by endpoint (`url`, optionally `since` a time: every failed delivery "
        "to it), or with `redeliver` those of the selected jobs or batch. At most `limit` per "
        "call, oldest first; `more` says whether to call again. Failed jobs "
        "run again; completed ones only with `force` and `job_ids` (a fresh edit, not a reused "
        "result). A reopened batch sends a fresh summary. Answers with what was queued again "
        "(empty lists when nothing selected could run again).", "drops",
        ok=(ReplayResult,), ok_description="What was queued again.", request=ReplayRequest,
        errors=((400, "The body is not valid JSON or not a JSON object, or `bucket`/`prefix` "
                      "is a name the store cannot take; `field` names it."),
                (404, "No batch has the given batch_id."),
                (415, "The Content-Type is not application/json."),
                (422, "The body failed validation: no selector, `force` without `job_ids`, "
                      "more than 1000 ids, or a bad value; `error` says which.")),
    ),
    Route(
        "post", "/events", "receiveStoreEvents", "Receive storage notifications",
        "Intake for object-storage notifications: records one job per written image a "
        "notification announces, as the nearest manifest (imagedrop.yaml) of its folder says, "
        "and answers once the jobs are durably recorded. Producers, told apart from the "
        "request: IBM Code Engine COS subscriptions (CloudEvents binary mode: `ce-*` headers, "
        "type com.ibm.cloud.cos.document.write|delete); CloudEvents structured mode "
        "(application/cloudevents+json); S3 `Records[]` from AWS S3, MinIO and Ceph RGW; "
        "Amazon SNS envelopes (Notification; a SubscriptionConfirmation is confirmed); "
        "EventBridge `Object Created`. Deletes, unknown event types, non-images, manifests, "
        "outputs and images no manifest governs are acknowledged and listed in `ignored`. "
        "Duplicates and out-of-order notifications are harmless: one job per object version "
        "and recipe. Not guarded by the API keys: when the service has an intake token "
        "(IMAGEDROP_INTAKE_TOKEN) every notification must carry it as `Authorization: Bearer "
        "<token>` (MinIO's auth_token), a `ce-token` header (Code Engine `--extension "
        "token=...`) or `?token=` on the subscribed URL (SNS, Ceph); without one, an API key "
        "is accepted in the same places or as X-API-Key.", "drops",
        ok=(EventsResult,), ok_description="Acknowledged: the announced jobs are recorded.",
        request_content={
            _JSON: {"schema": _ANY_JSON}, "application/cloudevents+json": {"schema": _ANY_JSON},
            "text/plain": {"schema": {"type": "string",
                                      "description": "JSON sent as text (Amazon SNS)."}},
        },
        params=tuple(Param(f"ce-{name}", "header", text, {"type": "string"}, required=False)
                     for name, text in (
                         ("specversion", "CloudEvents binary mode: spec version (1.0)."),
                         ("type", "CloudEvents binary mode: event type, e.g. "
                                  "com.ibm.cloud.cos.document.write."),
                         ("source", "CloudEvents binary mode: event source."),
                         ("id", "CloudEvents binary mode: event id."))),
        errors=((400, "The body is not JSON, or fits no supported producer's format; `error` "
                      "says what is wrong."),
                (413, "The notification is larger than IMAGEDROP_MAX_EVENT_BYTES.")),
        intake_token=True,
    ),
    Route(
        "head", "/events", "probeEvents", "Intake liveness probe",
        "Answers 200 with no body: MinIO probes a webhook target with HEAD before sending "
        "notifications to it, with the same auth token it sends them with. Takes the same "
        "credentials as POST /events: without the intake token (when one is required) the "
        "answer is 401, so a probe never tells a stranger whether the intake is open.",
        "drops", ok_description="The intake is there and the token is right.", ok_content={},
        intake_token=True,
    ),
)


WEBHOOKS: tuple[Webhook, ...] = (
    Webhook("image.completed", ImageCompletedEvent, "An image was edited",
            "An image was edited and stored: the job, its input, the manifest followed and "
            "where the result is (with a presigned URL when the store can make one)."),
    Webhook("image.failed", ImageFailedEvent, "An image could not be edited",
            "An image failed for good (retries are over, or the manifest is invalid): the job, "
            "its input and `error`."),
    Webhook("batch.completed", BatchCompletedEvent, "A folder batch finished",
            "Every image of a folder batch (dropped files settling together, or a trigger) is "
            "final: the batch summary, as /batch-process-images sends it, plus where it looked."),
    Webhook("budget.reached", BudgetReachedEvent, "A spend budget was reached",
            "Sent once per budget and UTC day, when an image is first kept from the provider "
            "by the folder's `budget` (or the service's): which budget, why, and whether its "
            "images wait for the next day (`resumes_at`) or fail."),
    Webhook("delivery.exhausted", DeliveryExhaustedEvent, "A delivery gave up (ops webhook)",
            "Sent to IMAGEDROP_OPS_WEBHOOK (signed with IMAGEDROP_OPS_WEBHOOK_SECRET, not a "
            "manifest's secret) when a callback or subscriber delivery used up its retry "
            "schedule: which delivery, where to, and its last answer."),
    Webhook("imagedrop.test", TestEvent, "A test event",
            "Sent by POST /subscribers/test: it changes nothing."),
)
