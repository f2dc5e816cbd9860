"""Drop-a-file API bodies: request validation, and webhook models that match what is sent."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from imagedrop import subscribers
from imagedrop.config import ProviderSettings
from imagedrop.drops import recipe_for
from imagedrop.ledger import Batch, Job, JobKind, JobState
from imagedrop.manifests import Resolved, parse_manifest
from imagedrop.payloads import (
    WEBHOOK_MODELS,
    BatchCompletedEvent,
    BatchSummary,
    ImageCompletedEvent,
    ImageFailedEvent,
    parse_webhook_event,
)
from imagedrop.recipes import JobResult, Recipe
from imagedrop.web.drop_models import (
    EventsResult,
    ReplayRequest,
    ReplayResult,
    TriggerAccepted,
    TriggerRequest,
)
from imagedrop.web.models import BatchRequest, validation_error_message

MANIFEST = """
prompt: "Make this food photo look appetizing"
output:
  prefix: "edited/"
subscribers:
  - url: https://hooks.example.com/imagedrop
    secret: env:IMAGEDROP_HOOK_SECRET_MAIN
"""
NOW = 1_767_323_045.678  # 2026-01-02T03:04:05.678Z


def _error(model: type[BaseModel], data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    return validation_error_message(info.value).error


class TestTriggerRequest:
    """POST /trigger's body: a folder, an optional prompt and overrides."""

    def test_prefix_is_required_and_may_be_the_root(self) -> None:
        assert "prefix: field required" in _error(TriggerRequest, {})
        body = TriggerRequest.model_validate({"prefix": ""})
        assert (body.prefix, body.bucket, body.prompt) == ("", None, None)

    @pytest.mark.parametrize(("given", "stored"), [("/photos/", "photos/"), ("//a/b", "a/b"),
                                                   ("/", ""), ("photos", "photos")])
    def test_leading_slash_is_dropped(self, given: str, stored: str) -> None:
        assert TriggerRequest.model_validate({"prefix": given}).prefix == stored

    def test_prompt_bounds(self) -> None:
        assert TriggerRequest.model_validate({"prefix": "", "prompt": " hi "}).prompt == "hi"
        assert "prompt" in _error(TriggerRequest, {"prefix": "", "prompt": "   "})
        assert "prompt" in _error(TriggerRequest, {"prefix": "", "prompt": "x" * 32001})

    @pytest.mark.parametrize(("field", "bad"), [("size", "huge"), ("output_format", "gif"),
                                                ("model", "m" * 201), ("quality", "q" * 51)])
    def test_overrides_validate_like_batch_request(self, field: str, bad: str) -> None:
        assert f"{field}:" in _error(TriggerRequest, {"prefix": "", field: bad})
        assert f"{field}:" in _error(BatchRequest, {"prompt": "p", field: bad})

    def test_override_schemas_equal_batch_request(self) -> None:
        mine = TriggerRequest.model_json_schema()["properties"]
        theirs = BatchRequest.model_json_schema()["properties"]
        for name in ("model", "quality", "size", "output_format"):
            strip = {k: v for k, v in mine[name].items() if k != "description"}
            assert strip == {k: v for k, v in theirs[name].items() if k != "description"}

    def test_accepted_body(self) -> None:
        body = json.loads(TriggerAccepted(job_id="b1", batch_id="b1").to_body())
        assert body == {"accepted": True, "job_id": "b1", "batch_id": "b1"}


class TestReplayRequest:
    """POST /replay's body: at least one selector; force only with named jobs."""

    def test_needs_a_selector(self) -> None:
        message = _error(ReplayRequest, {})
        assert message.startswith("body: say what to replay")
        assert "bucket" in _error(ReplayRequest, {"bucket": "in", "redeliver": True})

    @pytest.mark.parametrize("body", [{"job_ids": ["j1"]}, {"batch_id": "b1"}, {"prefix": ""},
                                      {"bucket": "in", "prefix": "/photos/"},
                                      {"delivery_ids": ["d1"]}])
    def test_each_selector_is_enough(self, body: dict[str, Any]) -> None:
        request = ReplayRequest.model_validate(body)
        assert (request.force, request.redeliver) == (False, False)
        assert request.prefix in (None, "", "photos/")

    def test_force_only_with_job_ids(self) -> None:
        message = _error(ReplayRequest, {"batch_id": "b1", "force": True})
        assert "only allowed together with job_ids" in message
        assert ReplayRequest.model_validate({"job_ids": ["j1"], "force": True}).force

    def test_limits(self) -> None:
        assert "job_ids" in _error(ReplayRequest, {"job_ids": ["j"] * 1001})
        assert "delivery_ids" in _error(ReplayRequest, {"delivery_ids": ["d"] * 1001})
        assert "job_ids.0" in _error(ReplayRequest, {"job_ids": [" "]})

    def test_answers(self) -> None:
        answer = ReplayResult(jobs=["j1"], requeued=1, more=False, deliveries=[])
        assert json.loads(answer.to_body()) == {
            "jobs": ["j1"], "requeued": 1, "more": False, "deliveries": []}
        result = EventsResult(recorded=["j1"], duplicates=2,
                              ignored=[{"object": "in/a.txt", "reason": "not an image"}])
        assert json.loads(result.to_body())["ignored"] == [
            {"object": "in/a.txt", "reason": "not an image"}]


def _job(recipe: Recipe, **over: Any) -> Job:
    base: dict[str, Any] = dict(
        id="j1", kind=JobKind.DROP, state=JobState.RUNNING, filename="crème.png", recipe=recipe,
        dedupe_key=None, batch_id=None, seq=0, source_bucket="in",
        source_key="photos/crème.png", source_etag="e1", input_data=None, output_bucket="in",
        output_key="photos/edited/crème.png", callback_url=None, attempts=1, max_attempts=5,
        run_after=0.0, lease_owner=None, lease_expires=None, created_at=NOW - 10,
        started_at=NOW - 5, finished_at=None, result=None, error=None, last_error=None)
    return Job(**(base | over))


def _manifest_recipe() -> Recipe:
    manifest = parse_manifest(MANIFEST, fmt="yaml", source="in/photos/imagedrop.yaml")
    resolved = Resolved(manifest=manifest, folder="photos/", source_key="photos/imagedrop.yaml",
                        etag="m1", bucket="in")
    return recipe_for(resolved, ProviderSettings())


def _sent(event: subscribers.Event, recipe: Recipe) -> bytes:
    """The body imagedrop records for the manifest's subscriber."""
    [delivery] = subscribers.deliveries_for(event, recipe.subscribers)
    assert delivery.event_type == event.type
    return delivery.body


def _round_trip(event_type: str, body: bytes) -> BaseModel:
    """The body parses as its documented model and serialises back to the same JSON."""
    model = WEBHOOK_MODELS[event_type].model_validate_json(body)
    assert json.loads(model.to_body()) == json.loads(body)
    assert type(parse_webhook_event(body)) is type(model)
    return model


class TestWebhookPayloads:
    """What `subscribers` sends validates against the documented models, field for field."""

    def test_image_completed(self) -> None:
        recipe = _manifest_recipe()
        result = JobResult(bucket="in", key="photos/edited/crème.png", mime_type="image/png",
                           provider="openai", model="gpt-image-2", fallback_local=False)
        data = subscribers.image_data(_job(recipe), result=result,
                                      result_url="https://cos.example/x?sig=1")
        event = _round_trip("image.completed",
                            _sent(subscribers.image_event(data, now=NOW), recipe))
        assert isinstance(event, ImageCompletedEvent)
        assert event.timestamp == "2026-01-02T03:04:05.678000Z"
        assert event.data.manifest is not None and event.data.manifest.key.endswith(".yaml")
        assert event.data.result is not None and event.data.result.reused is False

    def test_image_completed_without_url_batch_or_fraction(self) -> None:
        recipe = _manifest_recipe()
        data = subscribers.image_data(_job(recipe, batch_id="b1"),
                                      result=JobResult(reused=True))
        event = _round_trip("image.completed",
                            _sent(subscribers.image_event(data, now=1.0e9), recipe))
        assert isinstance(event, ImageCompletedEvent)
        assert event.timestamp == "2001-09-09T01:46:40Z"
        assert event.data.batch_id == "b1" and event.data.result is not None

    def test_image_failed(self) -> None:
        recipe = _manifest_recipe()
        data = subscribers.image_data(_job(recipe), error="provider refused the image")
        event = _round_trip("image.failed",
                            _sent(subscribers.image_event(data, now=NOW), recipe))
        assert isinstance(event, ImageFailedEvent)
        assert event.data.error == "provider refused the image" and event.data.result is None

    def test_image_failed_for_a_broken_manifest(self) -> None:
        job = _job(Recipe(manifest_error="bad"), source_etag=None)
        body = subscribers.image_event(subscribers.image_data(job, error="bad"),
                                       now=NOW).to_body()
        event = _round_trip("image.failed", body)
        assert isinstance(event, ImageFailedEvent) and event.data.manifest is None

    @pytest.mark.parametrize("error", [None, "listing failed"])
    def test_batch_completed(self, error: str | None) -> None:
        recipe = _manifest_recipe()
        summary = BatchSummary(
            job_id="b1", batch_id="b1", total_files=3, processed=1, failed=1, fallback_local=1,
            duration_seconds=12.5, output_bucket="in", output_prefix="photos/edited/",
            errors=["photos/x.png: too large"], error=error)
        batch = Batch(id="b1", kind="drop", bucket="in", prefix="photos/", output_bucket="in",
                      output_prefix="photos/edited/", recipe=recipe, callback_url=None,
                      listing_cursor="", listing_done=True, lease_owner=None,
                      lease_expires=None, created_at=NOW - 20, finished_at=NOW,
                      summary=summary, extra={})
        event = _round_trip("batch.completed",
                            _sent(subscribers.batch_event(batch, summary, now=NOW), recipe))
        assert isinstance(event, BatchCompletedEvent)
        assert (event.data.batch_id, event.data.kind, event.data.prefix) == ("b1", "drop",
                                                                             "photos/")
        assert event.data.error == error

    def test_types_cannot_be_mixed_up(self) -> None:
        recipe = _manifest_recipe()
        failed = _sent(subscribers.image_event(subscribers.image_data(_job(recipe), error="x"),
                                               now=NOW), recipe)
        with pytest.raises(ValidationError, match=r"data\.result"):
            ImageCompletedEvent.model_validate_json(failed.replace(b"image.failed",
                                                                   b"image.completed"))
        with pytest.raises(ValidationError):
            BatchCompletedEvent.model_validate_json(failed)

    def test_every_event_type_is_documented(self) -> None:
        assert set(WEBHOOK_MODELS) == {*subscribers.EVENT_TYPES, "delivery.exhausted",
                                       "imagedrop.test"}
