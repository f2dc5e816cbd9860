"""The PostgreSQL ledger's transactions for dropped files, replays and disabled subscribers.

Each function gets a connection in an open transaction and the clock's `now`; `postgres.py`
begins and commits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from imagedrop.ledger import Delivery, DropItem, Job
from imagedrop.ledger._pg_batches import create_batch
from imagedrop.ledger._pg_jobs import create_jobs, rowcount
from imagedrop.ledger._pg_rows import (
    DELIVERY_COLUMNS,
    JOB_COLUMNS,
    JOB_COLUMNS_NO_DATA,
    delivery_from_row,
    job_from_row,
)
from imagedrop.ledger.pg_migrations import DROP_GROUP_LOCK


class _Duplicate(Exception):
    """Rolls back one drop's savepoint when its job turned out to be recorded already."""


async def record_drops(conn: Any, now: float, items: list[DropItem],
                       clock: Callable[[], float] | None = None) -> list[tuple[Job, bool]]:
    """Each new job joins its group's settling batch (made if none); duplicates join nothing.

    Two replicas dropping into one folder at once must not open two batches: each takes an
    advisory lock per group for the rest of its transaction, all of them up front and in one
    order (so two calls with the same groups cannot deadlock), and looks for the settling batch
    only once it holds the lock, in a statement whose snapshot sees the other's commit. `now`
    is read from `clock` (when given) after those locks: a wait behind another replica must
    not leave it stale. Items are written in dedupe_key order, so two replicas recording the
    same objects in different orders wait for each other instead of deadlocking; the results
    come back in the caller's order.
    """
    groups = sorted({item.batch.group_key for item in items
                     if item.batch is not None and item.batch.group_key})
    for group in groups:
        await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))",
                           DROP_GROUP_LOCK, group)
    if clock is not None:
        now = clock()
    if groups:
        # The groups' open batches, locked in id order (as replays and finishes lock them):
        # housekeeping cannot close one of them under us (close skips locked batches).
        await conn.execute(
            "SELECT 1 FROM batches WHERE group_key = ANY($1::text[]) AND NOT listing_done"
            " AND settle_until IS NOT NULL ORDER BY id FOR UPDATE", groups)
    out: list[tuple[Job, bool] | None] = [None] * len(items)
    for i in sorted(range(len(items)), key=lambda i: items[i].job.dedupe_key or ""):
        out[i] = await _record_drop(conn, now, items[i])
    return [pair for pair in out if pair is not None]


async def _record_drop(conn: Any, now: float, item: DropItem) -> tuple[Job, bool]:
    job = item.job
    if job.dedupe_key is not None:
        row = await conn.fetchrow(f"SELECT {JOB_COLUMNS} FROM jobs WHERE dedupe_key = $1",
                                  job.dedupe_key)
        if row is not None:
            return job_from_row(row), False
    if item.batch is None:
        [pair] = await create_jobs(conn, now, [job])
        return pair
    try:
        # A savepoint: a same-key job committed by a call outside our group lock makes this
        # one a duplicate, and then the batch it opened or pushed out must not change.
        async with conn.transaction():
            batch_id = await _settling_batch(conn, now, item)
            seq = await conn.fetchval(
                "SELECT COALESCE(MAX(seq) + 1, 0) FROM jobs WHERE batch_id = $1", batch_id)
            [(recorded, new)] = await create_jobs(
                conn, now, [replace(job, batch_id=batch_id, seq=seq)])
            if not new:
                raise _Duplicate
    except _Duplicate:
        pass
    return recorded, new


async def _settling_batch(conn: Any, now: float, item: DropItem) -> str:
    """The id of the group's batch still collecting images, its deadline pushed out.

    The row lock (FOR UPDATE) orders this against housekeeping: a batch it closed meanwhile
    is re-checked, found closed and passed over (a new batch opens); one we lock cannot be
    closed until our job is committed in it, so its summary counts the job.
    """
    assert item.batch is not None and item.batch.group_key
    row = await conn.fetchrow(
        "SELECT id, created_at FROM batches WHERE group_key = $1 AND NOT listing_done"
        " AND settle_until IS NOT NULL AND settle_until > $2"
        " ORDER BY created_at DESC, pos DESC LIMIT 1 FOR UPDATE",
        item.batch.group_key, now,
    )
    if row is None:
        batch_id = (await create_batch(conn, now, item.batch)).id
        opened = now
    else:
        batch_id, opened = row["id"], row["created_at"]
    until = min(now + item.settle_seconds, opened + item.max_settle_seconds)
    await conn.execute("UPDATE batches SET settle_until = $1 WHERE id = $2",
                       float(until), batch_id)
    return batch_id


async def close_settled_batches(conn: Any, now: float) -> list[str]:
    """Close settled drop batches; one a drop is joining right now (row locked) is skipped and
    closed on a later round, if its deadline has not moved by then."""
    rows = await conn.fetch(
        "UPDATE batches SET listing_done = true WHERE id IN (SELECT id FROM batches"
        " WHERE NOT listing_done AND settle_until IS NOT NULL AND settle_until <= $1"
        " FOR UPDATE SKIP LOCKED)"
        " AND NOT listing_done AND settle_until <= $1 RETURNING id",
        now,
    )
    return [row["id"] for row in rows]


async def versions_with_jobs(conn: Any, now: float, bucket: str,
                             versions: list[tuple[str, str]]) -> set[tuple[str, str]]:
    rows = await conn.fetch(
        "SELECT DISTINCT j.source_key, j.source_etag FROM jobs j"
        " JOIN unnest($2::text[], $3::text[]) AS v(key, etag)"
        " ON j.source_key = v.key AND j.source_etag = v.etag WHERE j.source_bucket = $1",
        bucket, [k for k, _ in versions], [e for _, e in versions],
    )
    return {(row[0], row[1]) for row in rows}


async def find_completed_version(conn: Any, now: float, version_key: str) -> Job | None:
    row = await conn.fetchrow(
        f"SELECT {JOB_COLUMNS_NO_DATA} FROM jobs WHERE version_key = $1 AND state = 'completed'"
        " ORDER BY finished_at DESC, pos DESC LIMIT 1",
        version_key,
    )
    return None if row is None else job_from_row(row)


async def requeue_jobs(
    conn: Any, now: float, job_ids: list[str] | None, batch_id: str | None,
    bucket: str | None, prefix: str | None, include_completed: bool,
) -> list[Job]:
    states = ["failed", "completed"] if include_completed else ["failed"]
    filters = {"job_ids": job_ids, "batch_id": batch_id, "bucket": bucket, "prefix": prefix}
    where, params = _filters(1, **filters)
    # Lock the batches first, as finish_batch does, so a finish cannot slip in between
    # requeueing a batch's jobs and reopening it.
    await conn.execute(
        "SELECT 1 FROM batches WHERE id IN (SELECT batch_id FROM jobs"
        f" WHERE state = ANY($1::text[]) AND {where}) ORDER BY id FOR UPDATE",
        states, *params,
    )
    where, params = _filters(2, **filters)
    rows = await conn.fetch(
        "UPDATE jobs SET state = 'queued', attempts = 0, run_after = $1, error = NULL,"
        " finished_at = NULL, lease_owner = NULL, lease_expires = NULL,"
        " generation = generation + (state = 'completed')::int"
        f" WHERE state = ANY($2::text[]) AND {where} RETURNING pos, {JOB_COLUMNS_NO_DATA}",
        now, states, *params,
    )
    rows.sort(key=lambda r: (r["created_at"], r["pos"]))
    jobs = [job_from_row(row) for row in rows]
    batches = sorted({job.batch_id for job in jobs if job.batch_id})
    if batches:
        # A replayed batch reports again: its old summary is kept in `extra`.
        await conn.execute(
            "UPDATE batches SET finished_at = NULL, summary = NULL,"
            " extra = jsonb_set(extra, '{previous_summary}', COALESCE(summary, 'null'::jsonb))"
            " WHERE finished_at IS NOT NULL AND id = ANY($1::text[])",
            batches,
        )
    return jobs


async def requeue_deliveries(
    conn: Any, now: float, delivery_ids: list[str] | None, job_id: str | None,
    batch_id: str | None,
) -> list[Delivery]:
    where, params = _filters(1, delivery_ids=delivery_ids, job_id=job_id, batch_id=batch_id)
    rows = await conn.fetch(
        "UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = $1,"
        " finished_at = NULL, lease_owner = NULL, lease_expires = NULL"
        f" WHERE state IN ('failed', 'disabled') AND {where}"
        f" RETURNING pos, {DELIVERY_COLUMNS}",
        now, *params,
    )
    rows.sort(key=lambda r: (r["created_at"], r["pos"]))
    return [delivery_from_row(row) for row in rows]


async def disable_endpoint(conn: Any, now: float, url: str, reason: str) -> None:
    await conn.execute("INSERT INTO endpoints (url, disabled_at, reason) VALUES ($1, $2, $3)"
                       " ON CONFLICT (url) DO NOTHING", url, now, reason)


async def enable_endpoint(conn: Any, now: float, url: str) -> bool:
    return rowcount(await conn.execute("DELETE FROM endpoints WHERE url = $1", url)) == 1


async def disabled_endpoints(conn: Any, now: float, urls: list[str]) -> dict[str, str]:
    rows = await conn.fetch("SELECT url, reason FROM endpoints WHERE url = ANY($1::text[])",
                            urls)
    return {row["url"]: row["reason"] for row in rows}


def _filters(first: int, **given: object) -> tuple[str, list[object]]:
    """AND-ed WHERE conditions for the filters given, numbered from `$first + 1`; refuses an
    unfiltered (whole-table) call."""
    clauses: list[str] = []
    params: list[object] = []
    columns = {"job_ids": "id", "delivery_ids": "id", "batch_id": "batch_id",
               "job_id": "job_id", "bucket": "source_bucket"}
    for name, value in given.items():
        if value is None:
            continue
        params.append(value)
        n = first + len(params)
        if name == "prefix":
            # LIKE would treat % and _ in keys as wildcards; compare the key's start instead.
            clauses.append(f"starts_with(source_key, ${n}::text)")
        elif isinstance(value, list):
            clauses.append(f"{columns[name]} = ANY(${n}::text[])")
        else:
            clauses.append(f"{columns[name]} = ${n}::text")
    if not clauses:
        raise ValueError("a filter is required (ids, batch, job, bucket or prefix)")
    return " AND ".join(clauses), params
