"""The ledger's batch and delivery transactions, written once for every database (sans-I/O).

Bodies as in `tx_jobs`. Changes that must not race take the batch's row lock first where the
database has row locks (on SQLite the one write lock orders them already).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from imagedrop.errors import NotFound
from imagedrop.ledger.dialect import Dialect
from imagedrop.ledger.sql import (
    ATTEMPT_COLUMNS,
    BATCH_COLUMNS,
    DELIVERY_COLUMNS,
    Tx,
    attempt_from_row,
    batch_from_row,
    count,
    delivery_from_row,
    dumps,
    row,
    rows,
    run,
    value,
)
from imagedrop.ledger.tx_jobs import create_jobs, insert_deliveries, with_batch
from imagedrop.payloads import BatchSummary
from imagedrop.records import (
    Batch,
    BatchProgress,
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    NewBatch,
    NewDelivery,
    NewJob,
)

# -- batches ------------------------------------------------------------------------------


def create_batch(d: Dialect, now: float, batch: NewBatch, settle_until: float | None = None
                 ) -> Tx[Batch]:
    """Record a batch. A drop batch (one that settles) has a `group_key`, and only it: the
    indexes tell the two apart by that key, since the deadline changes."""
    if (batch.group_key is None) != (settle_until is None):
        raise ValueError("a batch has a group_key exactly when it has a settle deadline: drop "
                         "batches are made by record_drops")
    created = yield row(
        "INSERT INTO batches (id, kind, bucket, prefix, output_bucket, output_prefix, recipe,"
        " callback_url, listing_done, created_at, extra, group_key, request_id, traceparent,"
        " settle_until)"
        " VALUES (:id, :kind, :bucket, :prefix, :output_bucket, :output_prefix, :recipe,"
        " :callback_url, :listing_done, :now, :extra, :group_key, :request_id, :traceparent,"
        " :settle_until)"
        f" RETURNING {BATCH_COLUMNS}",
        id=batch.id or str(uuid.uuid4()), kind=batch.kind, bucket=batch.bucket,
        prefix=batch.prefix,
        output_bucket=batch.output_bucket, output_prefix=batch.output_prefix,
        recipe=batch.recipe.to_json(), callback_url=batch.callback_url,
        listing_done=batch.listing_done, now=now, extra=dumps(batch.extra),
        group_key=batch.group_key, request_id=batch.request_id, traceparent=batch.traceparent,
        settle_until=settle_until)
    return batch_from_row(created)


def get_batch(d: Dialect, now: float, batch_id: str) -> Tx[Batch | None]:
    """One batch, or None."""
    found = yield row(f"SELECT {BATCH_COLUMNS} FROM batches WHERE id = :id", id=batch_id)
    return None if found is None else batch_from_row(found)


def claim_listing(d: Dialect, now: float, owner: str, lease_seconds: float
                  ) -> Tx[Batch | None]:
    """Lease the oldest batch still being listed (new, or its lister died); one whose lister
    is writing a page right now is passed over."""
    claimed = yield row(d.claim_listing, now=now, owner=owner, expires=now + lease_seconds,
                        lease=float(lease_seconds))
    return None if claimed is None else batch_from_row(claimed)


def release_listings(d: Dialect, now: float, owner: str) -> Tx[int]:
    """Give back the unfinished listings `owner` holds (graceful stop): another lister
    resumes them from their cursor at once instead of after the lease."""
    return int((yield count("UPDATE batches SET lease_owner = NULL, lease_expires = NULL"
                            " WHERE lease_owner = :owner AND NOT listing_done", owner=owner)))


def add_batch_jobs(d: Dialect, now: float, batch_id: str, owner: str, jobs: Sequence[NewJob],
                   cursor: str, done: bool) -> Tx[int]:
    """Record one listed page's jobs (they get this batch's id) and advance the cursor, if
    `owner` still holds the listing; returns how many jobs are new. Also renews the listing
    lease (`done` ends it); adds nothing, and raises nothing, if the lease was lost.

    "Holds" means lease_owner is still `owner`: a lapsed lease nobody took over is still safe
    to extend. The batch's row is read first (locked where rows lock), which orders this page
    against a takeover, a finish or a replay.
    """
    holder = yield row(f"SELECT lease_owner, listing_done FROM batches WHERE id = :id{d.lock}",
                       id=batch_id)
    if holder is None or holder[0] != owner or holder[1]:
        return 0
    created = 0
    if jobs:
        recorded = yield from create_jobs(d, now, with_batch(jobs, batch_id), {})
        created = sum(new for _, new in recorded)
    if done:  # the listing is over: nobody needs to hold it any more
        yield run("UPDATE batches SET listing_cursor = :cursor, listing_done = TRUE,"
                  " lease_owner = NULL, lease_expires = NULL WHERE id = :id",
                  cursor=cursor, id=batch_id)
    else:
        yield run("UPDATE batches SET listing_cursor = :cursor,"
                  " lease_expires = :now + lease_seconds WHERE id = :id",
                  cursor=cursor, now=now, id=batch_id)
    return created


def batch_progress(d: Dialect, now: float, batch_id: str) -> Tx[BatchProgress]:
    """Counts over the batch's jobs; raises `NotFound` for an unknown batch. Its statements
    need one consistent view (the driver reads in one snapshot)."""
    batch = yield row("SELECT listing_done, finished_at FROM batches WHERE id = :id",
                      id=batch_id)
    if batch is None:
        raise NotFound(f"no batch {batch_id}")
    counts = {"queued": 0, "running": 0, "completed": 0, "failed": 0, "held": 0}
    fallback = budget_failed = 0
    cost = 0.0
    for state, number, local, over_budget, spent in (yield rows(
        "SELECT state, COUNT(*), SUM(CASE WHEN fallback_local THEN 1 ELSE 0 END),"
        " SUM(CASE WHEN error LIKE 'budget reached%' THEN 1 ELSE 0 END),"
        f" SUM(COALESCE({d.json_number('result', 'cost_usd')}, 0)) FROM jobs"
        " WHERE batch_id = :id GROUP BY state", id=batch_id,
    )):
        counts[state] = number
        fallback += local if state == "completed" else 0
        budget_failed += over_budget if state == "failed" else 0
        cost += float(spent or 0) if state == "completed" else 0.0
    return BatchProgress(total=sum(counts.values()), fallback_local=fallback,
                         budget_failed=budget_failed, cost_usd=round(cost, 6),
                         listing_done=bool(batch[0]), finished=batch[1] is not None, **counts)


_UNFINISHED_JOBS = ("SELECT 1 FROM jobs WHERE batch_id = {}"
                    " AND state IN ('queued', 'running', 'held')")


def finishable_batches(d: Dialect, now: float, limit: int = 100) -> Tx[list[str]]:
    """Batches whose listing is done and whose jobs are all final but that are not closed
    (their closer died between the last outcome and the summary): to be closed now."""
    found = yield rows(
        "SELECT id FROM batches b WHERE listing_done AND finished_at IS NULL"
        f" AND NOT EXISTS ({_UNFINISHED_JOBS.format('b.id')})"
        f" ORDER BY created_at, {d.pos} LIMIT :limit", limit=max(limit, 0))
    return [r[0] for r in found]


def finish_batch(d: Dialect, now: float, batch_id: str, summary: BatchSummary,
                 deliveries: Sequence[NewDelivery]) -> Tx[bool]:
    """Close the batch if its listing is done and no job is left to run; True only once.

    The row lock comes first and the job check after it, in a later statement whose snapshot
    sees whatever a lister or replay committed while we waited.
    """
    batch = yield row(f"SELECT listing_done, finished_at FROM batches WHERE id = :id{d.lock}",
                      id=batch_id)
    if batch is None or not batch[0] or batch[1] is not None:
        return False
    if (yield value(f"SELECT EXISTS ({_UNFINISHED_JOBS.format(':id')})", id=batch_id)):
        return False
    yield run("UPDATE batches SET finished_at = :now, summary = :summary, lease_owner = NULL,"
              " lease_expires = NULL WHERE id = :id", now=now, summary=summary.to_body().decode(),
              id=batch_id)
    yield from insert_deliveries(d, now, deliveries, batch_id=batch_id)
    return True


# -- deliveries ---------------------------------------------------------------------------


def claim_deliveries(d: Dialect, now: float, owner: str, limit: int, lease_seconds: float
                     ) -> Tx[list[Delivery]]:
    claimed = yield rows(d.claim_deliveries, now=now, limit=limit, owner=owner,
                         expires=now + lease_seconds)
    ordered = sorted(claimed, key=lambda r: (r["next_attempt_at"], r["created_at"], r["pos"]))
    return [delivery_from_row(r) for r in ordered]


def record_attempt(d: Dialect, now: float, delivery_id: str, owner: str,
                   attempt: DeliveryAttempt, state: DeliveryState,
                   next_attempt_at: float | None, follow_up: Sequence[NewDelivery]) -> Tx[bool]:
    """Record the attempt; move the delivery on if `owner` holds it. True if it was moved on,
    and then record `follow_up` deliveries (an ops alert that this one gave up) with it.

    The attempt row is always written (the request was made, the history must say so), but a
    sender whose lease was taken over must not overwrite the new holder's outcome.
    """
    final = state is not DeliveryState.PENDING
    moved: bool = (yield count(
        "UPDATE deliveries SET attempts = attempts + 1, last_status = :status,"
        " last_error = :error, state = :state, next_attempt_at = :next, finished_at = :finished,"
        " lease_owner = NULL, lease_expires = NULL"
        " WHERE id = :id AND state = 'pending' AND lease_owner = :owner",
        status=attempt.status, error=attempt.error, state=str(state),
        next=now if next_attempt_at is None else float(next_attempt_at),
        finished=now if final else None, id=delivery_id, owner=owner)) == 1
    if not moved and (yield from get_delivery(d, now, delivery_id)) is None:
        raise NotFound(f"no delivery {delivery_id}")
    yield run(f"INSERT INTO delivery_attempts ({ATTEMPT_COLUMNS})"
              " VALUES (:id, :attempt, :at, :status, :error, :duration)",
              id=delivery_id, attempt=attempt.attempt, at=float(attempt.at),
              status=attempt.status, error=attempt.error, duration=float(attempt.duration_ms))
    if moved:
        yield from insert_deliveries(d, now, follow_up)
    return moved


def get_delivery(d: Dialect, now: float, delivery_id: str) -> Tx[Delivery | None]:
    found = yield row(f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = :id",
                      id=delivery_id)
    return None if found is None else delivery_from_row(found)


def list_deliveries(d: Dialect, now: float, job_id: str | None, batch_id: str | None
                    ) -> Tx[list[Delivery]]:
    where = [clause for clause, given in (("job_id = :job_id", job_id),
                                          ("batch_id = :batch_id", batch_id)) if given is not None]
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    found = yield rows(f"SELECT {DELIVERY_COLUMNS} FROM deliveries {clause}"
                       f" ORDER BY created_at, {d.pos}", job_id=job_id, batch_id=batch_id)
    return [delivery_from_row(r) for r in found]


def list_attempts(d: Dialect, now: float, delivery_id: str) -> Tx[list[DeliveryAttempt]]:
    """Every recorded attempt of a delivery, in order."""
    found = yield rows(f"SELECT {ATTEMPT_COLUMNS} FROM delivery_attempts"
                       f" WHERE delivery_id = :id ORDER BY attempt, {d.pos}", id=delivery_id)
    return [attempt_from_row(r) for r in found]
