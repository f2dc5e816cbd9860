"""The records every layer passes around: jobs, batches and callback deliveries, new and as
the ledger recorded them, and the pages of its listings (as saq keeps `Job` apart from its
queues). Plain dataclasses and enums, no I/O; the ledger's columns are named as the fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, TypeVar

from imagedrop.payloads import BatchSummary
from imagedrop.recipes import JobResult, Recipe

T = TypeVar("T")


class JobState(StrEnum):
    """Where a job is in its life. `completed` and `failed` are final; `held` waits for a
    budget's next day (its `last_error` says which budget)."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    HELD = "held"

    @property
    def final(self) -> bool:
        return self in (JobState.COMPLETED, JobState.FAILED)


class JobKind(StrEnum):
    """Which door a job came in by; decides where its result goes."""

    B64 = "b64"  # POST /process-image-async-b64: result in the callback as base64
    COS = "cos"  # POST /process-image-async: result stored, presigned URL in the callback
    BATCH = "batch"  # one object of a folder batch (WXO batch or trigger)
    DROP = "drop"  # a dropped file found by a notification or the sweep


class DeliveryState(StrEnum):
    """Where a callback delivery is. Everything but `pending` is final."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # retries exhausted or a permanent refusal
    DISABLED = "disabled"  # receiver answered 410 Gone


@dataclass(slots=True)
class NewJob:
    """A job to record. `dedupe_key`, when set, makes recording it idempotent."""

    kind: JobKind
    filename: str
    recipe: Recipe
    id: str | None = None  # generated when None
    dedupe_key: str | None = None
    batch_id: str | None = None
    seq: int = 0  # position within its batch; claims interleave batches by it
    source_bucket: str | None = None
    source_key: str | None = None
    source_etag: str | None = None
    input_data: bytes | None = None  # inline image for the WXO single-image endpoints
    input_base64: bool = False  # input_data is the image's canonical base64 (decoded to run)
    output_bucket: str | None = None
    output_key: str | None = None
    callback_url: str | None = None
    max_attempts: int = 5
    run_after: float = 0.0
    version_key: str | None = None  # object version + recipe: finds an earlier identical edit
    blocked_by: str | None = None  # the broken manifest version (bucket␟key␟etag) it failed by
    request_id: str | None = None  # the HTTP request that recorded it: in its log lines
    traceparent: str | None = None  # W3C trace context it continues (OpenTelemetry), if on


@dataclass(slots=True)
class Job:
    """A recorded job."""

    id: str
    kind: JobKind
    state: JobState
    filename: str
    recipe: Recipe
    dedupe_key: str | None
    batch_id: str | None
    seq: int
    source_bucket: str | None
    source_key: str | None
    source_etag: str | None
    input_data: bytes | None  # see NewJob; None once the job completed
    output_bucket: str | None
    output_key: str | None
    callback_url: str | None
    attempts: int
    max_attempts: int
    run_after: float
    lease_owner: str | None
    lease_expires: float | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    result: JobResult | None
    error: str | None
    last_error: str | None
    version_key: str | None = None
    generation: int = 0  # bumped by a forced replay, so an earlier output is not reused
    blocked_by: str | None = None  # failed under this broken manifest version: healed by the next
    request_id: str | None = None  # the HTTP request that recorded it: in its log lines
    traceparent: str | None = None  # W3C trace context it continues (OpenTelemetry), if on
    input_base64: bool = False  # input_data is canonical base64 (see NewJob)


@dataclass(slots=True)
class NewBatch:
    """A folder batch to record: listed page by page, then its jobs run."""

    kind: str  # "wxo", "trigger" or "drop"
    bucket: str
    prefix: str
    output_bucket: str
    output_prefix: str
    recipe: Recipe
    id: str | None = None
    callback_url: str | None = None
    listing_done: bool = False  # True when jobs are added directly (drop batches)
    extra: dict[str, Any] = field(default_factory=dict)
    group_key: str | None = None  # drop batches: folder + manifest revision they collect for
    request_id: str | None = None  # the HTTP request that recorded it: in its log lines
    traceparent: str | None = None  # W3C trace context it continues (OpenTelemetry), if on


@dataclass(slots=True)
class Batch:
    """A recorded batch."""

    id: str
    kind: str
    bucket: str
    prefix: str
    output_bucket: str
    output_prefix: str
    recipe: Recipe
    callback_url: str | None
    listing_cursor: str
    listing_done: bool
    lease_owner: str | None
    lease_expires: float | None
    created_at: float
    finished_at: float | None
    summary: BatchSummary | None
    extra: dict[str, Any]
    group_key: str | None = None
    settle_until: float | None = None  # drop batches close when no image came for a while
    request_id: str | None = None  # the HTTP request that recorded it: in its log lines
    traceparent: str | None = None  # W3C trace context it continues (OpenTelemetry), if on


@dataclass(frozen=True, slots=True)
class BatchProgress:
    """Counts over a batch's jobs."""

    total: int
    queued: int
    running: int
    completed: int
    failed: int
    held: int
    fallback_local: int  # completed by the local provider after a billing stop
    budget_failed: int  # failed because a budget was reached (over: fail)
    cost_usd: float  # what the completed edits cost, from their reported usage
    listing_done: bool
    finished: bool

    @property
    def all_final(self) -> bool:
        return self.listing_done and self.queued == 0 and self.running == 0 and self.held == 0


@dataclass(slots=True)
class NewDelivery:
    """A callback to deliver: the body is fixed now; signatures are made per attempt."""

    kind: str  # "callback" (WXO callbackUrl / trigger summary) or "webhook" (subscriber)
    url: str
    body: bytes
    event_type: str | None = None  # image.completed | image.failed | batch.completed | None
    job_id: str | None = None
    batch_id: str | None = None
    secret_ref: str | None = None  # name of the env var holding the subscriber's whsec_ secret
    id: str | None = None  # doubles as webhook-id; stable across retries
    next_attempt_at: float = 0.0
    request_id: str | None = None  # the HTTP request that recorded it: in its log lines
    traceparent: str | None = None  # W3C trace context it continues (OpenTelemetry), if on
    spool: str | None = None  # set by the ledger: the file beside it that holds the body


@dataclass(slots=True)
class Delivery:
    """A recorded delivery."""

    id: str
    kind: str
    url: str
    body: bytes
    event_type: str | None
    job_id: str | None
    batch_id: str | None
    secret_ref: str | None
    state: DeliveryState
    attempts: int
    next_attempt_at: float
    lease_owner: str | None
    lease_expires: float | None
    created_at: float
    finished_at: float | None
    last_status: int | None
    last_error: str | None
    request_id: str | None = None  # the HTTP request that recorded it: in its log lines
    traceparent: str | None = None  # W3C trace context it continues (OpenTelemetry), if on
    spool: str | None = None  # the file beside the ledger holding the body (empty body: lost)


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """One recorded try at a delivery."""

    delivery_id: str
    attempt: int
    at: float
    status: int | None  # HTTP status, None when no answer
    error: str | None  # never contains the URL's query string or credentials
    duration_ms: float


@dataclass(slots=True)
class DropItem:
    """A dropped object's job, and the drop batch of its folder it joins (None: no batch)."""

    job: NewJob
    batch: NewBatch | None = None  # template; its group_key finds the batch still settling
    settle_seconds: float = 5.0  # the batch closes when no image came for this long ...
    max_settle_seconds: float = 300.0  # ... or this long after it opened


@dataclass(frozen=True, slots=True)
class Requeued(Generic[T]):
    """One page of a replay: the jobs or deliveries queued again, and whether more matched."""

    items: list[T]
    more: bool


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Which jobs a listing shows (every field optional; all given must hold)."""

    state: JobState | None = None
    kind: JobKind | None = None
    bucket: str | None = None  # of the input
    prefix: str | None = None  # the input key starts with this (literally)
    batch_id: str | None = None
    since: float | None = None  # recorded at or after (epoch seconds)


@dataclass(frozen=True, slots=True)
class DeliveryFilter:
    """Which callback deliveries a listing shows."""

    state: DeliveryState | None = None
    url: str | None = None
    job_id: str | None = None
    since: float | None = None


@dataclass(frozen=True, slots=True)
class DeliveryLog:
    """A delivery (its body left out) with every attempt made at it, in order."""

    delivery: Delivery
    attempts: list[DeliveryAttempt]


@dataclass(frozen=True, slots=True)
class SubscriberState:
    """One subscriber URL as its deliveries show it."""

    url: str
    state: str  # active | failing (its latest outcome is a failure) | disabled (said 410)
    disabled_reason: str | None
    delivered: int
    failed: int
    pending: int
    last_success: float | None
    last_failure: float | None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing, newest first; `next` is the opaque cursor of the page after it
    (None: this was the last)."""

    items: list[T]
    next: str | None


@dataclass(frozen=True, slots=True)
class BudgetLimit:
    """One budget an edit counts against: a folder's (its manifest) or the service's."""

    scope: str  # "service", or "folder:<bucket>/<manifest key>"
    edits_per_day: int | None = None
    usd_per_day: float | None = None


@dataclass(frozen=True, slots=True)
class BudgetRefusal:
    """Why an edit was not let through: the budget reached, whether this was the first
    refusal of that budget's day (then its subscribers are told, once), and whether the edit
    can never fit (the day's limit is below one edit: holding it would hold it forever)."""

    scope: str
    reason: str
    first: bool
    until: float  # when the budget's next day begins
    never: bool = False


@dataclass(frozen=True, slots=True)
class BudgetTake:
    """What `take_budget` came to: the UTC day it counted on, and a refusal or None."""

    day: str
    refused: BudgetRefusal | None
