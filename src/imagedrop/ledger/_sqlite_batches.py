"""The SQLite ledger's batch and delivery transactions, run on the ledger's own thread.

Each function gets an open transaction and the clock's `now`; `sqlite.py` begins and commits.
"""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import replace
from typing import Any

from imagedrop.errors import NotFound
from imagedrop.ledger import (
    Batch,
    BatchProgress,
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    NewBatch,
    NewDelivery,
    NewJob,
)
from imagedrop.ledger._sqlite_jobs import create_jobs, insert_deliveries
from imagedrop.ledger._sqlite_rows import (
    ATTEMPT_COLUMNS,
    BATCH_COLUMNS,
    DELIVERY_COLUMNS,
    attempt_from_row,
    batch_from_row,
    delivery_from_row,
    dumps,
)

# -- batches ------------------------------------------------------------------------------


def create_batch(conn: sqlite3.Connection, now: float, new: NewBatch) -> Batch:
    batch_id = new.id or str(uuid.uuid4())
    conn.execute(
        "INSERT INTO batches (id, kind, bucket, prefix, output_bucket, output_prefix, recipe,"
        " callback_url, listing_done, created_at, extra, group_key)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (batch_id, new.kind, new.bucket, new.prefix, new.output_bucket, new.output_prefix,
         dumps(new.recipe), new.callback_url, int(new.listing_done), now, dumps(new.extra),
         new.group_key),
    )
    batch = get_batch(conn, now, batch_id)
    assert batch is not None  # just inserted in this transaction
    return batch


def get_batch(conn: sqlite3.Connection, now: float, batch_id: str) -> Batch | None:
    row = conn.execute(f"SELECT {BATCH_COLUMNS} FROM batches WHERE id = ?", (batch_id,)).fetchone()
    return None if row is None else batch_from_row(row)


def claim_listing(
    conn: sqlite3.Connection, now: float, owner: str, lease_seconds: float
) -> Batch | None:
    """Lease the oldest batch still being listed whose lister is absent or lapsed."""
    row = conn.execute(
        "SELECT id FROM batches WHERE listing_done = 0 AND finished_at IS NULL"
        " AND settle_until IS NULL"  # drop batches are filled by notifications, not listed
        " AND (lease_owner IS NULL OR lease_expires < ?) ORDER BY created_at LIMIT 1",
        (now,),
    ).fetchone()
    if row is None:
        return None
    conn.execute(
        "UPDATE batches SET lease_owner = ?, lease_expires = ?, lease_seconds = ? WHERE id = ?",
        (owner, now + lease_seconds, lease_seconds, row[0]),
    )
    return get_batch(conn, now, row[0])


def release_listings(conn: sqlite3.Connection, now: float, owner: str) -> int:
    return conn.execute(
        "UPDATE batches SET lease_owner = NULL, lease_expires = NULL"
        " WHERE lease_owner = ? AND listing_done = 0", (owner,)).rowcount


def add_batch_jobs(
    conn: sqlite3.Connection, now: float, batch_id: str, owner: str, jobs: list[NewJob],
    cursor: str, done: bool,
) -> int:
    """Record a listed page if `owner` still holds the listing; returns how many jobs are new.

    "Holds" means lease_owner is still `owner`: a lapsed lease nobody took over is still safe
    to extend, since every listing change runs in this one serialised transaction.
    """
    row = conn.execute(
        "SELECT lease_owner, listing_done FROM batches WHERE id = ?", (batch_id,)
    ).fetchone()
    if row is None or row[0] != owner or row[1]:
        return 0
    own = [job if job.batch_id == batch_id else replace(job, batch_id=batch_id) for job in jobs]
    created = sum(1 for _, new in create_jobs(conn, now, own) if new)
    if done:  # the listing is over: nobody needs to hold it any more
        conn.execute(
            "UPDATE batches SET listing_cursor = ?, listing_done = 1, lease_owner = NULL,"
            " lease_expires = NULL WHERE id = ?",
            (cursor, batch_id),
        )
    else:
        conn.execute(
            "UPDATE batches SET listing_cursor = ?, lease_expires = ? + lease_seconds"
            " WHERE id = ?",
            (cursor, now, batch_id),
        )
    return created


def batch_progress(conn: sqlite3.Connection, now: float, batch_id: str) -> BatchProgress:
    row = conn.execute(
        "SELECT listing_done, finished_at FROM batches WHERE id = ?", (batch_id,)
    ).fetchone()
    if row is None:
        raise NotFound(f"no batch {batch_id}")
    counts = {"queued": 0, "running": 0, "completed": 0, "failed": 0}
    fallback = 0
    for state, count, local in conn.execute(
        "SELECT state, COUNT(*), SUM(fallback_local) FROM jobs WHERE batch_id = ? GROUP BY state",
        (batch_id,),
    ):
        counts[state] = count
        fallback += local if state == "completed" else 0
    return BatchProgress(
        total=sum(counts.values()), fallback_local=fallback, listing_done=bool(row[0]),
        finished=row[1] is not None, **counts,
    )


def finishable_batches(conn: sqlite3.Connection, now: float, limit: int) -> list[str]:
    rows = conn.execute(
        "SELECT id FROM batches b WHERE listing_done = 1 AND finished_at IS NULL"
        " AND NOT EXISTS (SELECT 1 FROM jobs WHERE batch_id = b.id"
        " AND state IN ('queued', 'running')) ORDER BY created_at LIMIT ?",
        (limit,),
    )
    return [row[0] for row in rows]


def finish_batch(
    conn: sqlite3.Connection, now: float, batch_id: str, summary: dict[str, Any],
    deliveries: list[NewDelivery],
) -> bool:
    """Close the batch if its listing is done and no job is left to run; True only once."""
    cursor = conn.execute(
        "UPDATE batches SET finished_at = ?, summary = ?, lease_owner = NULL,"
        " lease_expires = NULL WHERE id = ? AND finished_at IS NULL AND listing_done = 1"
        " AND NOT EXISTS (SELECT 1 FROM jobs WHERE batch_id = ?"
        " AND state IN ('queued', 'running'))",
        (now, dumps(summary), batch_id, batch_id),
    )
    if cursor.rowcount != 1:
        return False
    insert_deliveries(conn, now, deliveries, batch_id=batch_id)
    return True


# -- deliveries ---------------------------------------------------------------------------


def claim_deliveries(
    conn: sqlite3.Connection, now: float, owner: str, limit: int, lease_seconds: float
) -> list[Delivery]:
    ids = [row[0] for row in conn.execute(
        "SELECT id FROM deliveries WHERE state = 'pending' AND next_attempt_at <= ?"
        " AND (lease_owner IS NULL OR lease_expires < ?)"
        " ORDER BY next_attempt_at, created_at LIMIT ?",
        (now, now, limit),
    )]
    if not ids:
        return []
    rows = conn.execute(
        "UPDATE deliveries SET lease_owner = ?, lease_expires = ?"
        f" WHERE id IN (SELECT value FROM json_each(?)) RETURNING {DELIVERY_COLUMNS}",
        (owner, now + lease_seconds, dumps(ids)),
    ).fetchall()
    by_id = {d.id: d for d in map(delivery_from_row, rows)}
    return [by_id[delivery_id] for delivery_id in ids]


def record_attempt(
    conn: sqlite3.Connection, now: float, delivery_id: str, owner: str,
    attempt: DeliveryAttempt, state: DeliveryState, next_attempt_at: float | None,
) -> bool:
    """Record the attempt; move the delivery on if `owner` holds it. True if it was moved on.

    The attempt row is always written (the request was made, the history must say so), but a
    sender whose lease was taken over must not overwrite the new holder's outcome.
    """
    final = state is not DeliveryState.PENDING
    cursor = conn.execute(
        "UPDATE deliveries SET attempts = attempts + 1, last_status = ?, last_error = ?,"
        " state = ?, next_attempt_at = ?, finished_at = ?, lease_owner = NULL,"
        " lease_expires = NULL WHERE id = ? AND state = 'pending' AND lease_owner = ?",
        (attempt.status, attempt.error, str(state),
         now if next_attempt_at is None else next_attempt_at, now if final else None,
         delivery_id, owner),
    )
    moved = cursor.rowcount == 1
    if not moved and get_delivery(conn, now, delivery_id) is None:
        raise NotFound(f"no delivery {delivery_id}")
    conn.execute(
        f"INSERT INTO delivery_attempts ({ATTEMPT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
        (delivery_id, attempt.attempt, attempt.at, attempt.status, attempt.error,
         attempt.duration_ms),
    )
    return moved


def get_delivery(conn: sqlite3.Connection, now: float, delivery_id: str) -> Delivery | None:
    row = conn.execute(
        f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = ?", (delivery_id,)
    ).fetchone()
    return None if row is None else delivery_from_row(row)


def list_deliveries(
    conn: sqlite3.Connection, now: float, job_id: str | None, batch_id: str | None
) -> list[Delivery]:
    where, params = [], []
    if job_id is not None:
        where.append("job_id = ?")
        params.append(job_id)
    if batch_id is not None:
        where.append("batch_id = ?")
        params.append(batch_id)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(
        f"SELECT {DELIVERY_COLUMNS} FROM deliveries {clause} ORDER BY created_at, rowid", params
    )
    return [delivery_from_row(row) for row in rows]


def list_attempts(
    conn: sqlite3.Connection, now: float, delivery_id: str
) -> list[DeliveryAttempt]:
    rows = conn.execute(
        f"SELECT {ATTEMPT_COLUMNS} FROM delivery_attempts WHERE delivery_id = ?"
        " ORDER BY attempt, rowid",
        (delivery_id,),
    )
    return [attempt_from_row(row) for row in rows]
