"""What imagedrop sends: WXO callback bodies (SPEC §4.1) and subscriber webhook events (§4.4).

One definition each, built by the core (`outcomes`, `batches`, `subscribers`) and documented by
the web layer in /openapi.json. Pure data; no I/O.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, model_validator

BatchStatusValue = Literal["completed", "completed_with_errors", "failed"]
MAX_SUMMARY_ERRORS = 20
# `event_body` writes `datetime.isoformat()` with Z: the fraction is there unless it is zero.
Timestamp = Annotated[str, StringConstraints(pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")]


def _omit_from_required(schema: dict[str, Any], cls: type[BaseModel]) -> None:
    # Fields left out of the body when None must not be listed as required in the schema.
    omit: frozenset[str] = getattr(cls, "omit_when_none", frozenset())
    required = [name for name in schema.get("required", []) if name not in omit]
    if required:
        schema["required"] = required
    else:
        schema.pop("required", None)


class JsonBody(BaseModel):
    """A JSON body imagedrop sends; every field with a value is always present."""

    model_config = ConfigDict(
        extra="ignore", json_schema_serialization_defaults_required=True,
        json_schema_extra=_omit_from_required,
    )
    omit_when_none: ClassVar[frozenset[str]] = frozenset()

    def to_body(self) -> bytes:
        """Compact JSON; optional fields (`omit_when_none`) are left out when None."""
        drop = {name for name in self.omit_when_none if getattr(self, name) is None}
        return self.model_dump_json(exclude=drop or None).encode()


# -- WXO callbacks ------------------------------------------------------------------------------


class B64Completed(JsonBody):
    """Callback of /process-image-async-b64 when the edit succeeded."""

    status: Literal["completed"] = Field("completed", description="Always completed.")
    job_id: str = Field(description="The job id from the 202 answer.")
    filename: str = Field(description="Name of the image.")
    result_image_base64: str = Field(description="The edited image, base64-encoded.")
    result_mime_type: str = Field(description="MIME type of the edited image, e.g. image/png.")

    @classmethod
    def body_with_image(cls, image_b64: bytes, *, job_id: str, filename: str,
                        result_mime_type: str) -> bytes:
        """`to_body()` of this callback carrying `image_b64` (ASCII base64, which JSON needs no
        escaping for), spliced into the serialised rest instead of serialised with it."""
        empty = cls(job_id=job_id, filename=filename, result_image_base64="",
                    result_mime_type=result_mime_type).to_body()
        # Every other value is JSON-escaped, so only the field itself can hold `":""`.
        head, marker, tail = empty.partition(b'"result_image_base64":""')
        assert marker, "the field is serialised"
        return b"".join((head, b'"result_image_base64":"', image_b64, b'"', tail))


class CosCompleted(JsonBody):
    """Callback of /process-image-async when the edit succeeded."""

    status: Literal["completed"] = Field("completed", description="Always completed.")
    job_id: str = Field(description="The job id from the 202 answer.")
    filename: str = Field(description="Name of the image.")
    object_key: str = Field(description="Key of the edited image in the output bucket.")
    result_url: str = Field(description="Presigned GET URL of the edited image.")
    expires_in: int = Field(ge=0, description="Seconds result_url stays valid.")


class ImageFailed(JsonBody):
    """Callback of either single-image endpoint when the edit failed."""

    status: Literal["failed"] = Field("failed", description="Always failed.")
    job_id: str = Field(description="The job id from the 202 answer.")
    filename: str = Field(description="Name of the image.")
    error: str = Field(description="Why the edit failed.")


def batch_status(*, processed: int, failed: int, fallback_local: int,
                 error: str | None = None) -> BatchStatusValue:
    """A batch's overall status: failed when nothing succeeded (or it broke as a whole)."""
    if error or (failed and not processed + fallback_local):
        return "failed"
    return "completed_with_errors" if failed else "completed"


class BatchSummary(JsonBody):
    """Callback of /batch-process-images: one summary of the whole folder.

    `status` and `total_files_processed` are computed when not given; `errors` keeps the first 20.
    """

    omit_when_none = frozenset({"error", "batch_id"})
    status: BatchStatusValue = Field("completed", description="Overall outcome.")
    job_id: str = Field(description="The batch id from the 202 answer.")
    batch_id: str | None = Field(None, description="The batch id (same as job_id).")
    total_files: int = Field(ge=0, description="Images found in the folder.")
    processed: int = Field(ge=0, description="Images edited by the image provider.")
    failed: int = Field(ge=0, description="Images that could not be edited.")
    fallback_local: int = Field(
        ge=0, description="Images edited by the local provider after a billing limit."
    )
    duration_seconds: float = Field(ge=0, description="Wall time from request to summary.")
    total_files_processed: int = Field(0, ge=0, description="processed + fallback_local.")
    output_bucket: str = Field(description="Bucket the results were written to.")
    output_prefix: str = Field(description="Folder the results were written to.")
    errors: list[str] = Field(
        default_factory=list, max_length=MAX_SUMMARY_ERRORS,
        description="Up to 20 per-image error messages.",
    )
    error: str | None = Field(None, description="Why the batch as a whole failed, if it did.")
    estimated_cost_usd: float = Field(
        0.0, ge=0, description="What the edits cost in US dollars, from the usage the provider "
        "reported and the price table (0 for local edits).")
    budget_failed: int = Field(
        0, ge=0, description="Images not edited because a spend budget was reached (counted "
        "in failed too).")

    @model_validator(mode="before")
    @classmethod
    def _derive(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            counts = [data.get(k) for k in ("processed", "failed", "fallback_local")]
            if all(isinstance(c, int) for c in counts):
                processed, failed, fallback = counts
                data.setdefault("total_files_processed", processed + fallback)
                data.setdefault("status", batch_status(
                    processed=processed, failed=failed, fallback_local=fallback,
                    error=data.get("error")))
            if isinstance(data.get("errors"), list):
                data["errors"] = data["errors"][:MAX_SUMMARY_ERRORS]
        return data

    @model_validator(mode="after")
    def _check_total(self) -> BatchSummary:
        if self.total_files_processed != self.processed + self.fallback_local:
            raise ValueError("total_files_processed must equal processed + fallback_local")
        return self


# -- subscriber webhook events (SPEC §4.4) --------------------------------------------------


def _omissions(body: JsonBody) -> dict[str, Any]:
    # `exclude` for model_dump: every `omit_when_none` field that is None, at any depth.
    out: dict[str, Any] = {}
    for name in type(body).model_fields:
        value = getattr(body, name)
        if value is None and name in body.omit_when_none:
            out[name] = True
        elif isinstance(value, JsonBody) and (nested := _omissions(value)):
            out[name] = nested
    return out


class ImageEventSource(JsonBody):
    """The stored object the job edited."""

    bucket: str | None = Field(description="Bucket of the input.")
    key: str | None = Field(description="Key of the input.")
    etag: str | None = Field(description="Version (ETag) of the input that was edited.")


class ManifestRef(JsonBody):
    """The manifest (imagedrop.yaml) whose recipe the job followed."""

    bucket: str = Field(description="Bucket of the manifest.")
    key: str = Field(description="Key of the manifest.")
    etag: str = Field(description="Version (ETag) of the manifest that was read.")
    revision: str = Field(description="Hash of the manifest's recipe: same revision, same edit.")


class ImageEventResult(JsonBody):
    """Where the edited image is and who made it."""

    bucket: str | None = Field(description="Bucket of the result.")
    key: str | None = Field(description="Key of the result.")
    url: str | None = Field(description="Presigned download URL of the result, if one exists.")
    mime_type: str | None = Field(description="MIME type of the result, e.g. image/png.")
    provider: str | None = Field(description="Provider that edited it (openai or local).")
    model: str | None = Field(description="Model that edited it.")
    fallback_local: bool = Field(description="True if the local provider stood in (billing).")
    reused: bool = Field(description="True if an identical earlier edit was copied.")


class ImageEventData(JsonBody):
    """`data` of image.completed (with `result`) and image.failed (with `error`)."""

    omit_when_none = frozenset({"manifest", "result", "error"})
    job_id: str = Field(description="Id of the job: GET /jobs/{job_id} shows it.")
    batch_id: str | None = Field(description="The folder batch the job belongs to, if any.")
    filename: str = Field(description="Name of the image.")
    source: ImageEventSource = Field(description="The input object.")
    prompt: str | None = Field(description="The prompt the image was (to be) edited with.")
    manifest: ManifestRef | None = Field(None, description="The manifest followed, if any.")
    result: ImageEventResult | None = Field(None, description="image.completed: the result.")
    error: str | None = Field(None, description="image.failed: why the edit failed.")


class BatchEventData(BatchSummary):
    """`data` of batch.completed: the /batch-process-images summary plus where it looked."""

    omit_when_none = frozenset({"error"})
    batch_id: str = Field(description="The batch id (same as job_id).")
    kind: Literal["wxo", "trigger", "drop"] = Field(
        description="What made the batch: a WXO call, POST /trigger, or dropped files.")
    bucket: str = Field(description="Bucket the batch read.")
    prefix: str = Field(description="Folder the batch read.")


def _timestamp() -> Any:
    return Field(description="When the event happened: ISO 8601 UTC, ending Z.")


class _Event(JsonBody):
    """A subscriber event `{type, timestamp, data}`."""

    def to_body(self) -> bytes:
        """Compact JSON, as sent: optional fields are left out when None, nested ones too."""
        return self.model_dump_json(exclude=_omissions(self) or None).encode()


class ImageCompletedEvent(_Event):
    """Sent when an image was edited and stored."""

    type: Literal["image.completed"] = Field("image.completed", description="Event type.")
    timestamp: Timestamp = _timestamp()
    data: ImageEventData = Field(description="The job, its input and its result.")

    @model_validator(mode="after")
    def _has_result(self) -> ImageCompletedEvent:
        if self.data.result is None or self.data.error is not None:
            raise ValueError("image.completed carries data.result and no data.error")
        return self


class ImageFailedEvent(_Event):
    """Sent when an image could not be edited (for good: retries are over)."""

    type: Literal["image.failed"] = Field("image.failed", description="Event type.")
    timestamp: Timestamp = _timestamp()
    data: ImageEventData = Field(description="The job, its input and the error.")

    @model_validator(mode="after")
    def _has_error(self) -> ImageFailedEvent:
        if self.data.error is None or self.data.result is not None:
            raise ValueError("image.failed carries data.error and no data.result")
        return self


class BatchCompletedEvent(_Event):
    """Sent once when every image of a folder batch is final."""

    type: Literal["batch.completed"] = Field("batch.completed", description="Event type.")
    timestamp: Timestamp = _timestamp()
    data: BatchEventData = Field(description="The batch's summary.")


class BudgetEventData(JsonBody):
    """`data` of budget.reached: which budget, and what happens to the images over it."""

    scope: str = Field(description="service, or folder:<bucket>/<manifest key>.")
    day: str = Field(description="The UTC day (YYYY-MM-DD) whose budget was reached.")
    reason: str = Field(description="The limit reached, in words.")
    over: Literal["hold", "fail"] = Field(description="Images over it wait, or fail.")
    resumes_at: str | None = Field(None, description="When held images go on (UTC, ISO 8601).")
    manifest: ManifestRef | None = Field(None, description="The folder's manifest, if a folder's.")


class BudgetReachedEvent(_Event):
    """Sent once per budget and UTC day, when an image is first kept from the provider."""

    type: Literal["budget.reached"] = Field("budget.reached", description="Event type.")
    timestamp: Timestamp = _timestamp()
    data: BudgetEventData = Field(description="The budget reached.")


# -- operators' events --------------------------------------------------------------------------


class ExhaustedData(JsonBody):
    """`data` of delivery.exhausted: the delivery that gave up, and its last answer."""

    delivery_id: str = Field(description="The delivery (GET /deliveries?job_id=… lists it).")
    kind: str = Field(description="callback (a callbackUrl) or webhook (a subscriber).")
    url: str = Field(description="Where it was going, without user-info or query string.")
    event_type: str | None = Field(description="The event it carried, if a subscriber's.")
    job_id: str | None = Field(description="The job it reported on, if any.")
    batch_id: str | None = Field(description="The batch it reported on, if any.")
    attempts: int = Field(description="Attempts made, the last included.")
    last_status: int | None = Field(description="HTTP status of the last attempt, if any.")
    last_error: str | None = Field(description="What went wrong the last time.")


class DeliveryExhaustedEvent(_Event):
    """Sent to IMAGEDROP_OPS_WEBHOOK when a delivery used up its retry schedule."""

    type: Literal["delivery.exhausted"] = Field("delivery.exhausted", description="Event type.")
    timestamp: Timestamp = _timestamp()
    data: ExhaustedData = Field(description="The delivery that gave up.")


class TestData(JsonBody):
    """`data` of imagedrop.test."""

    message: str = Field(description="What the event is for.")


class TestEvent(_Event):
    """Sent by POST /subscribers/test: a signed event that changes nothing."""

    type: Literal["imagedrop.test"] = Field("imagedrop.test", description="Event type.")
    timestamp: Timestamp = _timestamp()
    data: TestData = Field(description="A note saying it is a test.")


AnyWebhookEvent = (ImageCompletedEvent | ImageFailedEvent | BatchCompletedEvent
                   | BudgetReachedEvent | DeliveryExhaustedEvent | TestEvent)
WebhookEvent = Annotated[AnyWebhookEvent, Field(discriminator="type")]
WEBHOOK_MODELS: dict[str, type[JsonBody]] = {
    "image.completed": ImageCompletedEvent, "image.failed": ImageFailedEvent,
    "batch.completed": BatchCompletedEvent, "budget.reached": BudgetReachedEvent,
    "delivery.exhausted": DeliveryExhaustedEvent, "imagedrop.test": TestEvent,
}
_EVENT = TypeAdapter(WebhookEvent)


def parse_webhook_event(body: bytes | str) -> AnyWebhookEvent:
    """A subscriber body as its event model, chosen by `type` (ValidationError if it fits none)."""
    return _EVENT.validate_json(body)
