"""Bodies of the drop-a-file API: /trigger, /replay, /events, and subscriber webhook payloads.

Pure data; no I/O. The webhook models document what `imagedrop.subscribers` sends (SPEC §4.4);
tests round-trip its output through them so the documentation cannot drift from the wire.
"""

from __future__ import annotations

import copy
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from imagedrop.web.models import BatchRequest, BatchSummary, JsonBody, Prompt

MAX_SELECTED = 1000
Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
# `event_body` writes `datetime.isoformat()` with Z: the fraction is there unless it is zero.
Timestamp = Annotated[str, StringConstraints(pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")]


def _batch_field(name: str, description: str) -> Any:
    # The very field of BatchRequest (type, limits), so both endpoints validate overrides alike.
    field: FieldInfo = copy.deepcopy(BatchRequest.model_fields[name])
    field.description = description
    return field


def _folder(value: str | None) -> str | None:
    # "/photos/" and "photos/" are the same folder: object keys never start with "/".
    return None if value is None else value.lstrip("/")


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


# -- POST /trigger -----------------------------------------------------------------------------


class TriggerRequest(_Request):
    """Body of POST /trigger: edit every image under a folder now, as its manifest says."""

    bucket: str | None = Field(
        None, min_length=1, max_length=1024, description="Bucket of the folder; default: input.")
    prefix: str = Field(
        max_length=1024,
        description='Folder to process; "" is the bucket root. A leading "/" is ignored.',
    )
    prompt: Prompt | None = Field(
        None, description="What to do to every image (1-32000 characters); overrides the "
                          "folder manifest's prompt. Required when no manifest governs the folder.")
    model: str | None = _batch_field("model", "Image model id; overrides the manifest's.")
    quality: str | None = _batch_field("quality", "Quality, e.g. high; overrides the manifest's.")
    size: str | None = _batch_field("size", "Size, auto or WxH; overrides the manifest's.")
    output_format: Literal["png", "jpeg", "webp"] | None = _batch_field(
        "output_format", "Result format; overrides the manifest's.")

    @field_validator("prefix")
    @classmethod
    def _normalise_prefix(cls, value: str | None) -> str | None:
        return _folder(value)


class TriggerAccepted(JsonBody):
    """202 answer of POST /trigger: the folder's batch is recorded; its summary comes later."""

    accepted: Literal[True] = Field(True, description="Always true.")
    job_id: str = Field(description="The batch id (same as batch_id; what WXO tools read).")
    batch_id: str = Field(description="The batch id: GET /jobs/{batch_id} shows its progress.")


# -- POST /replay ------------------------------------------------------------------------------


class ReplayRequest(_Request):
    """Body of POST /replay: run final jobs again and/or resend failed callback deliveries.

    Give at least one selector: job_ids, batch_id, prefix (with bucket) or delivery_ids.
    """

    job_ids: list[Id] = Field(
        default_factory=list, max_length=MAX_SELECTED, description="Jobs to run again.")
    batch_id: str | None = Field(
        None, min_length=1, max_length=200, description="Run the batch's failed jobs again.")
    bucket: str | None = Field(
        None, min_length=1, max_length=1024,
        description="With prefix: the bucket of the folder; default: the input bucket.")
    prefix: str | None = Field(
        None, max_length=1024,
        description='Run failed jobs of images under this folder again ("" = bucket root).')
    force: bool = Field(
        False, description="Also re-edit completed jobs (a fresh edit, not a reused result). "
                           "Only allowed together with job_ids.")
    delivery_ids: list[Id] = Field(
        default_factory=list, max_length=MAX_SELECTED,
        description="Failed or disabled callback deliveries to make pending again.")
    redeliver: bool = Field(
        False, description="Also make failed or disabled callback deliveries of the selected "
                           "jobs or batch pending again.")
    limit: int = Field(
        1000, ge=1, le=10_000,
        description="Queue at most this many jobs in this call, oldest first; the answer says "
                    "whether more remain (call again for the next page).")

    @field_validator("prefix")
    @classmethod
    def _normalise_prefix(cls, value: str | None) -> str | None:
        return _folder(value)

    @model_validator(mode="after")
    def _selected(self) -> ReplayRequest:
        if not (self.job_ids or self.batch_id or self.prefix is not None or self.delivery_ids):
            raise ValueError("say what to replay: give job_ids, batch_id, prefix (with bucket; "
                             '"" for the whole bucket) or delivery_ids')
        if self.force and not self.job_ids:
            raise ValueError("force re-edits completed jobs and is only allowed together with "
                             "job_ids: name the jobs to edit again")
        return self


class ReplayResult(JsonBody):
    """200 answer of POST /replay: what was queued again."""

    jobs: list[str] = Field(description="Ids of the jobs queued again.")
    requeued: int = Field(description="How many jobs were queued again by this call.")
    more: bool = Field(description="Whether more jobs match than this call's limit took: call "
                                   "again with the same body for the next page.")
    deliveries: list[str] = Field(description="Ids of the deliveries made pending again.")


# -- POST /events ------------------------------------------------------------------------------


class IgnoredObject(JsonBody):
    """One notified object (or notification) that started no work."""

    object: str = Field(description="bucket/key of the object, or what the notification was.")
    reason: str = Field(description="Why nothing was started (delete, not an image, output...).")


class EventsResult(JsonBody):
    """200 answer of POST /events: the notification is acknowledged; its jobs are recorded."""

    recorded: list[str] = Field(description="Ids of the jobs newly recorded.")
    duplicates: int = Field(ge=0, description="Objects whose job was already recorded.")
    ignored: list[IgnoredObject] = Field(description="Objects that started no work, and why.")


# -- subscriber webhook payloads (SPEC §4.4) ---------------------------------------------------


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


AnyWebhookEvent = ImageCompletedEvent | ImageFailedEvent | BatchCompletedEvent
WebhookEvent = Annotated[AnyWebhookEvent, Field(discriminator="type")]
WEBHOOK_MODELS: dict[str, type[JsonBody]] = {
    "image.completed": ImageCompletedEvent, "image.failed": ImageFailedEvent,
    "batch.completed": BatchCompletedEvent,
}
_EVENT = TypeAdapter(WebhookEvent)


def parse_webhook_event(body: bytes | str) -> AnyWebhookEvent:
    """A subscriber body as its event model, chosen by `type` (ValidationError if it fits none)."""
    return _EVENT.validate_json(body)
