"""The SQLite ledger's transactions for dropped files, replays and disabled subscribers.

Each function gets an open transaction and the clock's `now`; `sqlite.py` begins and commits.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace

from imagedrop.ledger import Delivery, DropItem, Job
from imagedrop.ledger._sqlite_batches import create_batch
from imagedrop.ledger._sqlite_jobs import create_jobs
from imagedrop.ledger._sqlite_rows import (
    DELIVERY_COLUMNS,
    JOB_COLUMNS,
    JOB_COLUMNS_NO_DATA,
    delivery_from_row,
    dumps,
    job_from_row,
)


def record_drops(conn: sqlite3.Connection, now: float, items: list[DropItem]
                 ) -> list[tuple[Job, bool]]:
    """Each new job joins its group's settling batch (made if none); duplicates join nothing."""
    out: list[tuple[Job, bool]] = []
    for item in items:
        job = item.job
        if job.dedupe_key is not None:
            row = conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE dedupe_key = ?",
                               (job.dedupe_key,)).fetchone()
            if row is not None:
                out.append((job_from_row(row), False))
                continue
        if item.batch is not None:
            job = replace(job, batch_id=_settling_batch(conn, now, item), seq=0)
            # The next position in the batch: one index probe, however large the batch grows.
            (job.seq,) = conn.execute("SELECT COALESCE(MAX(seq) + 1, 0) FROM jobs"
                                      " WHERE batch_id = ?", (job.batch_id,)).fetchone()
        out.extend(create_jobs(conn, now, [job]))
    return out


def _settling_batch(conn: sqlite3.Connection, now: float, item: DropItem) -> str:
    """The id of the group's batch still collecting images, its deadline pushed out."""
    assert item.batch is not None and item.batch.group_key
    row = conn.execute(
        "SELECT id, created_at FROM batches WHERE group_key = ? AND listing_done = 0"
        " AND settle_until IS NOT NULL AND settle_until > ? ORDER BY created_at DESC LIMIT 1",
        (item.batch.group_key, now),
    ).fetchone()
    if row is None:
        batch_id = create_batch(conn, now, item.batch).id
        opened = now
    else:
        batch_id, opened = row
    until = min(now + item.settle_seconds, opened + item.max_settle_seconds)
    conn.execute("UPDATE batches SET settle_until = ? WHERE id = ?", (until, batch_id))
    return batch_id


def close_settled_batches(conn: sqlite3.Connection, now: float) -> list[str]:
    rows = conn.execute(
        "UPDATE batches SET listing_done = 1 WHERE listing_done = 0"
        " AND settle_until IS NOT NULL AND settle_until <= ? RETURNING id",
        (now,),
    ).fetchall()
    return [row[0] for row in rows]


def versions_with_jobs(conn: sqlite3.Connection, now: float, bucket: str,
                       versions: list[tuple[str, str]]) -> set[tuple[str, str]]:
    rows = conn.execute(
        "SELECT DISTINCT j.source_key, j.source_etag FROM json_each(?) v JOIN jobs j"
        " ON j.source_bucket = ? AND j.source_key = json_extract(v.value, '$[0]')"
        " AND j.source_etag = json_extract(v.value, '$[1]')",
        (dumps([list(v) for v in versions]), bucket),
    )
    return {(key, etag) for key, etag in rows}


def find_completed_version(conn: sqlite3.Connection, now: float, version_key: str
                           ) -> Job | None:
    row = conn.execute(
        f"SELECT {JOB_COLUMNS_NO_DATA} FROM jobs WHERE version_key = ? AND state = 'completed'"
        " ORDER BY finished_at DESC LIMIT 1",
        (version_key,),
    ).fetchone()
    return None if row is None else job_from_row(row)


def requeue_jobs(
    conn: sqlite3.Connection, now: float, job_ids: list[str] | None, batch_id: str | None,
    bucket: str | None, prefix: str | None, include_completed: bool,
) -> list[Job]:
    where, params = _filters(job_ids=job_ids, batch_id=batch_id, bucket=bucket, prefix=prefix)
    states = ("failed", "completed") if include_completed else ("failed",)
    rows = conn.execute(
        "UPDATE jobs SET state = 'queued', attempts = 0, run_after = ?, error = NULL,"
        " finished_at = NULL, lease_owner = NULL, lease_expires = NULL,"
        " generation = generation + (state = 'completed')"
        f" WHERE state IN ({', '.join('?' * len(states))}) AND {where}"
        f" RETURNING {JOB_COLUMNS_NO_DATA}",
        (now, *states, *params),
    ).fetchall()
    jobs = [job_from_row(row) for row in rows]
    batches = sorted({job.batch_id for job in jobs if job.batch_id})
    if batches:
        # A replayed batch reports again: its old summary is kept in `extra`.
        conn.execute(
            "UPDATE batches SET finished_at = NULL, summary = NULL,"
            " extra = json_set(extra, '$.previous_summary', json(COALESCE(summary, 'null')))"
            " WHERE finished_at IS NOT NULL AND id IN (SELECT value FROM json_each(?))",
            (dumps(batches),),
        )
    return jobs


def requeue_deliveries(
    conn: sqlite3.Connection, now: float, delivery_ids: list[str] | None, job_id: str | None,
    batch_id: str | None,
) -> list[Delivery]:
    where, params = _filters(delivery_ids=delivery_ids, job_id=job_id, batch_id=batch_id)
    rows = conn.execute(
        "UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = ?,"
        " finished_at = NULL, lease_owner = NULL, lease_expires = NULL"
        f" WHERE state IN ('failed', 'disabled') AND {where} RETURNING {DELIVERY_COLUMNS}",
        (now, *params),
    ).fetchall()
    return [delivery_from_row(row) for row in rows]


def disable_endpoint(conn: sqlite3.Connection, now: float, url: str, reason: str) -> None:
    conn.execute("INSERT INTO endpoints (url, disabled_at, reason) VALUES (?, ?, ?)"
                 " ON CONFLICT (url) DO NOTHING", (url, now, reason))


def enable_endpoint(conn: sqlite3.Connection, now: float, url: str) -> bool:
    return conn.execute("DELETE FROM endpoints WHERE url = ?", (url,)).rowcount == 1


def disabled_endpoints(conn: sqlite3.Connection, now: float, urls: list[str]) -> dict[str, str]:
    rows = conn.execute("SELECT url, reason FROM endpoints WHERE url IN"
                        " (SELECT value FROM json_each(?))", (dumps(urls),))
    return dict(rows.fetchall())


def _filters(**given: object) -> tuple[str, list[object]]:
    """AND-ed WHERE conditions for the filters given; refuses an unfiltered (whole-table) call."""
    clauses: list[str] = []
    params: list[object] = []
    columns = {"job_ids": "id", "delivery_ids": "id", "batch_id": "batch_id",
               "job_id": "job_id", "bucket": "source_bucket"}
    for name, value in given.items():
        if value is None:
            continue
        if name == "prefix":
            # LIKE would treat % and _ in keys as wildcards; compare the key's start instead.
            clauses.append("substr(source_key, 1, ?) = ?")
            params.extend([len(str(value)), value])
        elif isinstance(value, list):
            clauses.append(f"{columns[name]} IN (SELECT value FROM json_each(?))")
            params.append(dumps(value))
        else:
            clauses.append(f"{columns[name]} = ?")
            params.append(value)
    if not clauses:
        raise ValueError("a filter is required (ids, batch, job, bucket or prefix)")
    return " AND ".join(clauses), params
