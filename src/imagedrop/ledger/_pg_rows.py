"""Turning PostgreSQL rows into the ledger's dataclasses, and the bulk INSERTs (pure, no I/O).

Column names equal dataclass field names, as in SQLite. JSON columns are jsonb, decoded by the
codec each pooled connection installs; inserts pass JSON as text and cast it in SQL.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
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
from imagedrop.ledger._sqlite_rows import dumps, job_from_new

__all__ = ["dumps", "job_from_new"]

JOB_COLUMNS = ", ".join(f.name for f in fields(Job))
# Listings leave the (possibly large) inline image out.
JOB_COLUMNS_NO_DATA = JOB_COLUMNS.replace("input_data", "NULL::bytea AS input_data")
BATCH_COLUMNS = ", ".join(f.name for f in fields(Batch))
DELIVERY_COLUMNS = ", ".join(f.name for f in fields(Delivery))
ATTEMPT_COLUMNS = ", ".join(f.name for f in fields(DeliveryAttempt))
_EXTRA = ("pos",)  # insertion order, selected by claims to sort their result


async def install_codecs(conn: Any) -> None:
    """Decode jsonb into Python values on every pooled connection (inserts pass JSON text)."""
    await conn.set_type_codec("jsonb", encoder=dumps, decoder=json.loads, schema="pg_catalog")


def prefixed(table: str, columns: str) -> str:
    """`a, b` as `t.a, t.b`: RETURNING after UPDATE … FROM must say which table it means."""
    return ", ".join(f"{table}.{name.strip()}" for name in columns.split(","))


def _values(row: Mapping[str, Any]) -> dict[str, Any]:
    values = dict(row)
    for name in _EXTRA:
        values.pop(name, None)
    return values


def job_from_row(row: Mapping[str, Any]) -> Job:
    values = _values(row)
    values["kind"] = JobKind(values["kind"])
    values["state"] = JobState(values["state"])
    return Job(**values)


def batch_from_row(row: Mapping[str, Any]) -> Batch:
    return Batch(**_values(row))


def delivery_from_row(row: Mapping[str, Any]) -> Delivery:
    values = _values(row)
    values["state"] = DeliveryState(values["state"])
    return Delivery(**values)


def attempt_from_row(row: Mapping[str, Any]) -> DeliveryAttempt:
    return DeliveryAttempt(**_values(row))


# One statement for any number of jobs: arrays in, rows out in the given order (ORDINALITY), so
# of two new jobs with one dedupe_key in a call the first is the one recorded.
_JOB_INSERT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "text"), ("kind", "text"), ("filename", "text"), ("recipe", "text"),
    ("dedupe_key", "text"), ("batch_id", "text"), ("seq", "int4"), ("source_bucket", "text"),
    ("source_key", "text"), ("source_etag", "text"), ("input_data", "bytea"),
    ("output_bucket", "text"), ("output_key", "text"), ("callback_url", "text"),
    ("max_attempts", "int4"), ("run_after", "float8"), ("version_key", "text"),
)
_N_JOB = len(_JOB_INSERT_COLUMNS)
INSERT_JOBS = (
    "INSERT INTO jobs (state, created_at, "
    + ", ".join(name for name, _ in _JOB_INSERT_COLUMNS)
    + f") SELECT 'queued', ${_N_JOB + 1}, "
    + ", ".join(f"{name}::jsonb" if name == "recipe" else name for name, _ in _JOB_INSERT_COLUMNS)
    + " FROM unnest("
    + ", ".join(f"${i}::{kind}[]" for i, (_, kind) in enumerate(_JOB_INSERT_COLUMNS, start=1))
    + ") WITH ORDINALITY AS t("
    + ", ".join(name for name, _ in _JOB_INSERT_COLUMNS)
    + ", ord) ORDER BY ord"
    # Any uniqueness conflict (dedupe_key, or a caller-chosen id) means "already recorded".
    + " ON CONFLICT DO NOTHING RETURNING id"
)


def job_arrays(jobs: list[NewJob], ids: list[str]) -> list[list[Any]]:
    """The column arrays `INSERT_JOBS` takes (its last parameter, `now`, is added by the caller)."""
    rows = [
        (job_id, str(job.kind), job.filename, dumps(job.recipe), job.dedupe_key, job.batch_id,
         job.seq, job.source_bucket, job.source_key, job.source_etag, job.input_data,
         job.output_bucket, job.output_key, job.callback_url, job.max_attempts,
         float(job.run_after), job.version_key)
        for job, job_id in zip(jobs, ids, strict=True)
    ]
    return [list(column) for column in zip(*rows, strict=True)]


INSERT_DELIVERIES = (
    "INSERT INTO deliveries (id, kind, url, body, event_type, job_id, batch_id, secret_ref,"
    " next_attempt_at, state, created_at)"
    " SELECT id, kind, url, body, event_type, job_id, batch_id, secret_ref, next_attempt_at,"
    " 'pending', $10 FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::text[],"
    " $6::text[], $7::text[], $8::text[], $9::float8[]) WITH ORDINALITY"
    " AS t(id, kind, url, body, event_type, job_id, batch_id, secret_ref, next_attempt_at, ord)"
    " ORDER BY ord"
)


def delivery_arrays(
    deliveries: list[NewDelivery], *, job_id: str | None, batch_id: str | None
) -> list[list[Any]]:
    """Column arrays for `INSERT_DELIVERIES`; a delivery without an id gets a uuid4 (its
    webhook-id), and the job/batch ids fill in what the caller left out."""
    rows = [
        (d.id or str(uuid.uuid4()), d.kind, d.url, d.body, d.event_type, d.job_id or job_id,
         d.batch_id or batch_id, d.secret_ref, float(d.next_attempt_at))
        for d in deliveries
    ]
    return [list(column) for column in zip(*rows, strict=True)]
