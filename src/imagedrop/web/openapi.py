"""The OpenAPI 3.0.3 document builder (GET /openapi.json): the routes and webhooks `api_doc`
lists (as `apispec` data) rendered by `build_openapi` per watsonx Orchestrate's async-tool rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from imagedrop.web.api_doc import ROUTES, WEBHOOKS
from imagedrop.web.apispec import CALLBACK_HEADER_DESCRIPTION, Param, Route, Webhook
from imagedrop.web.jsonschema30 import to_openapi30
from imagedrop.web.models import ErrorBody

OPENAPI_VERSION = "3.0.3"
CALLBACK_EXPRESSION = "{$request.header.callbackUrl}"
_COMPONENTS = "#/components/schemas/"
_JSON = "application/json"


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

def build_openapi(*, server_url: str | None = None, auth: bool = True, version: str,
                  routes: Sequence[Route] | None = None,
                  webhooks: Sequence[Webhook] | None = None,
                  intake_auth: bool | None = None) -> dict[str, Any]:
    """The OpenAPI 3.0.3 document for `routes` and `webhooks` (default: the whole API, as
    `api_doc` lists it).

    `server_url` becomes the one `servers` entry (WXO requires exactly one); `auth` adds the
    bearer and X-API-Key schemes, required everywhere but public routes. `intake_auth` (default:
    `auth`) says whether /events needs its intake token (`INTAKE_SCHEMES`).
    """
    routes = ROUTES if routes is None else routes
    webhooks = WEBHOOKS if webhooks is None else webhooks
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


Mode = Literal["validation", "serialization"]


def _models(routes: Sequence[Route], webhooks: Sequence[Webhook]
            ) -> list[tuple[type[BaseModel], Mode]]:
    found: dict[tuple[type[BaseModel], Mode], None] = {(ErrorBody, "serialization"): None}
    for r in routes:
        if r.request:
            found[(r.request, "validation")] = None
        for model in (*r.ok, *r.callback, *(m for _, m, _ in r.also)):
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
    for status, model, when in route.also:
        responses[str(status)] = _json_response(when, _ref(model))
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
