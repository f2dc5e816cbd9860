"""The OpenAPI 3.0.3 document of the HTTP API (GET /openapi.json), built from the pydantic models.

Routes are data (`Route`, `ROUTES`): adding an endpoint is one `Route(...)` entry; subscriber
webhooks (`WEBHOOKS`) go under `x-webhooks` (3.0 has no `webhooks`). The document follows watsonx
Orchestrate's async-tool rules: a `callbackUrl` header, callbacks keyed
`{$request.header.callbackUrl}`, one server URL, an operationId and description everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from imagedrop.web.drop_models import (
    BatchCompletedEvent,
    EventsResult,
    ImageCompletedEvent,
    ImageFailedEvent,
    ReplayRequest,
    ReplayResult,
    TriggerAccepted,
    TriggerRequest,
)
from imagedrop.web.jsonschema30 import to_openapi30
from imagedrop.web.models import (
    Accepted,
    B64Completed,
    BatchRequest,
    BatchSummary,
    CosCompleted,
    CosConfig,
    ErrorBody,
    Health,
    ImageFailed,
    ImageRequest,
)
from imagedrop.web.status import BatchStatus, JobStatus

OPENAPI_VERSION = "3.0.3"
CALLBACK_EXPRESSION = "{$request.header.callbackUrl}"
_COMPONENTS = "#/components/schemas/"
_JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Param:
    """A path, query or header parameter."""

    name: str
    location: str  # "path" | "query" | "header"
    description: str
    schema: dict[str, Any]
    required: bool = True


@dataclass(frozen=True, slots=True)
class Route:
    """One operation of the API, as data.

    `ok` is the success response's models (several: one of them), or raw `ok_content` (`{}`:
    no body). `request_content` is a raw request body, for bodies no model describes.
    `callback` lists the payload models POSTed to the `callbackUrl` header later (several: one
    of them); a route with a callback gets the header (`callback_required`) automatically.
    `errors` are (status, when it happens); 401 is added to every non-public route when auth is on.
    `intake_token`: the route takes the notification intake token (`INTAKE_SCHEMES`), not the
    API keys.
    """

    method: str
    path: str
    operation_id: str
    summary: str
    description: str
    tag: str
    ok_status: int = 200
    ok: tuple[type[BaseModel], ...] = ()
    ok_description: str = "OK."
    ok_content: dict[str, Any] | None = None
    request: type[BaseModel] | None = None
    request_content: dict[str, Any] | None = None
    params: tuple[Param, ...] = ()
    errors: tuple[tuple[int, str], ...] = ()
    callback: tuple[type[BaseModel], ...] = ()
    callback_description: str = ""
    callback_required: bool = True
    public: bool = False  # no credentials needed (security: [])
    intake_token: bool = False


@dataclass(frozen=True, slots=True)
class Webhook:
    """One subscriber event type, documented under the top-level `x-webhooks`."""

    event_type: str
    model: type[BaseModel]
    summary: str
    description: str


CALLBACK_HEADER_DESCRIPTION = (
    "URL the result is POSTed to (JSON) when the work is done. Must be http(s); private and "
    "loopback addresses are refused unless the service allows them."
)

def async_errors(*, image: bool, callback_required: bool = True
                 ) -> tuple[tuple[int, str], ...]:
    """The 4xx answers of an async tool endpoint; all are given before anything is queued."""
    img = "`image_base64` is not valid base64 or not a PNG/JPEG/WebP image, " if image else ""
    missing = "is missing or " if callback_required else "(optional) "
    return (
        (400, f"The body is not valid JSON or not a JSON object, {img}or the `callbackUrl` "
              f"header {missing}is not an allowed http(s) URL."),
        (413, "The request body is larger than the service accepts"
              + (", or the image has too many bytes or pixels." if image else ".")),
        (415, "The Content-Type is not application/json."),
        (422, "The JSON body failed validation (a required field is missing or a value is out "
              "of range); `error` names each field and `detail` lists them."),
    )


def async_route(path: str, operation_id: str, summary: str, description: str, *,
                request: type[BaseModel], callback: tuple[type[BaseModel], ...],
                callback_description: str, image: bool, tag: str = "wxo",
                callback_required: bool = True, ok: tuple[type[BaseModel], ...] = (Accepted,),
                errors: tuple[tuple[int, str], ...] = ()) -> Route:
    """A WXO async tool endpoint: JSON in, 202 `ok` now, one callback POST later.

    `errors` are added to (or replace, by status) the usual 4xx answers.
    """
    usual = dict(async_errors(image=image, callback_required=callback_required))
    return Route(
        "post", path, operation_id, summary, description, tag, ok_status=202, ok=ok,
        ok_description="Accepted: the work is recorded; the result is POSTed to callbackUrl.",
        request=request, errors=tuple(sorted((usual | dict(errors)).items())), callback=callback,
        callback_description=callback_description, callback_required=callback_required,
    )


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
        "`delivery_ids`, or with `redeliver` those of the selected jobs or batch. Failed jobs "
        "run again; completed ones only with `force` and `job_ids` (a fresh edit, not a reused "
        "result). A reopened batch sends a fresh summary. Answers with what was queued again "
        "(empty lists when nothing selected could run again).", "drops",
        ok=(ReplayResult,), ok_description="What was queued again.", request=ReplayRequest,
        errors=((400, "The body is not valid JSON or not a JSON object."),
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
        "notifications to it. Needs no credentials.", "drops",
        ok_description="The intake is there.", ok_content={}, public=True,
    ),
)

INTAKE_SCHEMES: dict[str, dict[str, Any]] = {
    "intakeBearer": {"type": "http", "scheme": "bearer",
                     "description": "The intake token as `Authorization: Bearer <token>`."},
    "intakeTokenHeader": {"type": "apiKey", "in": "header", "name": "ce-token",
                          "description": "The intake token in a `ce-token` header."},
    "intakeTokenQuery": {"type": "apiKey", "in": "query", "name": "token",
                         "description": "The intake token as `?token=<token>` on the URL."},
}
_INTAKE_401 = ("The intake token (or, without one, an API key) is missing or wrong: send "
               "`Authorization: Bearer <token>`, a `ce-token` header or `?token=<token>`.")

WEBHOOK_SIGNING = (
    " Sent to every subscriber of the folder's manifest that wants this event type. Signed "
    "per Standard Webhooks: `webhook-id` (the delivery id, the same on every retry: dedupe on "
    "it), `webhook-timestamp` (Unix seconds) and `webhook-signature: v1,<base64 HMAC-SHA256 "
    "of \"{webhook-id}.{webhook-timestamp}.{body}\">`, keyed with the `whsec_` secret (base64 "
    "after the prefix) in the service's environment variable the manifest names as "
    "`secret: env:NAME`; unsigned when the subscriber has no secret. Any 2xx acknowledges; 5xx, "
    "408, 409, 425, 429, timeouts and connection errors are retried on a growing schedule "
    "(Retry-After honoured); 410 Gone disables the subscriber."
)
_WEBHOOK_HEADERS = (
    Param("webhook-id", "header", "Delivery id; the same on every retry.", {"type": "string"}),
    Param("webhook-timestamp", "header", "Unix seconds when this attempt was signed; absent "
          "when the subscriber has no secret.", {"type": "string"}, required=False),
    Param("webhook-signature", "header", "`v1,<base64 HMAC-SHA256>`; absent when the "
          "subscriber has no secret.", {"type": "string"}, required=False),
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
)


def build_openapi(*, server_url: str | None = None, auth: bool = True, version: str,
                  routes: Sequence[Route] = ROUTES, webhooks: Sequence[Webhook] = WEBHOOKS,
                  intake_auth: bool | None = None) -> dict[str, Any]:
    """The OpenAPI 3.0.3 document for `routes` and `webhooks` (default: the whole API).

    `server_url` becomes the one `servers` entry (WXO requires exactly one); `auth` adds the
    bearer and X-API-Key schemes, required everywhere but public routes. `intake_auth` (default:
    `auth`) says whether /events needs its intake token (`INTAKE_SCHEMES`).
    """
    _check_unique(routes)
    intake_auth = auth if intake_auth is None else intake_auth
    schemas = _component_schemas(routes, webhooks)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method] = _operation(route, auth, intake_auth)
    doc: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "imagedrop",
            "version": version,
            "description": "Edit images with AI: one image or a whole storage folder, results "
                           "by callback. Asynchronous endpoints answer 202 at once and POST the "
                           "result to the URL in the callbackUrl header.",
        },
    }
    if server_url:
        doc["servers"] = [{"url": server_url.rstrip("/") or server_url}]
    if auth:
        doc["security"] = [{"bearerAuth": []}, {"apiKeyAuth": []}]
    doc["paths"] = paths
    if webhooks:
        doc["x-webhooks"] = {w.event_type: {"post": _webhook_op(w)} for w in webhooks}
    doc["components"] = {"schemas": schemas}
    security: dict[str, Any] = {}
    if auth:
        security = {
            "bearerAuth": {"type": "http", "scheme": "bearer",
                           "description": "An API key sent as `Authorization: Bearer <key>`."},
            "apiKeyAuth": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                           "description": "An API key sent as `X-API-Key: <key>`."},
        }
    if intake_auth and any(r.intake_token for r in routes):
        security |= INTAKE_SCHEMES
    if security:
        doc["components"]["securitySchemes"] = security
    return doc


def _check_unique(routes: Sequence[Route]) -> None:
    seen: set[object] = set()
    for r in routes:
        if r.operation_id in seen or (r.method, r.path) in seen:
            raise ValueError(f"duplicate route: {r.method.upper()} {r.path} ({r.operation_id})")
        seen.update((r.operation_id, (r.method, r.path)))


def _models(routes: Sequence[Route], webhooks: Sequence[Webhook]
            ) -> list[tuple[type[BaseModel], str]]:
    found: dict[tuple[type[BaseModel], str], None] = {(ErrorBody, "serialization"): None}
    for r in routes:
        if r.request:
            found[(r.request, "validation")] = None
        for model in (*r.ok, *r.callback):
            found[(model, "serialization")] = None
    for w in webhooks:
        found[(w.model, "serialization")] = None
    return list(found)


def _component_schemas(routes: Sequence[Route], webhooks: Sequence[Webhook]) -> dict[str, Any]:
    _, top = models_json_schema(_models(routes, webhooks), ref_template=_COMPONENTS + "{model}")
    hoisted: dict[str, Any] = {}
    schemas = {name: to_openapi30(s, hoisted) for name, s in top.get("$defs", {}).items()}
    return dict(sorted((hoisted | schemas).items()))


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _COMPONENTS + model.__name__}


def _schema_of(models: tuple[type[BaseModel], ...]) -> dict[str, Any]:
    return _ref(models[0]) if len(models) == 1 else {"oneOf": [_ref(m) for m in models]}


def _json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": schema}}}


def _operation(route: Route, auth: bool, intake_auth: bool) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "description": route.description,
        "tags": [route.tag],
    }
    params = [_param(p) for p in route.params]
    if route.callback:
        params.append(_param(Param("callbackUrl", "header", CALLBACK_HEADER_DESCRIPTION,
                                   {"type": "string", "format": "uri"},
                                   required=route.callback_required)))
    if params:
        op["parameters"] = params
    body = route.request_content
    if route.request:
        body = {_JSON: {"schema": _ref(route.request)}}
    if body:
        op["requestBody"] = {"required": True, "content": body}
    ok: dict[str, Any] = {"description": route.ok_description}
    content = route.ok_content
    if content is None:
        content = {_JSON: {"schema": _schema_of(route.ok)}}
    if content:
        ok["content"] = content
    responses: dict[str, Any] = {str(route.ok_status): ok}
    errors = dict(route.errors)
    if route.intake_token:
        if intake_auth:
            errors.setdefault(401, _INTAKE_401)
            op["security"] = [{name: []} for name in INTAKE_SCHEMES]
        elif auth:
            op["security"] = []
    elif auth and not route.public:
        errors.setdefault(401, "No API key, or a wrong one: send `Authorization: Bearer <key>` "
                               "or `X-API-Key: <key>`.")
    for status in sorted(errors):
        responses[str(status)] = _json_response(errors[status], _ref(ErrorBody))
    op["responses"] = responses
    if route.callback:
        op["callbacks"] = {"result": {CALLBACK_EXPRESSION: {"post": _callback_op(route)}}}
    if auth and route.public:
        op["security"] = []
    return op


def _callback_op(route: Route) -> dict[str, Any]:
    return {
        "summary": f"Result of {route.operation_id}",
        "description": route.callback_description,
        "requestBody": {"required": True, "description": route.callback_description,
                        "content": {_JSON: {"schema": _schema_of(route.callback)}}},
        "responses": {"200": {"description": "Any 2xx answer acknowledges the result; other "
                                             "answers and connection errors are retried."}},
    }


def _webhook_op(w: Webhook) -> dict[str, Any]:
    return {
        "summary": w.summary,
        "description": w.description + WEBHOOK_SIGNING,
        "parameters": [_param(p) for p in _WEBHOOK_HEADERS],
        "requestBody": {"required": True, "content": {_JSON: {"schema": _ref(w.model)}}},
        "responses": {"200": {"description": "Any 2xx answer acknowledges the event; 410 Gone "
                                             "unsubscribes; other answers are retried."}},
    }


def _param(p: Param) -> dict[str, Any]:
    return {"name": p.name, "in": p.location, "required": p.required or p.location == "path",
            "description": p.description, "schema": dict(p.schema)}
