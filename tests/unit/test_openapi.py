"""The OpenAPI document: valid 3.0.3, WXO async-tool rules, schemas that match the models."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from openapi_spec_validator import OpenAPIV30SpecValidator, validate

from imagedrop import subscribers
from imagedrop.payloads import WEBHOOK_MODELS, B64Completed, BatchSummary, CosCompleted, ImageFailed
from imagedrop.web.api_doc import ROUTES, WEBHOOKS
from imagedrop.web.apispec import Param, Route, async_route
from imagedrop.web.jsonschema30 import to_openapi30
from imagedrop.web.models import Accepted, ErrorBody, ImageRequest
from imagedrop.web.openapi import INTAKE_SCHEMES, build_openapi

ASYNC_OPS = {
    "/process-image-async-b64": ("processImageAsyncToBase64", (B64Completed, ImageFailed)),
    "/process-image-async": ("processImageAsyncToCos", (CosCompleted, ImageFailed)),
    "/batch-process-images": ("batchProcessImages", (BatchSummary,)),
}
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
API_KEY_FREE = {("/health", "get"), ("/ready", "get"), ("/files/{bucket}/{key}", "get"),
                ("/events", "head"), ("/events", "post")}


@pytest.fixture(name="doc")
def _doc() -> dict[str, Any]:
    return build_openapi(server_url="https://imagedrop.example.com", version="9.9.9")


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method, op


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """Every (json-path, key, value) in the document."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path, key, value
            yield from _walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}/{i}")


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


class TestValidity:
    """The document is valid OpenAPI 3.0.3 in every configuration."""

    @pytest.mark.parametrize("auth", [True, False])
    @pytest.mark.parametrize("server_url", ["http://127.0.0.1:8080", None])
    def test_validates(self, auth: bool, server_url: str | None) -> None:
        doc = build_openapi(server_url=server_url, auth=auth, version="0.1.0")
        validate(doc, cls=OpenAPIV30SpecValidator)
        assert doc["openapi"] == "3.0.3"
        assert doc["info"]["version"] == "0.1.0"
        json.dumps(doc)  # servable as-is

    def test_every_ref_resolves(self, doc: dict[str, Any]) -> None:
        refs = [value for _, key, value in _walk(doc) if key == "$ref"]
        assert refs
        for ref in refs:
            assert isinstance(_resolve(doc, ref), dict), ref

    def test_no_json_schema_2020_leftovers(self, doc: dict[str, Any]) -> None:
        for where, key, value in _walk(doc):
            assert key not in ("$defs", "const", "examples", "prefixItems"), where
            if key == "type":
                assert value != "null" and not isinstance(value, list), where
            if key in ("anyOf", "oneOf"):
                assert {"type": "null"} not in value, where
            if key in ("exclusiveMinimum", "exclusiveMaximum") and "/properties" in where:
                assert isinstance(value, bool), where

    def test_one_server_when_given(self, doc: dict[str, Any]) -> None:
        assert doc["servers"] == [{"url": "https://imagedrop.example.com"}]
        assert "servers" not in build_openapi(version="1")


class TestOperations:
    """Every operation is named and described, with the ids existing tools rely on."""

    def test_operation_ids(self, doc: dict[str, Any]) -> None:
        ids = {(path, method): op["operationId"] for path, method, op in _operations(doc)}
        assert ids == {
            ("/process-image-async-b64", "post"): "processImageAsyncToBase64",
            ("/process-image-async", "post"): "processImageAsyncToCos",
            ("/batch-process-images", "post"): "batchProcessImages",
            ("/health", "get"): "getHealth",
            ("/cos/config", "get"): "getCosConfig",
            ("/jobs/{job_id}", "get"): "getJob",
            ("/openapi.json", "get"): "getOpenApi",
            ("/files/{bucket}/{key}", "get"): "downloadFile",
            ("/trigger", "post"): "triggerFolder",
            ("/replay", "post"): "replay",
            ("/events", "post"): "receiveStoreEvents",
            ("/events", "head"): "probeEvents",
            ("/ready", "get"): "getReady",
            ("/metrics", "get"): "getMetrics",
            ("/jobs", "get"): "listJobs",
            ("/deliveries", "get"): "listDeliveries",
            ("/subscribers", "get"): "listSubscribers",
            ("/subscribers/disable", "post"): "disableSubscriber",
            ("/subscribers/enable", "post"): "enableSubscriber",
            ("/subscribers/test", "post"): "testSubscriber",
        }

    def test_every_operation_has_summary_and_description(self, doc: dict[str, Any]) -> None:
        for path, _, op in _operations(doc):
            assert op["summary"].strip() and op["description"].strip(), path
            for status, response in op["responses"].items():
                assert response["description"].strip(), (path, status)

    def test_get_job_answers_404_with_error_body(self, doc: dict[str, Any]) -> None:
        op = doc["paths"]["/jobs/{job_id}"]["get"]
        assert op["responses"]["404"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorBody"}
        assert op["parameters"][0]["in"] == "path" and op["parameters"][0]["required"]

    def test_download_is_a_signed_binary_link(self, doc: dict[str, Any]) -> None:
        op = doc["paths"]["/files/{bucket}/{key}"]["get"]
        query = {p["name"] for p in op["parameters"] if p["in"] == "query"}
        assert query == {"expires", "sig"}
        assert "403" in op["responses"]
        content = op["responses"]["200"]["content"]
        assert all(c["schema"] == {"type": "string", "format": "binary"} for c in content.values())


class TestAsyncTools:
    """The three WXO async operations follow the async-tool rules."""

    @pytest.mark.parametrize("path", list(ASYNC_OPS))
    def test_callback_header_and_key(self, doc: dict[str, Any], path: str) -> None:
        op = doc["paths"][path]["post"]
        headers = [p for p in op["parameters"] if p["in"] == "header"]
        assert headers == [{"name": "callbackUrl", "in": "header", "required": True,
                            "description": headers[0]["description"],
                            "schema": {"type": "string", "format": "uri"}}]
        assert list(op["callbacks"]) == ["result"]
        assert list(op["callbacks"]["result"]) == ["{$request.header.callbackUrl}"]

    @pytest.mark.parametrize("path", list(ASYNC_OPS))
    def test_answers_202_accepted_and_documents_4xx(self, doc: dict[str, Any], path: str) -> None:
        responses = doc["paths"][path]["post"]["responses"]
        assert min(int(s) for s in responses) == 202  # the ADK takes the first 2xx as the ack
        ack = responses["202"]["content"]["application/json"]["schema"]
        assert ack == {"$ref": "#/components/schemas/Accepted"}
        for status in ("400", "401", "413", "415", "422"):
            schema = responses[status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}, status

    @pytest.mark.parametrize("path", list(ASYNC_OPS))
    def test_callback_payload_is_the_model(self, doc: dict[str, Any], path: str) -> None:
        _, models = ASYNC_OPS[path]
        cb = doc["paths"][path]["post"]["callbacks"]["result"]["{$request.header.callbackUrl}"]
        body = cb["post"]["requestBody"]
        assert body["required"] is True
        schema = body["content"]["application/json"]["schema"]
        refs = [o["$ref"] for o in schema["oneOf"]] if len(models) > 1 else [schema["$ref"]]
        assert refs == [f"#/components/schemas/{m.__name__}" for m in models]
        for model, ref in zip(models, refs, strict=True):
            component = _resolve(doc, ref)
            assert set(component["properties"]) == set(model.model_fields)
            assert set(component["required"]) == set(model.model_fields) - model.omit_when_none
        assert "200" in cb["post"]["responses"]

    def test_request_bodies(self, doc: dict[str, Any]) -> None:
        schema = doc["components"]["schemas"]["ImageRequest"]
        assert set(schema["required"]) == {"prompt", "image_base64"}
        assert schema["properties"]["filename"]["nullable"] is True
        batch = doc["components"]["schemas"]["BatchRequest"]
        assert batch["required"] == ["prompt"]
        assert batch["properties"]["output_format"]["enum"] == ["png", "jpeg", "webp", None]

    def test_batch_summary_schema_matches_spec(self, doc: dict[str, Any]) -> None:
        props = doc["components"]["schemas"]["BatchSummary"]["properties"]
        assert props["status"]["enum"] == ["completed", "completed_with_errors", "failed"]
        assert props["errors"]["maxItems"] == 20
        assert doc["components"]["schemas"]["Accepted"]["properties"]["accepted"]["enum"] == [
            True]


class TestSecurity:
    """Both API-key schemes everywhere but the open routes; none when auth is off."""

    def test_with_auth(self, doc: dict[str, Any]) -> None:
        assert doc["security"] == [{"bearerAuth": []}, {"apiKeyAuth": []}]
        schemes = doc["components"]["securitySchemes"]
        assert schemes["bearerAuth"] == {"type": "http", "scheme": "bearer",
                                         "description": schemes["bearerAuth"]["description"]}
        assert (schemes["apiKeyAuth"]["in"], schemes["apiKeyAuth"]["name"]) == ("header",
                                                                                "X-API-Key")
        for path, method, op in _operations(doc):
            if path == "/events":
                continue  # its own intake token (HEAD too): TestIntake
            public = (path, method) in API_KEY_FREE
            assert (op.get("security") == []) is public, path
            assert ("401" in op["responses"]) is not public, path

    def test_without_auth(self) -> None:
        doc = build_openapi(auth=False, version="1")
        assert "security" not in doc
        assert "securitySchemes" not in doc["components"]
        for path, _, op in _operations(doc):
            assert "security" not in op and "401" not in op["responses"], path


class TestIntake:
    """POST /events takes its own intake token, never the API-key schemes; HEAD is open."""

    @pytest.mark.parametrize("auth", [True, False])
    def test_intake_token_schemes(self, auth: bool) -> None:
        doc = build_openapi(auth=auth, intake_auth=True, version="1")
        validate(doc, cls=OpenAPIV30SpecValidator)
        op = doc["paths"]["/events"]["post"]
        assert op["security"] == [{"intakeBearer": []}, {"intakeTokenHeader": []},
                                  {"intakeTokenQuery": []}]
        schemes = doc["components"]["securitySchemes"]
        assert {name: schemes[name] for name in INTAKE_SCHEMES} == INTAKE_SCHEMES
        assert (schemes["intakeTokenHeader"]["in"], schemes["intakeTokenHeader"]["name"]) == (
            "header", "ce-token")
        assert (schemes["intakeTokenQuery"]["in"], schemes["intakeTokenQuery"]["name"]) == (
            "query", "token")
        assert "401" in op["responses"]
        for text in ("Bearer", "ce-token", "?token="):
            assert text in op["description"] and text in op["responses"]["401"]["description"]
        probe = doc["paths"]["/events"]["head"]  # MinIO sends its token on the probe too
        assert probe["security"] == op["security"] and "401" in probe["responses"]

    def test_no_intake_token(self) -> None:
        doc = build_openapi(auth=True, intake_auth=False, version="1")
        op = doc["paths"]["/events"]["post"]
        assert op["security"] == [] and "401" not in op["responses"]
        assert set(doc["components"]["securitySchemes"]) == {"bearerAuth", "apiKeyAuth"}

    def test_events_body_and_answers(self, doc: dict[str, Any]) -> None:
        op = doc["paths"]["/events"]["post"]
        assert op["tags"] == ["drops"]
        assert set(op["requestBody"]["content"]) == {
            "application/json", "application/cloudevents+json", "text/plain"}
        for producer in ("Code Engine", "CloudEvents", "Records", "MinIO", "Ceph", "SNS",
                         "EventBridge"):
            assert producer in op["description"], producer
        assert op["responses"]["200"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/EventsResult"}
        assert {"200", "400", "401", "413"} <= set(op["responses"])
        ignored = _resolve(doc, "#/components/schemas/EventsResult")["properties"]["ignored"]
        assert _resolve(doc, ignored["items"]["$ref"])["required"] == ["object", "reason"]

    def test_head_probe(self, doc: dict[str, Any]) -> None:
        """The probe takes the intake token like POST (MinIO sends it on the probe too)."""
        op = doc["paths"]["/events"]["head"]
        assert op["security"] == [{name: []} for name in INTAKE_SCHEMES]
        assert set(op["responses"]) == {"200", "401"}


class TestFolderOperations:
    """POST /trigger (an async tool with an optional callback) and POST /replay."""

    def test_trigger(self, doc: dict[str, Any]) -> None:
        op = doc["paths"]["/trigger"]["post"]
        assert op["tags"] == ["drops"]
        [header] = op["parameters"]
        assert (header["name"], header["in"], header["required"]) == (
            "callbackUrl", "header", False)
        assert op["requestBody"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/TriggerRequest"}
        ack = op["responses"]["202"]["content"]["application/json"]["schema"]
        assert _resolve(doc, ack["$ref"])["required"] == ["accepted", "job_id", "batch_id"]
        assert {"200", "202", "400", "401", "404", "413", "415", "422"} == set(op["responses"])
        dry = op["responses"]["200"]["content"]["application/json"]["schema"]
        assert set(_resolve(doc, dry["$ref"])["required"]) == {
            "images", "to_edit", "already_done", "skipped", "estimated_cost_usd",
            "prices_as_of", "unpriced_models"}
        assert "missing" not in op["responses"]["400"]["description"]
        cb = op["callbacks"]["result"]["{$request.header.callbackUrl}"]["post"]
        schema = cb["requestBody"]["content"]["application/json"]["schema"]
        assert "batch_id" in _resolve(doc, schema["$ref"])["properties"]

    def test_trigger_request_schema(self, doc: dict[str, Any]) -> None:
        schema = doc["components"]["schemas"]["TriggerRequest"]
        assert schema["required"] == ["prefix"]
        assert set(schema["properties"]) == {"bucket", "prefix", "prompt", "model", "quality",
                                             "size", "output_format", "dry_run"}
        assert schema["properties"]["prompt"]["maxLength"] == 32000

    def test_replay(self, doc: dict[str, Any]) -> None:
        op = doc["paths"]["/replay"]["post"]
        assert op["tags"] == ["drops"]
        assert op["responses"]["200"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ReplayResult"}
        assert {"400", "401", "404", "415", "422"} <= set(op["responses"])
        props = doc["components"]["schemas"]["ReplayRequest"]["properties"]
        assert props["job_ids"]["maxItems"] == props["delivery_ids"]["maxItems"] == 1000
        assert props["force"]["default"] is False and props["redeliver"]["default"] is False
        assert "required" not in doc["components"]["schemas"]["ReplayRequest"]

    def test_every_property_is_described(self, doc: dict[str, Any]) -> None:
        for name, schema in doc["components"]["schemas"].items():
            for prop, sub in schema.get("properties", {}).items():
                assert sub.get("description", "").strip(), f"{name}.{prop}"


class TestWebhooks:
    """Subscriber events are documented under x-webhooks with their schemas in components."""

    def test_each_event_type(self, doc: dict[str, Any]) -> None:
        hooks = doc["x-webhooks"]
        assert list(hooks) == [*subscribers.EVENT_TYPES, "delivery.exhausted", "imagedrop.test"]
        for event_type, item in hooks.items():
            post = item["post"]
            assert post["summary"].strip()
            for text in ("webhook-id", "webhook-timestamp", "webhook-signature", "v1,",
                         "HMAC-SHA256", "whsec_", "env:"):
                assert text in post["description"], (event_type, text)
            schema = post["requestBody"]["content"]["application/json"]["schema"]
            assert schema == {"$ref": f"#/components/schemas/"
                                      f"{WEBHOOK_MODELS[event_type].__name__}"}
            assert list(post["responses"]) == ["200"]
            headers = {p["name"] for p in post["parameters"] if p["in"] == "header"}
            assert headers == {"webhook-id", "webhook-timestamp", "webhook-signature"}

    def test_schemas_match_the_models(self, doc: dict[str, Any]) -> None:
        for event_type, model in WEBHOOK_MODELS.items():
            component = doc["components"]["schemas"][model.__name__]
            assert component["required"] == ["type", "timestamp", "data"]
            assert component["properties"]["type"]["enum"] == [event_type]
            data_model = model.model_fields["data"].annotation
            data = _resolve(doc, component["properties"]["data"]["allOf"][0]["$ref"])
            assert set(data["properties"]) == set(data_model.model_fields)
            optional = data_model.omit_when_none
            assert set(data["required"]) == set(data_model.model_fields) - optional

    def test_webhooks_can_be_left_out(self) -> None:
        doc = build_openapi(version="1", webhooks=())
        assert "x-webhooks" not in doc
        assert "ImageCompletedEvent" not in doc["components"]["schemas"]
        assert [w.event_type for w in WEBHOOKS] == [*subscribers.EVENT_TYPES, "delivery.exhausted",
                                                     "imagedrop.test"]


class TestRegistry:
    """Later routes are one Route entry; mistakes are caught at build time."""

    def test_adding_a_route(self) -> None:
        scan = async_route(
            "/scan", "scanFolder", "Process a folder now", "Runs a folder's manifest.",
            request=ImageRequest, callback=(BatchSummary,), image=False,
            callback_description="The folder's summary.", callback_required=False,
            errors=((404, "No such folder."),))
        notes = Route("post", "/notes", "receiveNotes", "Storage notifications",
                      "Accepts object-write notifications.", "intake", ok=(Accepted,),
                      params=(Param("ce-type", "header", "CloudEvents type.", {"type": "string"},
                                    required=False),))
        doc = build_openapi(version="1", routes=(*ROUTES, scan, notes))
        validate(doc, cls=OpenAPIV30SpecValidator)
        op = doc["paths"]["/scan"]["post"]
        header = op["parameters"][0]
        assert (header["name"], header["required"]) == ("callbackUrl", False)
        assert op["responses"]["404"]["description"] == "No such folder."
        assert doc["paths"]["/notes"]["post"]["operationId"] == "receiveNotes"

    def test_duplicate_operation_id_is_refused(self) -> None:
        clash = Route("get", "/other", "getHealth", "s", "d", "service")
        with pytest.raises(ValueError, match="getHealth"):
            build_openapi(version="1", routes=(*ROUTES, clash))

    def test_only_used_models_are_components(self) -> None:
        health = next(r for r in ROUTES if r.operation_id == "getHealth")
        doc = build_openapi(version="1", routes=(health,), auth=False, webhooks=())
        assert set(doc["components"]["schemas"]) == {"Health", "ErrorBody", "FieldProblem"}


class TestToOpenApi30:
    """JSON Schema 2020-12 → OpenAPI 3.0 schema conversion."""

    def test_nullable_scalar(self) -> None:
        out = to_openapi30({"anyOf": [{"type": "string", "maxLength": 3}, {"type": "null"}],
                            "description": "d", "default": None})
        assert out == {"type": "string", "maxLength": 3, "nullable": True, "description": "d",
                       "default": None}

    def test_nullable_ref_uses_all_of(self) -> None:
        out = to_openapi30({"anyOf": [{"$ref": "#/$defs/X"}, {"type": "null"}]})
        assert out == {"allOf": [{"$ref": "#/components/schemas/X"}], "nullable": True}

    def test_ref_with_siblings_is_wrapped(self) -> None:
        out = to_openapi30({"$ref": "#/$defs/X", "description": "why"})
        assert out == {"allOf": [{"$ref": "#/components/schemas/X"}], "description": "why"}

    def test_const_examples_and_exclusive_bounds(self) -> None:
        out = to_openapi30({"const": "a", "type": "string", "examples": ["a"]})
        assert out == {"enum": ["a"], "type": "string", "example": "a"}
        out = to_openapi30({"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1})
        assert out == {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 1,
                       "exclusiveMaximum": True}

    def test_defs_are_hoisted_and_type_lists_split(self) -> None:
        hoisted: dict[str, Any] = {}
        out = to_openapi30({
            "$defs": {"Y": {"type": ["string", "null"], "$schema": "x"}},
            "type": "object", "properties": {"y": {"$ref": "#/$defs/Y", "title": "Y"}},
            "required": [],
        }, hoisted)
        assert hoisted == {"Y": {"type": "string", "nullable": True}}
        assert out == {"type": "object", "properties": {"y": {"$ref": "#/components/schemas/Y"}}}

    def test_error_body_model_round_trip(self) -> None:
        schema = to_openapi30(ErrorBody.model_json_schema(mode="serialization"))
        assert schema["required"] == ["error"]
        assert "$defs" not in schema
