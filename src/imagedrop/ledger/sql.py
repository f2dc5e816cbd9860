"""Statements and rows: what a ledger transaction body yields, and how rows become records.

A transaction body is a generator that yields `Stmt`s and is sent each one's answer (rows, one
row, one value or a row count); drivers run it on SQLite or PostgreSQL. This module performs no
I/O. SQL is written once with `:name` parameters; the PostgreSQL driver numbers them.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any, Literal, TypeVar

from imagedrop.errors import InputError
from imagedrop.payloads import BatchSummary
from imagedrop.recipes import JobResult, Recipe
from imagedrop.records import (
    Batch,
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    Job,
    JobKind,
    JobState,
    NewJob,
)

T = TypeVar("T")
Want = Literal["rows", "row", "value", "count", "none", "now"]


@dataclass(frozen=True, slots=True)
class Stmt:
    """One statement and what its body wants back: all rows, one row (or None), the first
    column of the first row (or None), the number of rows changed, nothing, or (`now`, with no
    SQL) the driver's clock read again."""

    sql: str
    params: Mapping[str, Any] | Sequence[Any]
    want: Want = "none"


#: A transaction body: yields statements, receives their answers, returns its result.
Tx = Generator[Stmt, Any, T]

NOW = Stmt("", (), "now")


def rows(sql: str, **params: Any) -> Stmt:
    return Stmt(sql, params, "rows")


def row(sql: str, **params: Any) -> Stmt:
    return Stmt(sql, params, "row")


def value(sql: str, **params: Any) -> Stmt:
    return Stmt(sql, params, "value")


def count(sql: str, **params: Any) -> Stmt:
    return Stmt(sql, params, "count")


def run(sql: str, **params: Any) -> Stmt:
    return Stmt(sql, params, "none")


async def drive(body: Tx[T], answer: Callable[[Stmt], Awaitable[Any]]) -> T:
    """Run a transaction body to its end, answering each statement it yields."""
    try:
        stmt = next(body)
        while True:
            stmt = body.send(await answer(stmt))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    finally:
        body.close()


def one_statement(answer: Callable[[Stmt], Awaitable[Any]]
                   ) -> Callable[[Stmt], Awaitable[Any]]:
    """`answer` for a body run as one statement ("single"), refusing its second: where that
    runs outside a transaction (PostgreSQL) the second would commit apart from the first, so
    such a body must run as a "write". Refused on every database, so any backend's tests
    catch it."""
    ran = False

    async def once(stmt: Stmt) -> Any:
        nonlocal ran
        if stmt.want != "now":
            if ran:
                raise RuntimeError("a ledger body run as one statement ran a second one")
            ran = True
        return await answer(stmt)
    return once


def result_of(coro: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that never suspends: `drive` with synchronous answers (SQLite,
    on its own thread, outside any event loop)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("a synchronous ledger body suspended")


# -- numbered parameters (PostgreSQL) ----------------------------------------------------------

# A `:name` that is not half of a `::type` cast, outside single-quoted literals.
_PARAM = re.compile(r"'(?:[^']|'')*'|(?<![:\w]):([A-Za-z_]\w*)")


@lru_cache(maxsize=512)
def numbered(sql: str) -> tuple[str, tuple[str, ...]]:
    """`sql` with `:name` parameters as `$1, $2, …` and the names in that order (pure)."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:  # a string literal: left as it is
            return match.group(0)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _PARAM.sub(number, sql), tuple(names)


# -- records <-> rows ----------------------------------------------------------------------------

# Callback bodies live in a side table (schema V6: delivery_bodies), inline images too
# (job_inputs) or in a file beside the ledger that it names (V7); `tx_jobs.with_inputs` reads
# them. Rows recorded before V6 keep theirs in their own column.
_BODY = ("COALESCE((SELECT body FROM delivery_bodies WHERE delivery_id = deliveries.id),"
         " deliveries.body) AS body")
_BODY_SPOOL = "(SELECT spool FROM delivery_bodies WHERE delivery_id = deliveries.id) AS spool"
JOB_COLUMNS = ", ".join(f.name for f in fields(Job)).replace(
    "input_base64", "FALSE AS input_base64")
# Listings leave the (possibly large) inline image out.
JOB_COLUMNS_NO_DATA = JOB_COLUMNS.replace("input_data", "NULL AS input_data", 1)
BATCH_COLUMNS = ", ".join(f.name for f in fields(Batch))
DELIVERY_COLUMNS = ", ".join(f.name if f.name not in ("body", "spool") else
                             _BODY if f.name == "body" else _BODY_SPOOL for f in fields(Delivery))
ATTEMPT_COLUMNS = ", ".join(f.name for f in fields(DeliveryAttempt))

#: Columns of a new job, with the PostgreSQL type of each (bulk inserts send typed arrays).
JOB_INSERT: tuple[tuple[str, str], ...] = (
    ("id", "text"), ("kind", "text"), ("state", "text"), ("filename", "text"),
    ("recipe", "jsonb"), ("dedupe_key", "text"), ("batch_id", "text"), ("seq", "int4"),
    ("source_bucket", "text"), ("source_key", "text"), ("source_etag", "text"),
    ("input_data", "bytea"), ("output_bucket", "text"), ("output_key", "text"),
    ("callback_url", "text"), ("max_attempts", "int4"), ("run_after", "float8"),
    ("created_at", "float8"), ("version_key", "text"), ("blocked_by", "text"),
    ("request_id", "text"), ("traceparent", "text"),
)
DELIVERY_INSERT: tuple[tuple[str, str], ...] = (
    ("id", "text"), ("kind", "text"), ("url", "text"), ("body", "bytea"),
    ("event_type", "text"), ("job_id", "text"), ("batch_id", "text"), ("secret_ref", "text"),
    ("state", "text"), ("next_attempt_at", "float8"), ("created_at", "float8"),
    ("request_id", "text"), ("traceparent", "text"),
)

_JOB_TIMES = ("run_after", "lease_expires", "created_at", "started_at", "finished_at")
_DELIVERY_TIMES = ("next_attempt_at", "lease_expires", "created_at", "finished_at")
_BATCH_TIMES = ("lease_expires", "created_at", "finished_at", "settle_until")


def dumps(data: Any) -> str:
    """Compact JSON for the JSON columns (TEXT in SQLite, jsonb in PostgreSQL)."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _values(record: Mapping[str, Any], times: Iterable[str]) -> dict[str, Any]:
    values = dict(record)
    values.pop("pos", None)  # insertion order, selected only to sort by
    # SQLite hands whole REALs back as int; records hold floats.
    for name in times:
        if values[name] is not None:
            values[name] = float(values[name])
    return values


def job_from_row(record: Mapping[str, Any]) -> Job:
    values = _values(record, _JOB_TIMES)
    values["kind"] = JobKind(values["kind"])
    values["state"] = JobState(values["state"])
    values["recipe"] = Recipe.model_validate_json(values["recipe"])
    if values["result"] is not None:
        values["result"] = JobResult.model_validate_json(values["result"])
    values["input_base64"] = bool(values["input_base64"])
    return Job(**values)


def batch_from_row(record: Mapping[str, Any]) -> Batch:
    values = _values(record, _BATCH_TIMES)
    values["listing_done"] = bool(values["listing_done"])
    values["recipe"] = Recipe.model_validate_json(values["recipe"])
    if values["summary"] is not None:
        values["summary"] = BatchSummary.model_validate_json(values["summary"])
    values["extra"] = json.loads(values["extra"])
    return Batch(**values)


def delivery_from_row(record: Mapping[str, Any]) -> Delivery:
    values = _values(record, _DELIVERY_TIMES)
    values["state"] = DeliveryState(values["state"])
    return Delivery(**values)


def attempt_from_row(record: Mapping[str, Any]) -> DeliveryAttempt:
    values = _values(record, ("at", "duration_ms"))
    return DeliveryAttempt(**values)


JOB_INPUT_INSERT = (("job_id", "text"), ("data", "bytea"), ("encoding", "text"), ("spool", "text"))
DELIVERY_BODY_INSERT = (("delivery_id", "text"), ("body", "bytea"), ("spool", "text"))


def job_values(job: NewJob, job_id: str, now: float) -> tuple[Any, ...]:
    """A new job's values in `JOB_INSERT` order (its inline image goes to `job_inputs`)."""
    return (
        job_id, str(job.kind), "queued", job.filename, job.recipe.to_json(), job.dedupe_key,
        job.batch_id, job.seq, job.source_bucket, job.source_key, job.source_etag,
        None, job.output_bucket, job.output_key, job.callback_url, job.max_attempts,
        float(job.run_after), now, job.version_key, job.blocked_by, job.request_id,
        job.traceparent,
    )


def job_from_new(job: NewJob, job_id: str, now: float) -> Job:
    """The Job a fresh insert of `job` produced, without reading it back (create is hot)."""
    return Job(
        id=job_id, kind=JobKind(job.kind), state=JobState.QUEUED, filename=job.filename,
        recipe=job.recipe, dedupe_key=job.dedupe_key, batch_id=job.batch_id,
        seq=job.seq, source_bucket=job.source_bucket, source_key=job.source_key,
        source_etag=job.source_etag, input_data=job.input_data, input_base64=job.input_base64,
        output_bucket=job.output_bucket,
        output_key=job.output_key, callback_url=job.callback_url, attempts=0,
        max_attempts=job.max_attempts, run_after=float(job.run_after), lease_owner=None,
        lease_expires=None, created_at=now, started_at=None, finished_at=None, result=None,
        error=None, last_error=None, version_key=job.version_key, generation=0,
        blocked_by=job.blocked_by, request_id=job.request_id, traceparent=job.traceparent,
    )


# -- cursors of listings --------------------------------------------------------------------------

_CURSOR_MAX = 512


def encode_cursor(*values: float | int | str) -> str:
    """An opaque cursor (URL-safe) for a listing's next page: where the last page ended."""
    raw = json.dumps(list(values), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str, *shape: type) -> tuple[Any, ...]:
    """The values `encode_cursor` packed, checked against `shape` (their types, in order);
    InputError for anything else, as a cursor comes from the caller."""
    try:
        if len(text) > _CURSOR_MAX:
            raise ValueError
        values = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if not isinstance(values, list) or len(values) != len(shape):
            raise ValueError
        for item, kind in zip(values, shape, strict=True):
            # bool is an int to Python: never a valid position.
            if isinstance(item, bool) or not isinstance(item, kind if kind is not float
                                                         else (int, float)):
                raise ValueError
    except (ValueError, TypeError, UnicodeDecodeError):
        raise InputError("cursor: not one this listing gave out (use the `next` of the previous "
                         "page as it came)") from None
    return tuple(values)
