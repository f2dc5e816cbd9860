"""Bodies of the operators' listings (GET /jobs, /deliveries, /subscribers) and the subscriber
actions, and their query checks. Pure data and pure checks; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated

from pydantic import Field, StringConstraints

from imagedrop.errors import RequestInvalid
from imagedrop.ledger import (
    DeliveryFilter,
    DeliveryLog,
    DeliveryState,
    Job,
    JobFilter,
    JobKind,
    JobState,
    SubscriberState,
)
from imagedrop.payloads import JsonBody
from imagedrop.web.models import _Request
from imagedrop.web.status import iso

MAX_LIMIT = 500
Url = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2048)]
_CONTROL = {chr(c) for c in range(32)} | {"\x7f"}


# -- queries ---------------------------------------------------------------------------------


def _text(query: Mapping[str, str], name: str, longest: int) -> str | None:
    value = query.get(name)
    if value is None:
        return None
    if len(value) > longest or any(ch in _CONTROL for ch in value):
        raise RequestInvalid(f"{name}: at most {longest} characters, no control characters",
                             name, status=400)
    return value


def _choice(query: Mapping[str, str], name: str, kind: type[JobState] | type[JobKind] |
            type[DeliveryState]) -> str | None:
    value = query.get(name)
    if value is not None and value not in {str(v) for v in kind}:
        raise RequestInvalid(f"{name}: {value[:40]!r} is not one of "
                             f"{', '.join(str(v) for v in kind)}", name, status=400)
    return value


def since_param(query: Mapping[str, str]) -> float | None:
    """`since`: ISO 8601 (2026-11-28T10:00:00Z) or Unix seconds."""
    raw = query.get("since")
    if raw is None:
        return None
    try:
        return float(raw) if raw.replace(".", "", 1).isdigit() else datetime.fromisoformat(
            raw.replace("Z", "+00:00")).astimezone(UTC).timestamp()
    except (ValueError, OverflowError):
        raise RequestInvalid("since: not an ISO 8601 time (2026-11-28T10:00:00Z) or Unix "
                             "seconds", "since", status=400) from None


def paging(query: Mapping[str, str], default: int = 50) -> tuple[str | None, int]:
    """(`after` cursor, `limit`) of a listing's query."""
    raw = query.get("limit")
    try:
        limit = default if raw is None else int(raw)
    except ValueError:
        limit = -1
    if not 1 <= limit <= MAX_LIMIT:
        raise RequestInvalid(f"limit: a whole number from 1 to {MAX_LIMIT}", "limit", status=400)
    return _text(query, "after", 512), limit


def check_known(query: Mapping[str, str], known: tuple[str, ...]) -> None:
    """A misspelt filter is an error, not silently ignored (a typo must not list everything)."""
    for name in query:
        if name not in known:
            raise RequestInvalid(f"unknown query parameter {name[:40]!r}; known: "
                                 f"{', '.join(known)}", name, status=400)


JOB_PARAMS = ("state", "kind", "bucket", "prefix", "batch_id", "since", "after", "limit")
DELIVERY_PARAMS = ("state", "url", "job_id", "since", "after", "limit")


def job_filter(query: Mapping[str, str]) -> JobFilter:
    check_known(query, JOB_PARAMS)
    state, kind = _choice(query, "state", JobState), _choice(query, "kind", JobKind)
    return JobFilter(state=JobState(state) if state else None,
                     kind=JobKind(kind) if kind else None, bucket=_text(query, "bucket", 255),
                     prefix=_text(query, "prefix", 1024), batch_id=_text(query, "batch_id", 200),
                     since=since_param(query))


def delivery_filter(query: Mapping[str, str]) -> DeliveryFilter:
    check_known(query, DELIVERY_PARAMS)
    state = _choice(query, "state", DeliveryState)
    return DeliveryFilter(state=DeliveryState(state) if state else None,
                          url=_text(query, "url", 2048), job_id=_text(query, "job_id", 200),
                          since=since_param(query))


# -- answers ---------------------------------------------------------------------------------


class JobItem(JsonBody):
    """One job in a listing."""

    id: str = Field(description="Job id.")
    state: JobState = Field(description="queued, running, held, completed or failed.")
    kind: JobKind = Field(description="Which door the job came in by.")
    bucket: str | None = Field(description="Bucket of the input, if stored.")
    key: str | None = Field(description="Key of the input, if stored.")
    filename: str = Field(description="Name of the image.")
    batch_id: str | None = Field(description="The batch the job belongs to, if any.")
    attempts: int = Field(description="Attempts started so far.")
    error: str | None = Field(description="Why the job failed (final).")
    last_error: str | None = Field(description="Error of the latest failed attempt.")
    created_at: str | None = Field(description="ISO 8601 UTC time the job was recorded.")
    started_at: str | None = Field(description="ISO 8601 UTC time of its first start.")
    finished_at: str | None = Field(description="ISO 8601 UTC time it ended.")

    @classmethod
    def of(cls, job: Job) -> JobItem:
        return cls(id=job.id, state=job.state, kind=job.kind, bucket=job.source_bucket,
                   key=job.source_key, filename=job.filename, batch_id=job.batch_id,
                   attempts=job.attempts, error=job.error, last_error=job.last_error,
                   created_at=iso(job.created_at), started_at=iso(job.started_at),
                   finished_at=iso(job.finished_at))


class JobPage(JsonBody):
    """GET /jobs: a page of jobs, newest first."""

    items: list[JobItem] = Field(description="The jobs on this page.")
    next: str | None = Field(description="Cursor of the next page (pass as `after`); null: "
                                         "this is the last.")


class AttemptItem(JsonBody):
    """One attempt at a delivery."""

    attempt: int = Field(description="1 for the first attempt.")
    at: str | None = Field(description="ISO 8601 UTC time it was made.")
    status: int | None = Field(description="HTTP status the receiver answered; null if none.")
    error: str | None = Field(description="What went wrong, if anything.")
    duration_ms: float = Field(description="How long the attempt took.")


class DeliveryItem(JsonBody):
    """One callback delivery with every attempt made at it."""

    id: str = Field(description="Delivery id (also the webhook-id header).")
    kind: str = Field(description="callback (callbackUrl), webhook (subscriber) or ops.")
    url: str = Field(description="Where it goes (as the job or manifest named it).")
    event_type: str | None = Field(description="image.completed, image.failed, ... or null.")
    state: DeliveryState = Field(description="pending, delivered, failed or disabled.")
    job_id: str | None = Field(description="The job it reports on, if any.")
    batch_id: str | None = Field(description="The batch it reports on, if any.")
    created_at: str | None = Field(description="ISO 8601 UTC time it was recorded.")
    next_attempt_at: str | None = Field(description="When a pending delivery is tried next.")
    attempts: list[AttemptItem] = Field(description="Every attempt, in order.")

    @classmethod
    def of(cls, log: DeliveryLog) -> DeliveryItem:
        d = log.delivery
        return cls(id=d.id, kind=d.kind, url=d.url, event_type=d.event_type, state=d.state,
                   job_id=d.job_id, batch_id=d.batch_id, created_at=iso(d.created_at),
                   next_attempt_at=iso(d.next_attempt_at) if d.state is DeliveryState.PENDING
                   else None,
                   attempts=[AttemptItem(attempt=a.attempt, at=iso(a.at), status=a.status,
                                         error=a.error, duration_ms=round(a.duration_ms, 1))
                             for a in log.attempts])


class DeliveryPage(JsonBody):
    """GET /deliveries: a page of deliveries, newest first."""

    items: list[DeliveryItem] = Field(description="The deliveries on this page.")
    next: str | None = Field(description="Cursor of the next page (pass as `after`); null: "
                                         "this is the last.")


class SubscriberItem(JsonBody):
    """One subscriber URL and how deliveries to it fare."""

    url: str = Field(description="The subscriber's URL.")
    state: str = Field(description="active; failing (its latest outcome is a failure or a "
                                   "retry); disabled (it answered 410 Gone, or an operator).")
    disabled_reason: str | None = Field(description="Why it is disabled.")
    delivered: int = Field(description="Events it acknowledged.")
    failed: int = Field(description="Events that failed for good.")
    pending: int = Field(description="Events still to be sent (or retried).")
    last_success: str | None = Field(description="ISO 8601 UTC time of its latest success.")
    last_failure: str | None = Field(description="ISO 8601 UTC time of its latest failure.")

    @classmethod
    def of(cls, s: SubscriberState) -> SubscriberItem:
        return cls(url=s.url, state=s.state, disabled_reason=s.disabled_reason,
                   delivered=s.delivered, failed=s.failed, pending=s.pending,
                   last_success=iso(s.last_success), last_failure=iso(s.last_failure))


class SubscriberPage(JsonBody):
    """GET /subscribers: subscribers by URL."""

    items: list[SubscriberItem] = Field(description="The subscribers on this page.")
    next: str | None = Field(description="Cursor of the next page (pass as `after`); null: "
                                         "this is the last.")


class SubscriberRequest(_Request):
    """Body of POST /subscribers/disable, /enable and /test: the subscriber's URL."""

    url: Url = Field(description="The subscriber's URL, as its manifest names it.")
    reason: str | None = Field(None, max_length=500,
                               description="/disable: why (shown in GET /subscribers).")


class SubscriberChanged(JsonBody):
    """Answer of /subscribers/disable and /enable."""

    url: str = Field(description="The subscriber's URL.")
    state: str = Field(description="active or disabled, now.")
    changed: bool = Field(description="False when it already was.")


class TestResult(JsonBody):
    """Answer of /subscribers/test: what the receiver said to a signed imagedrop.test event."""

    url: str = Field(description="Where the event went.")
    delivered: bool = Field(description="True for a 2xx answer.")
    status: int | None = Field(description="HTTP status, null when no answer came.")
    error: str | None = Field(description="What went wrong, if anything.")
    signed: bool = Field(description="Whether the event carried a signature (the subscriber's "
                                     "secret is known from its latest event).")
    duration_ms: float = Field(description="How long the attempt took.")
