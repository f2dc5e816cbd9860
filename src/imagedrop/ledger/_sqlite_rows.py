"""Turning SQLite rows into the ledger's dataclasses and back (pure, no I/O).

Column names equal dataclass field names, so the SELECT lists are derived from the dataclasses.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import fields
from typing import Any

from imagedrop.ledger import (
    Batch,
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    Job,
    JobKind,
    JobState,
    NewDelivery,
    NewJob,
)

JOB_COLUMNS = ", ".join(f.name for f in fields(Job))
# Listings leave the (possibly large) inline image out.
JOB_COLUMNS_NO_DATA = JOB_COLUMNS.replace("input_data", "NULL AS input_data")
BATCH_COLUMNS = ", ".join(f.name for f in fields(Batch))
DELIVERY_COLUMNS = ", ".join(f.name for f in fields(Delivery))
ATTEMPT_COLUMNS = ", ".join(f.name for f in fields(DeliveryAttempt))


def dumps(value: Any) -> str:
    """Compact JSON for the text columns."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _floats(values: dict[str, Any], names: tuple[str, ...]) -> None:
    # SQLite stores whole REALs as integers and UPDATE ... RETURNING hands them back as int.
    for name in names:
        if values[name] is not None:
            values[name] = float(values[name])


_JOB_TIMES = ("run_after", "lease_expires", "created_at", "started_at", "finished_at")
_DELIVERY_TIMES = ("next_attempt_at", "lease_expires", "created_at", "finished_at")
_BATCH_TIMES = ("lease_expires", "created_at", "finished_at", "settle_until")


def job_from_row(row: sqlite3.Row) -> Job:
    values = dict(row)
    values["kind"] = JobKind(values["kind"])
    values["state"] = JobState(values["state"])
    values["recipe"] = json.loads(values["recipe"])
    values["result"] = _loads(values["result"])
    _floats(values, _JOB_TIMES)
    return Job(**values)


def new_job_row(job: NewJob, job_id: str, now: float) -> tuple[Any, ...]:
    """Parameters for `INSERT_JOB`, in its column order."""
    return (
        job_id, str(job.kind), job.filename, dumps(job.recipe), job.dedupe_key, job.batch_id,
        job.seq, job.source_bucket, job.source_key, job.source_etag, job.input_data,
        job.output_bucket, job.output_key, job.callback_url, job.max_attempts, job.run_after, now,
        job.version_key,
    )


INSERT_JOB = (
    "INSERT INTO jobs (id, kind, state, filename, recipe, dedupe_key, batch_id, seq,"
    " source_bucket, source_key, source_etag, input_data, output_bucket, output_key,"
    " callback_url, max_attempts, run_after, created_at, version_key)"
    " VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    # Any uniqueness conflict (dedupe_key, or a caller-chosen id) means "already recorded".
    " ON CONFLICT DO NOTHING"
)


def job_from_new(job: NewJob, job_id: str, now: float) -> Job:
    """The Job a fresh insert of `job` produced, without reading it back (create is hot)."""
    return Job(
        id=job_id, kind=JobKind(job.kind), state=JobState.QUEUED, filename=job.filename,
        recipe=json.loads(dumps(job.recipe)), dedupe_key=job.dedupe_key, batch_id=job.batch_id,
        seq=job.seq, source_bucket=job.source_bucket, source_key=job.source_key,
        source_etag=job.source_etag, input_data=job.input_data, output_bucket=job.output_bucket,
        output_key=job.output_key, callback_url=job.callback_url, attempts=0,
        max_attempts=job.max_attempts, run_after=job.run_after, lease_owner=None,
        lease_expires=None, created_at=now, started_at=None, finished_at=None, result=None,
        error=None, last_error=None, version_key=job.version_key, generation=0,
    )


def batch_from_row(row: sqlite3.Row) -> Batch:
    values = dict(row)
    values["listing_done"] = bool(values["listing_done"])
    values["recipe"] = json.loads(values["recipe"])
    values["summary"] = _loads(values["summary"])
    values["extra"] = json.loads(values["extra"])
    _floats(values, _BATCH_TIMES)
    return Batch(**values)


def delivery_from_row(row: sqlite3.Row) -> Delivery:
    values = dict(row)
    values["state"] = DeliveryState(values["state"])
    _floats(values, _DELIVERY_TIMES)
    return Delivery(**values)


def attempt_from_row(row: sqlite3.Row) -> DeliveryAttempt:
    return DeliveryAttempt(**dict(row))


INSERT_DELIVERY = (
    "INSERT INTO deliveries (id, kind, url, body, event_type, job_id, batch_id, secret_ref,"
    " state, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)"
)


def new_delivery_row(
    delivery: NewDelivery, delivery_id: str, now: float, *, job_id: str | None,
    batch_id: str | None,
) -> tuple[Any, ...]:
    """Parameters for `INSERT_DELIVERY`; the job/batch ids fill in what the caller left out."""
    return (
        delivery_id, delivery.kind, delivery.url, delivery.body, delivery.event_type,
        delivery.job_id or job_id, delivery.batch_id or batch_id, delivery.secret_ref,
        delivery.next_attempt_at, now,
    )
