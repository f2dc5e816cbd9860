"""The PostgreSQL ledger's batch and delivery transactions.

Each function gets a connection in an open transaction and the clock's `now`; `postgres.py`
begins and commits. Changes that must not race take the batch's row lock first.
"""

from __future__ import annotations

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
from imagedrop.ledger._pg_jobs import create_jobs, insert_deliveries
from imagedrop.ledger._pg_rows import (
    ATTEMPT_COLUMNS,
    BATCH_COLUMNS,
    DELIVERY_COLUMNS,
    attempt_from_row,
    batch_from_row,
    delivery_from_row,
    dumps,
    prefixed,
)

# -- batches ------------------------------------------------------------------------------


async def create_batch(conn: Any, now: float, new: NewBatch) -> Batch:
    row = await conn.fetchrow(
        "INSERT INTO batches (id, kind, bucket, prefix, output_bucket, output_prefix, recipe,"
        " callback_url, listing_done, created_at, extra, group_key)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb, $8, $9, $10, $11::text::jsonb, $12)"
        f" RETURNING {BATCH_COLUMNS}",
        new.id or str(uuid.uuid4()), new.kind, new.bucket, new.prefix, new.output_bucket,
        new.output_prefix, dumps(new.recipe), new.callback_url, new.listing_done, now,
        dumps(new.extra), new.group_key,
    )
    return batch_from_row(row)


async def get_batch(conn: Any, now: float, batch_id: str) -> Batch | None:
    row = await conn.fetchrow(f"SELECT {BATCH_COLUMNS} FROM batches WHERE id = $1", batch_id)
    return None if row is None else batch_from_row(row)


async def claim_listing(conn: Any, now: float, owner: str, lease_seconds: float) -> Batch | None:
    """Lease the oldest batch still being listed whose lister is absent or lapsed.

    A batch whose lister is writing a page right now holds its row lock and is skipped.
    """
    row = await conn.fetchrow(
        "WITH free AS MATERIALIZED (SELECT id FROM batches WHERE NOT listing_done"
        " AND finished_at IS NULL"
        " AND settle_until IS NULL"  # drop batches are filled by notifications, not listed
        " AND (lease_owner IS NULL OR lease_expires < $1) ORDER BY created_at, pos LIMIT 1"
        " FOR UPDATE SKIP LOCKED)"
        " UPDATE batches SET lease_owner = $2, lease_expires = $3, lease_seconds = $4"
        f" FROM free WHERE batches.id = free.id RETURNING {prefixed('batches', BATCH_COLUMNS)}",
        now, owner, now + lease_seconds, float(lease_seconds),
    )
    return None if row is None else batch_from_row(row)


async def release_listings(conn: Any, now: float, owner: str) -> int:
    status = await conn.execute(
        "UPDATE batches SET lease_owner = NULL, lease_expires = NULL"
        " WHERE lease_owner = $1 AND NOT listing_done", owner)
    return int(status.split()[-1])


async def add_batch_jobs(
    conn: Any, now: float, batch_id: str, owner: str, jobs: list[NewJob], cursor: str,
    done: bool,
) -> int:
    """Record a listed page if `owner` still holds the listing; returns how many jobs are new.

    The row lock taken first orders this page against a takeover, a finish or a replay.
    """
    row = await conn.fetchrow(
        "SELECT lease_owner, listing_done FROM batches WHERE id = $1 FOR UPDATE", batch_id
    )
    if row is None or row["lease_owner"] != owner or row["listing_done"]:
        return 0
    own = [job if job.batch_id == batch_id else replace(job, batch_id=batch_id) for job in jobs]
    created = sum(1 for _, new in await create_jobs(conn, now, own) if new) if own else 0
    if done:  # the listing is over: nobody needs to hold it any more
        await conn.execute(
            "UPDATE batches SET listing_cursor = $1, listing_done = true, lease_owner = NULL,"
            " lease_expires = NULL WHERE id = $2",
            cursor, batch_id,
        )
    else:
        await conn.execute(
            "UPDATE batches SET listing_cursor = $1, lease_expires = $2 + lease_seconds"
            " WHERE id = $3",
            cursor, now, batch_id,
        )
    return created


async def batch_progress(conn: Any, now: float, batch_id: str) -> BatchProgress:
    row = await conn.fetchrow(
        "SELECT listing_done, finished_at FROM batches WHERE id = $1", batch_id
    )
    if row is None:
        raise NotFound(f"no batch {batch_id}")
    counts = {"queued": 0, "running": 0, "completed": 0, "failed": 0}
    fallback = 0
    for state, count, local in await conn.fetch(
        "SELECT state, COUNT(*), COUNT(*) FILTER (WHERE fallback_local) FROM jobs"
        " WHERE batch_id = $1 GROUP BY state",
        batch_id,
    ):
        counts[state] = count
        fallback += local if state == "completed" else 0
    return BatchProgress(
        total=sum(counts.values()), fallback_local=fallback, listing_done=row["listing_done"],
        finished=row["finished_at"] is not None, **counts,
    )


async def finishable_batches(conn: Any, now: float, limit: int) -> list[str]:
    rows = await conn.fetch(
        "SELECT id FROM batches b WHERE listing_done AND finished_at IS NULL"
        " AND NOT EXISTS (SELECT 1 FROM jobs WHERE batch_id = b.id"
        " AND state IN ('queued', 'running')) ORDER BY created_at, pos LIMIT $1",
        max(limit, 0),
    )
    return [row["id"] for row in rows]


async def finish_batch(
    conn: Any, now: float, batch_id: str, summary: dict[str, Any],
    deliveries: list[NewDelivery],
) -> bool:
    """Close the batch if its listing is done and no job is left to run; True only once.

    The row lock comes first and the job check after it, in a later statement whose snapshot
    sees whatever a lister or replay committed while we waited (one statement would check the
    jobs as of before the wait).
    """
    row = await conn.fetchrow(
        "SELECT listing_done, finished_at FROM batches WHERE id = $1 FOR UPDATE", batch_id
    )
    if row is None or not row["listing_done"] or row["finished_at"] is not None:
        return False
    if await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM jobs WHERE batch_id = $1"
        " AND state IN ('queued', 'running'))",
        batch_id,
    ):
        return False
    await conn.execute(
        "UPDATE batches SET finished_at = $1, summary = $2::text::jsonb, lease_owner = NULL,"
        " lease_expires = NULL WHERE id = $3",
        now, dumps(summary), batch_id,
    )
    await insert_deliveries(conn, now, deliveries, batch_id=batch_id)
    return True


# -- deliveries ---------------------------------------------------------------------------

_CLAIM_DELIVERIES = (
    "WITH due AS MATERIALIZED (SELECT id FROM deliveries WHERE state = 'pending'"
    " AND next_attempt_at <= $1 AND (lease_owner IS NULL OR lease_expires < $1)"
    " ORDER BY next_attempt_at, created_at, pos LIMIT $2 FOR UPDATE SKIP LOCKED)"
    " UPDATE deliveries SET lease_owner = $3, lease_expires = $4 FROM due"
    f" WHERE deliveries.id = due.id RETURNING deliveries.pos,"
    f" {prefixed('deliveries', DELIVERY_COLUMNS)}"
)


async def claim_deliveries(
    conn: Any, now: float, owner: str, limit: int, lease_seconds: float
) -> list[Delivery]:
    rows = await conn.fetch(_CLAIM_DELIVERIES, now, limit, owner, now + lease_seconds)
    rows.sort(key=lambda r: (r["next_attempt_at"], r["created_at"], r["pos"]))
    return [delivery_from_row(row) for row in rows]


async def record_attempt(
    conn: Any, now: float, delivery_id: str, owner: str, attempt: DeliveryAttempt,
    state: DeliveryState, next_attempt_at: float | None,
) -> bool:
    """Record the attempt; move the delivery on if `owner` holds it. True if it was moved on.

    The attempt row is always written (the request was made, the history must say so), but a
    sender whose lease was taken over must not overwrite the new holder's outcome.
    """
    final = state is not DeliveryState.PENDING
    status = await conn.execute(
        "UPDATE deliveries SET attempts = attempts + 1, last_status = $1, last_error = $2,"
        " state = $3, next_attempt_at = $4, finished_at = $5, lease_owner = NULL,"
        " lease_expires = NULL WHERE id = $6 AND state = 'pending' AND lease_owner = $7",
        attempt.status, attempt.error, str(state),
        now if next_attempt_at is None else float(next_attempt_at), now if final else None,
        delivery_id, owner,
    )
    moved = status == "UPDATE 1"
    if not moved and await get_delivery(conn, now, delivery_id) is None:
        raise NotFound(f"no delivery {delivery_id}")
    await conn.execute(
        f"INSERT INTO delivery_attempts ({ATTEMPT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)",
        delivery_id, attempt.attempt, float(attempt.at), attempt.status, attempt.error,
        float(attempt.duration_ms),
    )
    return moved


async def get_delivery(conn: Any, now: float, delivery_id: str) -> Delivery | None:
    row = await conn.fetchrow(
        f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = $1", delivery_id
    )
    return None if row is None else delivery_from_row(row)


async def list_deliveries(
    conn: Any, now: float, job_id: str | None, batch_id: str | None
) -> list[Delivery]:
    where, params = [], []
    if job_id is not None:
        params.append(job_id)
        where.append(f"job_id = ${len(params)}")
    if batch_id is not None:
        params.append(batch_id)
        where.append(f"batch_id = ${len(params)}")
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = await conn.fetch(
        f"SELECT {DELIVERY_COLUMNS} FROM deliveries {clause} ORDER BY created_at, pos", *params
    )
    return [delivery_from_row(row) for row in rows]


async def list_attempts(conn: Any, now: float, delivery_id: str) -> list[DeliveryAttempt]:
    rows = await conn.fetch(
        f"SELECT {ATTEMPT_COLUMNS} FROM delivery_attempts WHERE delivery_id = $1"
        " ORDER BY attempt, pos",
        delivery_id,
    )
    return [attempt_from_row(row) for row in rows]
