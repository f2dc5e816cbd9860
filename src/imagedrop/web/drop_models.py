"""Bodies of the drop-a-file API: /trigger, /replay, /events (subscriber webhook payloads are
the core's, in `imagedrop.payloads`). Pure data; no I/O.
"""

from __future__ import annotations

import copy
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from imagedrop.payloads import JsonBody
from imagedrop.web.models import BatchRequest, Prompt

MAX_SELECTED = 1000
Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


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
    dry_run: bool = Field(
        False, description="Only say what a trigger would do and cost (200, at once): no job, "
                           "no provider call, no callback.")

    @field_validator("prefix")
    @classmethod
    def _normalise_prefix(cls, value: str | None) -> str | None:
        return _folder(value)


class TriggerEstimate(JsonBody):
    """200 answer of POST /trigger with dry_run: what a trigger would do and cost now."""

    images: int = Field(ge=0, description="Image files in the folder (outputs and manifests "
                                          "aside).")
    to_edit: int = Field(ge=0, description="Images a trigger would send to the provider now.")
    already_done: int = Field(ge=0, description="Images already edited with the same recipe: "
                                                "reused, not paid for again.")
    skipped: int = Field(ge=0, description="Image files the folder's manifest does not take "
                                           "(filters, size limits, a broken sub-folder "
                                           "manifest).")
    estimated_cost_usd: float = Field(
        ge=0, description="Expected cost of to_edit in US dollars, from the manifest's model, "
        "quality and size and the price table (0 when the service edits locally).")
    prices_as_of: str = Field(description="Date of the price table used (YYYY-MM-DD).")
    unpriced_models: list[str] = Field(
        default_factory=list, description="Models the price table does not know (counted at "
        "0: set IMAGEDROP_PRICES).")


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
    url: str | None = Field(
        None, min_length=1, max_length=2048,
        description="Make every failed (or disabled) delivery to this endpoint pending again "
                    "(with `since`: only those recorded since then).")
    since: AwareDatetime | None = Field(
        None, description="With `url`: only deliveries recorded at or after this time "
                          "(ISO 8601 with a zone, e.g. 2026-11-28T10:00:00Z).")
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
        if not (self.job_ids or self.batch_id or self.prefix is not None or self.delivery_ids
                or self.url):
            raise ValueError("say what to replay: give job_ids, batch_id, prefix (with bucket; "
                             '"" for the whole bucket), delivery_ids or url (with since)')
        if self.since is not None and not self.url:
            raise ValueError("since selects deliveries to one endpoint: give url with it")
        if self.force and not self.job_ids:
            raise ValueError("force re-edits completed jobs and is only allowed together with "
                             "job_ids: name the jobs to edit again")
        return self


class ReplayResult(JsonBody):
    """200 answer of POST /replay: what was queued again."""

    jobs: list[str] = Field(description="Ids of the jobs queued again.")
    requeued: int = Field(description="How many jobs were queued again by this call.")
    more: bool = Field(description="Whether more jobs (or, by url, deliveries) match than this "
                                   "call's limit took: call again with the same body for the "
                                   "next page.")
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
