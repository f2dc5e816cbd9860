"""The PostgreSQL ledger's job transactions: coroutines run inside one transaction each.

Each function gets a connection in an open transaction and the clock's `now`; `postgres.py`
begins and commits. Every time is the injected clock's, never the server's now().
"""

from __future__ import annotations

import uuid
from typing import Any

from imagedrop.errors import TransientError
from imagedrop.ledger import Job, JobState, NewDelivery, NewJob
from imagedrop.ledger._pg_rows import (
    INSERT_DELIVERIES,
    INSERT_JOBS,
    JOB_COLUMNS,
    JOB_COLUMNS_NO_DATA,
    delivery_arrays,
    dumps,
    job_arrays,
    job_from_new,
    job_from_row,
    prefixed,
)

# Claim order: single jobs first, then batch jobs by their position, so batches take turns and
# a 10,000-object batch cannot hold up an image sent on its own; `pos` keeps insertion order
# among equals. SKIP LOCKED passes over rows another replica is claiming right now instead of
# queueing behind it, and MATERIALIZED makes the LIMIT apply once (an inlined subquery may be
# rescanned). `jobs_claim` serves this order.
_CLAIM_JOBS = (
    "WITH due AS MATERIALIZED ("
    " SELECT id FROM jobs WHERE state IN ('queued', 'running') AND run_after <= $1"
    " AND (state = 'queued' OR lease_expires < $1)"
    " ORDER BY (batch_id IS NOT NULL), seq, created_at, pos LIMIT $2 FOR UPDATE SKIP LOCKED)"
    " UPDATE jobs SET state = 'running', lease_owner = $3, lease_expires = $4,"
    " attempts = attempts + 1, started_at = COALESCE(started_at, $1)"
    f" FROM due WHERE jobs.id = due.id RETURNING jobs.pos, {prefixed('jobs', JOB_COLUMNS)}"
)


async def create_jobs(conn: Any, now: float, jobs: list[NewJob]) -> list[tuple[Job, bool]]:
    """Insert each job unless its dedupe_key (or id) is already recorded."""
    ids = [job.id or str(uuid.uuid4()) for job in jobs]
    inserted = {
        row["id"] for row in await conn.fetch(INSERT_JOBS, *job_arrays(jobs, ids), now)
    }
    # A caller may reuse an id within one call: only its first occurrence was inserted.
    fresh: set[str] = set()
    out: list[tuple[Job, bool] | None] = []
    for job, job_id in zip(jobs, ids, strict=True):
        if job_id in inserted and job_id not in fresh:
            fresh.add(job_id)
            out.append((job_from_new(job, job_id, now), True))
        else:
            out.append(None)
    missing = [i for i, pair in enumerate(out) if pair is None]
    if missing:
        keys = [jobs[i].dedupe_key for i in missing if jobs[i].dedupe_key is not None]
        rows = await conn.fetch(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE dedupe_key = ANY($1::text[])"
            " OR id = ANY($2::text[])",
            keys, [ids[i] for i in missing],
        )
        by_key = {row["dedupe_key"]: row for row in rows if row["dedupe_key"] is not None}
        by_id = {row["id"]: row for row in rows}
        for i in missing:
            key = jobs[i].dedupe_key
            row = by_key.get(key) if key is not None else None
            if row is None:  # the conflict was on a caller-chosen id
                row = by_id[ids[i]]
            out[i] = (job_from_row(row), False)
    return [pair for pair in out if pair is not None]


async def get_job(conn: Any, now: float, job_id: str, with_input: bool = True) -> Job | None:
    columns = JOB_COLUMNS if with_input else JOB_COLUMNS_NO_DATA
    row = await conn.fetchrow(f"SELECT {columns} FROM jobs WHERE id = $1", job_id)
    return None if row is None else job_from_row(row)


async def claim_jobs(
    conn: Any, now: float, owner: str, limit: int, lease_seconds: float
) -> list[Job]:
    """Lease due jobs; `started_at` keeps the first start, `attempts` counts every claim."""
    rows = await conn.fetch(_CLAIM_JOBS, now, limit, owner, now + lease_seconds)
    # RETURNING has no defined order: restore the claim order.
    rows.sort(key=lambda r: (r["batch_id"] is not None, r["seq"], r["created_at"], r["pos"]))
    return [job_from_row(row) for row in rows]


async def renew_leases(
    conn: Any, now: float, owner: str, job_ids: list[str], lease_seconds: float
) -> None:
    # The object versions these jobs are editing stay theirs as long (one statement).
    await conn.execute(
        "WITH renewed AS (UPDATE jobs SET lease_expires = $1 WHERE state = 'running'"
        " AND lease_owner = $2 AND id = ANY($3::text[]) RETURNING id)"
        " UPDATE version_leases SET lease_expires = $1"
        " WHERE job_id IN (SELECT id FROM renewed)",
        now + lease_seconds, owner, job_ids,
    )


# The finishing updates below require `lease_owner = owner` but not an unexpired lease: a job
# whose lease ran out and that nobody claimed since is still its owner's to finish, while one
# claimed by another owner has a different lease_owner and is left alone. A concurrent claim
# holds the row lock; the UPDATE waits for it and re-checks these conditions on the new row.
_OWNED = "WHERE id = $1 AND state = 'running' AND lease_owner = $2"
_NO_LEASE = "lease_owner = NULL, lease_expires = NULL"


def _releasing(update: str) -> str:
    """`update` (of jobs) that also releases the object versions the updated jobs held
    (`claim_version`), in the same statement; it answers how many jobs it updated."""
    return (f"WITH done AS ({update} RETURNING id),"
            " gone AS (DELETE FROM version_leases WHERE job_id IN (SELECT id FROM done))"
            " SELECT count(*) FROM done")


async def complete_job(
    conn: Any, now: float, job_id: str, owner: str, result: dict[str, Any],
    deliveries: list[NewDelivery],
) -> bool:
    done = await conn.fetchval(_releasing(
        f"UPDATE jobs SET state = 'completed', result = $3::text::jsonb, fallback_local = $4,"
        f" error = NULL, finished_at = $5, input_data = NULL, {_NO_LEASE} {_OWNED}"),
        job_id, owner, dumps(result), bool(result.get("fallback_local")), now,
    )
    if done != 1:
        return False
    await insert_deliveries(conn, now, deliveries, job_id=job_id)
    return True


async def fail_job(
    conn: Any, now: float, job_id: str, owner: str, error: str, deliveries: list[NewDelivery]
) -> bool:
    done = await conn.fetchval(_releasing(
        f"UPDATE jobs SET state = 'failed', error = $3, last_error = $3, finished_at = $4,"
        f" {_NO_LEASE} {_OWNED}"),
        job_id, owner, error, now,
    )
    if done != 1:
        return False
    await insert_deliveries(conn, now, deliveries, job_id=job_id)
    return True


async def retry_job(
    conn: Any, now: float, job_id: str, owner: str, error: str, run_after: float
) -> bool:
    done = await conn.fetchval(_releasing(
        f"UPDATE jobs SET state = 'queued', last_error = $3, run_after = $4, {_NO_LEASE}"
        f" {_OWNED}"),
        job_id, owner, error, float(run_after),
    )
    return bool(done == 1)


async def defer_job(
    conn: Any, now: float, job_id: str, owner: str, run_after: float, reason: str
) -> bool:
    """Requeue a running job that waits for another, giving back the attempt its claim counted:
    waiting is not a failed try."""
    done = await conn.fetchval(_releasing(
        "UPDATE jobs SET state = 'queued', attempts = GREATEST(attempts - 1, 0),"
        f" last_error = $3, run_after = $4, {_NO_LEASE} {_OWNED}"),
        job_id, owner, reason, float(run_after),
    )
    return bool(done == 1)


async def release_jobs(conn: Any, now: float, owner: str) -> int:
    """Requeue `owner`'s running jobs, giving back the attempt each claim counted.

    Release is a graceful shutdown that abandoned the work, not a failed try, so it must not
    use up `max_attempts`. The job stays due at once; `started_at` keeps the first start.
    """
    released = await conn.fetchval(_releasing(
        f"UPDATE jobs SET state = 'queued', attempts = GREATEST(attempts - 1, 0), {_NO_LEASE}"
        " WHERE state = 'running' AND lease_owner = $1"),
        owner,
    )
    return int(released)


# A claim takes a version over from a lapsed lease, a holder that is not running, or itself.
# In READ COMMITTED, ON CONFLICT waits for a concurrent claimant's commit and then decides on
# the committed row, so two claimants never both get the version (REPEATABLE READ would raise
# a serialization failure instead: these statements run in the default READ COMMITTED).
_CLAIM_VERSION = (
    "INSERT INTO version_leases AS v (version_key, job_id, lease_expires) VALUES ($1, $2, $3)"
    " ON CONFLICT (version_key) DO UPDATE SET job_id = EXCLUDED.job_id,"
    " lease_expires = EXCLUDED.lease_expires"
    " WHERE v.job_id = EXCLUDED.job_id OR v.lease_expires < $4"
    " OR NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.id = v.job_id AND jobs.state = 'running')"
    " RETURNING job_id"
)


async def claim_version(
    conn: Any, now: float, version_key: str, job_id: str, lease_seconds: float
) -> str | None:
    """Hold `version_key` for `job_id`: None when it does now, else the live holder's id."""
    for _ in range(5):
        if await conn.fetchval(_CLAIM_VERSION, version_key, job_id,
                               now + lease_seconds, now) is not None:
            return None
        # A later statement sees the holder's commit; None: released meanwhile, claim again.
        holder = await conn.fetchval(
            "SELECT job_id FROM version_leases WHERE version_key = $1", version_key)
        if holder is not None:
            return str(holder)
    raise TransientError("an object version's claim kept changing hands; trying again later")


async def release_version(conn: Any, now: float, version_key: str, job_id: str) -> None:
    await conn.execute("DELETE FROM version_leases WHERE version_key = $1 AND job_id = $2",
                       version_key, job_id)


async def list_jobs(
    conn: Any, now: float, batch_id: str | None, state: JobState | None, limit: int
) -> list[Job]:
    where, params = [], []
    if batch_id is not None:
        params.append(batch_id)
        where.append(f"batch_id = ${len(params)}")
    if state is not None:
        params.append(str(state))
        where.append(f"state = ${len(params)}")
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = await conn.fetch(
        f"SELECT {JOB_COLUMNS_NO_DATA} FROM jobs {clause} ORDER BY created_at, pos"
        f" LIMIT ${len(params) + 1}",
        *params, max(limit, 0),
    )
    return [job_from_row(row) for row in rows]


async def insert_deliveries(
    conn: Any, now: float, deliveries: list[NewDelivery], *, job_id: str | None = None,
    batch_id: str | None = None,
) -> None:
    """Record deliveries as pending, in one statement."""
    if deliveries:
        await conn.execute(
            INSERT_DELIVERIES, *delivery_arrays(deliveries, job_id=job_id, batch_id=batch_id),
            now,
        )


def rowcount(status: str) -> int:
    """Rows a command touched, from its status tag (`UPDATE 3`, `INSERT 0 1`, `DELETE 0`)."""
    return int(status.rsplit(" ", 1)[-1])
