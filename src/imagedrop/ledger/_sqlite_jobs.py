"""The SQLite ledger's job transactions: synchronous bodies run on the ledger's own thread.

Each function gets an open transaction and the clock's `now`; `sqlite.py` begins and commits.
"""

from __future__ import annotations

import sqlite3
import uuid
from typing import Any

from imagedrop.ledger import Job, JobState, NewDelivery, NewJob
from imagedrop.ledger._sqlite_rows import (
    INSERT_DELIVERY,
    INSERT_JOB,
    JOB_COLUMNS,
    JOB_COLUMNS_NO_DATA,
    dumps,
    job_from_new,
    job_from_row,
    new_delivery_row,
    new_job_row,
)

# Claim order: single jobs first, then batch jobs by their position, so batches take turns and
# a 10,000-object batch cannot hold up an image sent on its own. `jobs_claim` serves this order.
# INDEXED BY pins that plan: left alone, the planner picks `jobs_state` and sorts every due job.
_DUE_JOBS = (
    "SELECT id FROM jobs INDEXED BY jobs_claim"
    " WHERE state IN ('queued', 'running') AND run_after <= ?"
    " AND (state = 'queued' OR lease_expires < ?)"
    " ORDER BY (batch_id IS NOT NULL), seq, created_at LIMIT ?"
)


def create_jobs(conn: sqlite3.Connection, now: float, jobs: list[NewJob]) -> list[tuple[Job, bool]]:
    """Insert each job unless its dedupe_key (or id) is already recorded."""
    out: list[tuple[Job, bool]] = []
    for new in jobs:
        job_id = new.id or str(uuid.uuid4())
        if conn.execute(INSERT_JOB, new_job_row(new, job_id, now)).rowcount == 1:
            out.append((job_from_new(new, job_id, now), True))
            continue
        row = None
        if new.dedupe_key is not None:
            row = conn.execute(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE dedupe_key = ?", (new.dedupe_key,)
            ).fetchone()
        if row is None:  # the conflict was on a caller-chosen id
            row = conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        out.append((job_from_row(row), False))
    return out


def get_job(conn: sqlite3.Connection, now: float, job_id: str, with_input: bool = True
            ) -> Job | None:
    columns = JOB_COLUMNS if with_input else JOB_COLUMNS_NO_DATA
    row = conn.execute(f"SELECT {columns} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return None if row is None else job_from_row(row)


def claim_jobs(
    conn: sqlite3.Connection, now: float, owner: str, limit: int, lease_seconds: float
) -> list[Job]:
    """Lease due jobs; `started_at` keeps the first start, `attempts` counts every claim."""
    ids = [row[0] for row in conn.execute(_DUE_JOBS, (now, now, limit))]
    if not ids:
        return []
    rows = conn.execute(
        "UPDATE jobs SET state = 'running', lease_owner = ?, lease_expires = ?,"
        " attempts = attempts + 1, started_at = COALESCE(started_at, ?)"
        f" WHERE id IN (SELECT value FROM json_each(?)) RETURNING {JOB_COLUMNS}",
        (owner, now + lease_seconds, now, _json_list(ids)),
    ).fetchall()
    by_id = {job.id: job for job in map(job_from_row, rows)}
    return [by_id[job_id] for job_id in ids]  # RETURNING has no defined order


def renew_leases(
    conn: sqlite3.Connection, now: float, owner: str, job_ids: list[str], lease_seconds: float
) -> None:
    renewed = [row[0] for row in conn.execute(
        "UPDATE jobs SET lease_expires = ? WHERE state = 'running' AND lease_owner = ?"
        " AND id IN (SELECT value FROM json_each(?)) RETURNING id",
        (now + lease_seconds, owner, _json_list(job_ids)),
    )]
    if renewed:  # the object versions these jobs are editing stay theirs as long
        conn.execute(
            "UPDATE version_leases SET lease_expires = ?"
            " WHERE job_id IN (SELECT value FROM json_each(?))",
            (now + lease_seconds, _json_list(renewed)),
        )


# The finishing updates below require `lease_owner = owner` but not an unexpired lease: a job
# whose lease ran out and that nobody claimed since is still its owner's to finish, while one
# claimed by another owner has a different lease_owner and is left alone. Each of them also
# releases the object version the job held (`claim_version`), in the same transaction: a job
# waiting for that version then finds the completed edit, or takes the version over.
_OWNED = "WHERE id = ? AND state = 'running' AND lease_owner = ?"
_NO_LEASE = "lease_owner = NULL, lease_expires = NULL"


def complete_job(
    conn: sqlite3.Connection, now: float, job_id: str, owner: str, result: dict[str, Any],
    deliveries: list[NewDelivery],
) -> bool:
    cursor = conn.execute(
        f"UPDATE jobs SET state = 'completed', result = ?, fallback_local = ?, error = NULL,"
        f" finished_at = ?, input_data = NULL, {_NO_LEASE} {_OWNED}",
        (dumps(result), int(bool(result.get("fallback_local"))), now, job_id, owner),
    )
    if cursor.rowcount != 1:
        return False
    _release_versions_of(conn, [job_id])
    insert_deliveries(conn, now, deliveries, job_id=job_id)
    return True


def fail_job(
    conn: sqlite3.Connection, now: float, job_id: str, owner: str, error: str,
    deliveries: list[NewDelivery],
) -> bool:
    cursor = conn.execute(
        f"UPDATE jobs SET state = 'failed', error = ?, last_error = ?, finished_at = ?,"
        f" {_NO_LEASE} {_OWNED}",
        (error, error, now, job_id, owner),
    )
    if cursor.rowcount != 1:
        return False
    _release_versions_of(conn, [job_id])
    insert_deliveries(conn, now, deliveries, job_id=job_id)
    return True


def retry_job(
    conn: sqlite3.Connection, now: float, job_id: str, owner: str, error: str, run_after: float
) -> bool:
    cursor = conn.execute(
        f"UPDATE jobs SET state = 'queued', last_error = ?, run_after = ?, {_NO_LEASE} {_OWNED}",
        (error, run_after, job_id, owner),
    )
    if cursor.rowcount != 1:
        return False
    _release_versions_of(conn, [job_id])
    return True


def defer_job(
    conn: sqlite3.Connection, now: float, job_id: str, owner: str, run_after: float,
    reason: str,
) -> bool:
    """Requeue a running job that waits for another, giving back the attempt its claim counted:
    waiting is not a failed try."""
    cursor = conn.execute(
        "UPDATE jobs SET state = 'queued', attempts = MAX(attempts - 1, 0), last_error = ?,"
        f" run_after = ?, {_NO_LEASE} {_OWNED}",
        (reason, run_after, job_id, owner),
    )
    if cursor.rowcount != 1:
        return False
    _release_versions_of(conn, [job_id])
    return True


def release_jobs(conn: sqlite3.Connection, now: float, owner: str) -> int:
    """Requeue `owner`'s running jobs, giving back the attempt each claim counted.

    Release is a graceful shutdown that abandoned the work, not a failed try, so it must not
    use up `max_attempts`. The job stays due at once; `started_at` keeps the first start.
    """
    released = [row[0] for row in conn.execute(
        f"UPDATE jobs SET state = 'queued', attempts = MAX(attempts - 1, 0), {_NO_LEASE}"
        " WHERE state = 'running' AND lease_owner = ? RETURNING id",
        (owner,),
    )]
    _release_versions_of(conn, released)
    return len(released)


def list_jobs(
    conn: sqlite3.Connection, now: float, batch_id: str | None, state: JobState | None,
    limit: int,
) -> list[Job]:
    where, params = [], []
    if batch_id is not None:
        where.append("batch_id = ?")
        params.append(batch_id)
    if state is not None:
        where.append("state = ?")
        params.append(str(state))
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(
        f"SELECT {JOB_COLUMNS_NO_DATA} FROM jobs {clause} ORDER BY created_at, rowid LIMIT ?",
        (*params, limit),
    )
    return [job_from_row(row) for row in rows]


def insert_deliveries(
    conn: sqlite3.Connection, now: float, deliveries: list[NewDelivery], *,
    job_id: str | None = None, batch_id: str | None = None,
) -> None:
    """Record deliveries as pending; a delivery without an id gets a uuid4 (its webhook-id)."""
    conn.executemany(
        INSERT_DELIVERY,
        [
            new_delivery_row(d, d.id or str(uuid.uuid4()), now, job_id=job_id, batch_id=batch_id)
            for d in deliveries
        ],
    )


# When a claim may take a version over: its own, a lapsed lease, or a holder that is not running.
_TAKE_OVER = (
    "job_id = excluded.job_id, lease_expires = excluded.lease_expires"
    " WHERE version_leases.job_id = excluded.job_id OR version_leases.lease_expires < ?"
    " OR NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.id = version_leases.job_id"
    " AND jobs.state = 'running')"
)


def claim_version(
    conn: sqlite3.Connection, now: float, version_key: str, job_id: str, lease_seconds: float
) -> str | None:
    """Hold `version_key` for `job_id`: None when it does now, else the live holder's id.

    A holder whose lease lapsed (its process died) or that is no longer running is replaced;
    the same job claiming again (after its own restart) keeps it.
    """
    row = conn.execute(
        "INSERT INTO version_leases (version_key, job_id, lease_expires) VALUES (?, ?, ?)"
        f" ON CONFLICT (version_key) DO UPDATE SET {_TAKE_OVER} RETURNING job_id",
        (version_key, job_id, now + lease_seconds, now),
    ).fetchone()
    if row is not None:
        return None
    (holder,) = conn.execute("SELECT job_id FROM version_leases WHERE version_key = ?",
                             (version_key,)).fetchone()
    return str(holder)


def release_version(conn: sqlite3.Connection, now: float, version_key: str, job_id: str
                    ) -> None:
    conn.execute("DELETE FROM version_leases WHERE version_key = ? AND job_id = ?",
                 (version_key, job_id))


def _release_versions_of(conn: sqlite3.Connection, job_ids: list[str]) -> None:
    if job_ids:
        conn.execute("DELETE FROM version_leases WHERE job_id IN (SELECT value FROM json_each(?))",
                     (_json_list(job_ids),))


def _json_list(values: list[str]) -> str:
    # One JSON parameter instead of one placeholder per id: no SQLite variable limit to mind.
    return dumps(values)
