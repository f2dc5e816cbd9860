"""The OpenAPI 3.0.3 document of the HTTP API (GET /openapi.json), built from the pydantic models.

Routes are data (`Route`, `ROUTES`): adding an endpoint is one `Route(...)` entry. The document
follows watsonx Orchestrate's async-tool rules: a required `callbackUrl` header, callbacks keyed
`{$request.header.callbackUrl}`, one server URL, an operationId and description everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

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

    `ok` is the success response's models (several: one of them), or raw `ok_content`.
    `callback` lists the payload models POSTed to the `callbackUrl` header later (several: one
    of them); a route with a callback gets the header (`callback_required`) automatically.
    `errors` are (status, when it happens); 401 is added to every non-public route when auth is on.
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
    params: tuple[Param, ...] = ()
    errors: tuple[tuple[int, str], ...] = ()
    callback: tuple[type[BaseModel], ...] = ()
    callback_description: str = ""
    callback_required: bool = True
    public: bool = False  # no credentials needed (security: [])


CALLBACK_HEADER_DESCRIPTION = (
    "URL the result is POSTed to (JSON) when the work is done. Must be http(s); private and "
    "loopback addresses are refused unless the service allows them."
)

def async_errors(*, image: bool) -> tuple[tuple[int, str], ...]:
    """The 4xx answers of an async tool endpoint; all are given before anything is queued."""
    img = "`image_base64` is not valid base64 or not a PNG/JPEG/WebP image, " if image else ""
    return (
        (400, f"The body is not valid JSON or not a JSON object, {img}or the `callbackUrl` "
              "header is missing or is not an allowed http(s) URL."),
        (413, "The request body is larger than the service accepts"
              + (", or the image has too many bytes or pixels." if image else ".")),
        (415, "The Content-Type is not application/json."),
        (422, "The JSON body failed validation (a required field is missing or a value is out "
              "of range); `error` names each field and `detail` lists them."),
    )


def async_route(path: str, operation_id: str, summary: str, description: str, *,
                request: type[BaseModel], callback: tuple[type[BaseModel], ...],
                callback_description: str, image: bool, tag: str = "wxo",
                callback_required: bool = True) -> Route:
    """A WXO async tool endpoint: JSON in, 202 `Accepted` now, one callback POST later."""
    return Route(
        "post", path, operation_id, summary, description, tag, ok_status=202, ok=(Accepted,),
        ok_description="Accepted: the work is recorded; the result is POSTed to callbackUrl.",
        request=request, errors=async_errors(image=image), callback=callback,
        callback_description=callback_description, callback_required=callback_required,
    )


_BINARY = {"schema": {"type": "string", "format": "binary"}}

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
)


def build_openapi(*, server_url: str | None = None, auth: bool = True, version: str,
                  routes: Sequence[Route] = ROUTES) -> dict[str, Any]:
    """The OpenAPI 3.0.3 document for `routes` (default: the whole API).

    `server_url` becomes the one `servers` entry (WXO requires exactly one); `auth` adds the
    bearer and X-API-Key schemes, required everywhere but public routes.
    """
    _check_unique(routes)
    schemas = _component_schemas(routes)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method] = _operation(route, auth)
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
    doc["components"] = {"schemas": schemas}
    if auth:
        doc["components"]["securitySchemes"] = {
            "bearerAuth": {"type": "http", "scheme": "bearer",
                           "description": "An API key sent as `Authorization: Bearer <key>`."},
            "apiKeyAuth": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                           "description": "An API key sent as `X-API-Key: <key>`."},
        }
    return doc


def _check_unique(routes: Sequence[Route]) -> None:
    seen: set[object] = set()
    for r in routes:
        if r.operation_id in seen or (r.method, r.path) in seen:
            raise ValueError(f"duplicate route: {r.method.upper()} {r.path} ({r.operation_id})")
        seen.update((r.operation_id, (r.method, r.path)))


def _models(routes: Sequence[Route]) -> list[tuple[type[BaseModel], str]]:
    found: dict[tuple[type[BaseModel], str], None] = {(ErrorBody, "serialization"): None}
    for r in routes:
        if r.request:
            found[(r.request, "validation")] = None
        for model in (*r.ok, *r.callback):
            found[(model, "serialization")] = None
    return list(found)


def _component_schemas(routes: Sequence[Route]) -> dict[str, Any]:
    _, top = models_json_schema(_models(routes), ref_template=_COMPONENTS + "{model}")
    hoisted: dict[str, Any] = {}
    schemas = {name: to_openapi30(s, hoisted) for name, s in top.get("$defs", {}).items()}
    return dict(sorted((hoisted | schemas).items()))


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _COMPONENTS + model.__name__}


def _schema_of(models: tuple[type[BaseModel], ...]) -> dict[str, Any]:
    return _ref(models[0]) if len(models) == 1 else {"oneOf": [_ref(m) for m in models]}


def _json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": schema}}}


def _operation(route: Route, auth: bool) -> dict[str, Any]:
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
    if route.request:
        op["requestBody"] = {"required": True,
                             "content": {_JSON: {"schema": _ref(route.request)}}}
    responses: dict[str, Any] = {str(route.ok_status): {
        "description": route.ok_description,
        "content": route.ok_content or {_JSON: {"schema": _schema_of(route.ok)}},
    }}
    errors = dict(route.errors)
    if auth and not route.public:
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


def _param(p: Param) -> dict[str, Any]:
    return {"name": p.name, "in": p.location, "required": p.required or p.location == "path",
            "description": p.description, "schema": dict(p.schema)}
