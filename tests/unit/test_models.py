"""The HTTP API's models: request validation, SPEC §4.1 callback shapes, status views."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from imagedrop.config import StorageSettings
from imagedrop.ledger import Delivery, DeliveryState, Job, JobKind, JobState
from imagedrop.payloads import B64Completed, BatchSummary, CosCompleted, ImageFailed, batch_status
from imagedrop.recipes import JobResult, Recipe
from imagedrop.web.models import (
    Accepted,
    BatchRequest,
    CosConfig,
    ErrorBody,
    Health,
    ImageRequest,
    safe_filename,
    validation_error_message,
)
from imagedrop.web.status import JobStatus, iso


def _body(model: object) -> dict:
    return json.loads(model.to_body())  # type: ignore[attr-defined]


def _summary(**over: object) -> dict:
    base = dict(job_id="b1", total_files=5, processed=3, failed=1, fallback_local=1,
                duration_seconds=2.5, output_bucket="out", output_prefix="edited/b1/")
    return base | over


class TestImageRequest:
    """Body of the two single-image endpoints."""

    def test_strips_prompt_and_ignores_extra_fields(self) -> None:
        req = ImageRequest.model_validate(
            {"prompt": "  brighter \n", "image_base64": "aGk=", "unknown": 1})
        assert req.prompt == "brighter"
        assert req.filename is None
        assert not hasattr(req, "unknown")

    @pytest.mark.parametrize("prompt", ["", "   ", "x" * 32001])
    def test_refuses_empty_or_huge_prompt(self, prompt: str) -> None:
        with pytest.raises(ValidationError) as info:
            ImageRequest.model_validate({"prompt": prompt, "image_base64": "aGk="})
        assert validation_error_message(info.value).field == "prompt"

    def test_refuses_empty_image(self) -> None:
        with pytest.raises(ValidationError):
            ImageRequest.model_validate({"prompt": "p", "image_base64": ""})

    @pytest.mark.parametrize(("given", "kept"), [
        ("photos/food/burger.jpg", "burger.jpg"),
        ("C:\\Users\\me\\cat.png", "cat.png"),
        ("../../etc/passwd", "passwd"),
        ("/", None),
        ("", None),
    ])
    def test_filename_keeps_only_the_basename(self, given: str, kept: str | None) -> None:
        req = ImageRequest.model_validate({"prompt": "p", "image_base64": "x", "filename": given})
        assert req.filename == kept

    def test_refuses_overlong_filename(self) -> None:
        with pytest.raises(ValidationError):
            ImageRequest.model_validate({"prompt": "p", "image_base64": "x", "filename": "a" * 256})


class TestBatchRequest:
    """Body of the folder endpoint."""

    def test_only_prompt_is_required(self) -> None:
        req = BatchRequest.model_validate({"prompt": "warmer", "extra": True})
        assert (req.prompt, req.bucket, req.prefix, req.output_format) == ("warmer", None, None,
                                                                           None)

    def test_keeps_overrides(self) -> None:
        req = BatchRequest.model_validate({
            "prompt": "p", "bucket": "in", "prefix": "", "output_bucket": "out",
            "output_prefix": "o/", "model": "gpt-image-2", "quality": "high",
            "size": "1024x1536", "output_format": "webp"})
        assert req.prefix == ""  # an explicit root folder, not "use the default"
        assert (req.size, req.output_format) == ("1024x1536", "webp")

    @pytest.mark.parametrize(("field", "value"), [("output_format", "gif"), ("size", "big")])
    def test_refuses_bad_overrides(self, field: str, value: str) -> None:
        with pytest.raises(ValidationError) as info:
            BatchRequest.model_validate({"prompt": "p", field: value})
        assert validation_error_message(info.value).field == field


class TestValidationErrorMessage:
    """A ValidationError becomes one message that names every bad field."""

    def test_names_each_missing_field(self) -> None:
        with pytest.raises(ValidationError) as info:
            ImageRequest.model_validate({})
        err = validation_error_message(info.value)
        assert err.error == "prompt: field required; image_base64: field required"
        assert err.field == "prompt"
        assert [p.field for p in err.detail or []] == ["prompt", "image_base64"]

    def test_body_level_problem_has_no_field(self) -> None:
        with pytest.raises(ValidationError) as info:
            ImageRequest.model_validate_json(b"{not json")
        err = validation_error_message(info.value)
        assert err.error.startswith("body: invalid JSON")
        assert err.field is None

    def test_never_echoes_the_input(self) -> None:
        with pytest.raises(ValidationError) as info:
            BatchRequest.model_validate({"prompt": "p", "output_format": "SECRET-VALUE"})
        assert "SECRET-VALUE" not in validation_error_message(info.value).to_body().decode()


class TestSafeFilename:
    """Names become basenames safe inside an object key, always with an extension."""

    @pytest.mark.parametrize(("name", "ext", "expected"), [
        ("burger.jpg", "png", "burger.jpg"),
        ("burger", "png", "burger.png"),
        ("burger", ".webp", "burger.webp"),
        (None, "png", "image.png"),
        ("", "jpeg", "image.jpeg"),
        ("a/b\\c/..", "png", "image.png"),
        (".hidden", "png", "hidden.png"),
        ("my.photo of the day", "png", "my.photo of the day.png"),
        ("tab\there.png", "png", "tabhere.png"),
        ("trailing.", "png", "trailing.png"),
    ])
    def test_normalises(self, name: str | None, ext: str, expected: str) -> None:
        assert safe_filename(name, ext) == expected

    def test_cuts_long_names_keeping_the_extension(self) -> None:
        out = safe_filename("x" * 400 + ".jpeg", "png")
        assert len(out) == 255
        assert out.endswith("x.jpeg")


class TestCallbackPayloads:
    """to_body() gives exactly the SPEC §4.1 shapes as compact JSON."""

    def test_accepted(self) -> None:
        assert Accepted(job_id="j1").to_body() == b'{"accepted":true,"job_id":"j1"}'

    def test_b64_completed(self) -> None:
        body = _body(B64Completed(job_id="j", filename="a.png", result_image_base64="QQ==",
                                  result_mime_type="image/png"))
        assert body == {"status": "completed", "job_id": "j", "filename": "a.png",
                        "result_image_base64": "QQ==", "result_mime_type": "image/png"}

    def test_cos_completed(self) -> None:
        body = _body(CosCompleted(job_id="j", filename="a.png", object_key="edited/j/a.png",
                                  result_url="https://cos/x?sig=1", expires_in=3600))
        assert set(body) == {"status", "job_id", "filename", "object_key", "result_url",
                             "expires_in"}
        assert body["status"] == "completed"

    def test_image_failed(self) -> None:
        assert _body(ImageFailed(job_id="j", filename="a.png", error="moderation_blocked")) == {
            "status": "failed", "job_id": "j", "filename": "a.png", "error": "moderation_blocked"}

    def test_health(self) -> None:
        assert Health().to_body() == b'{"ok":true}'

    def test_error_body_omits_empty_optionals(self) -> None:
        assert ErrorBody(error="nope").to_body() == b'{"error":"nope"}'


class TestBatchSummary:
    """The folder summary computes its derived fields and keeps its limits."""

    def test_computes_total_files_processed_and_status(self) -> None:
        body = _body(BatchSummary(**_summary()))
        assert body["total_files_processed"] == 4  # processed + fallback_local
        assert body["status"] == "completed_with_errors"
        assert "error" not in body  # optional: left out when None
        assert set(body) == {"status", "job_id", "total_files", "processed", "failed",
                             "fallback_local", "duration_seconds", "total_files_processed",
                             "output_bucket", "output_prefix", "errors",
                             "estimated_cost_usd", "budget_failed"}

    def test_refuses_inconsistent_total(self) -> None:
        with pytest.raises(ValidationError, match="processed \\+ fallback_local"):
            BatchSummary(**_summary(total_files_processed=3))

    def test_keeps_the_first_twenty_errors(self) -> None:
        summary = BatchSummary(**_summary(errors=[f"e{i}" for i in range(50)]))
        assert summary.errors == [f"e{i}" for i in range(20)]

    def test_batch_level_error_is_sent_and_fails_the_batch(self) -> None:
        body = _body(BatchSummary(**_summary(processed=0, failed=0, fallback_local=0,
                                             error="bucket not found")))
        assert (body["status"], body["error"]) == ("failed", "bucket not found")

    def test_round_trips_through_json(self) -> None:
        summary = BatchSummary(**_summary())
        assert BatchSummary.model_validate_json(summary.to_body()) == summary

    @pytest.mark.parametrize(("counts", "expected"), [
        ((3, 0, 0), "completed"), ((0, 0, 2), "completed"), ((0, 0, 0), "completed"),
        ((2, 1, 0), "completed_with_errors"), ((0, 1, 1), "completed_with_errors"),
        ((0, 3, 0), "failed"),
    ])
    def test_status_rule(self, counts: tuple[int, int, int], expected: str) -> None:
        processed, failed, fallback = counts
        assert batch_status(processed=processed, failed=failed,
                            fallback_local=fallback) == expected


class TestCosConfig:
    """The storage view never shows a credential."""

    def test_cos_mode_hides_credentials(self) -> None:
        st = StorageSettings(cos_endpoint="https://user:pw@s3.us-south.example.com/?token=t",
                             cos_bucket="b", cos_access_key_id="AKID", cos_secret_access_key="SK",
                             presign_expires=600)
        body = CosConfig.from_settings(st).to_body().decode()
        for secret in ("AKID", "SK", "pw", "token"):
            assert secret not in body
        view = json.loads(body)
        assert view["endpoint"] == "https://s3.us-south.example.com/"
        assert (view["storage"], view["input_bucket"], view["presign_expires"]) == ("cos", "b",
                                                                                  600)

    def test_local_mode(self) -> None:
        view = _body(CosConfig.from_settings(StorageSettings()))
        assert (view["storage"], view["endpoint"], view["region"]) == ("local", None, None)
        assert view["output_bucket"] == "imagedrop"


class TestJobStatus:
    """A ledger job's public view."""

    def _job(self, **over: object) -> Job:
        base = dict(
            id="j1", kind=JobKind.BATCH, state=JobState.COMPLETED, filename="a.png",
            recipe=Recipe(prompt="p"), dedupe_key=None, batch_id="b1", seq=0,
            source_bucket="in", source_key="photos/a.png", source_etag="e1", input_data=None,
            output_bucket="out", output_key="edited/a.png", callback_url=None, attempts=1,
            max_attempts=5, run_after=0.0, lease_owner=None, lease_expires=None,
            created_at=1_700_000_000.0, started_at=1_700_000_001.0, finished_at=1_700_000_003.5,
            result=JobResult(provider="local", model="pillow", fallback_local=True),
            error=None, last_error=None)
        return Job(**(base | over))  # type: ignore[arg-type]

    def test_maps_a_completed_job(self) -> None:
        delivery = Delivery(
            id="d1", kind="webhook", url="https://h/x?secret=s", body=b"{}",
            event_type="image.completed", job_id="j1", batch_id=None, secret_ref=None,
            state=DeliveryState.DELIVERED, attempts=2, next_attempt_at=0.0, lease_owner=None,
            lease_expires=None, created_at=0.0, finished_at=1.0, last_status=200,
            last_error=None)
        view = _body(JobStatus.from_job(self._job(), [delivery]))
        assert (view["kind"], view["state"], view["duration_seconds"]) == ("batch", "completed",
                                                                           2.5)
        assert view["created_at"] == "2023-11-14T22:13:20.000Z"
        assert view["source"] == {"bucket": "in", "key": "photos/a.png", "etag": "e1"}
        assert view["result"]["key"] == "edited/a.png"  # from the job when the result omits it
        assert view["result"]["fallback_local"] is True
        assert view["deliveries"] == [{"id": "d1", "kind": "webhook",
                                       "event_type": "image.completed", "state": "delivered",
                                       "attempts": 2, "last_status": 200, "last_error": None}]
        assert "secret=s" not in json.dumps(view)

    def test_queued_job_has_nulls(self) -> None:
        job = self._job(state=JobState.QUEUED, started_at=None, finished_at=None, result=None,
                        source_key=None, attempts=0)
        view = _body(JobStatus.from_job(job, []))
        assert view["started_at"] is None and view["duration_seconds"] is None
        assert view["result"] is None and view["source"] is None

    def test_running_job_duration_uses_now(self) -> None:
        job = self._job(state=JobState.RUNNING, finished_at=None, result=None)
        assert JobStatus.from_job(job, [], now=1_700_000_011.0).duration_seconds == 10.0

    def test_iso(self) -> None:
        assert iso(0.0) == "1970-01-01T00:00:00.000Z"
        assert iso(None) is None
