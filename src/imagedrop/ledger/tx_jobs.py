"""The ledger's job transactions, written once for every database (sans-I/O generators).

Each body takes the `Dialect` and the clock's `now` (read by the driver as it begins), yields
statements and returns its result; the driver begins and commits. Every time is the injected
clock's, never the database's.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace

from imagedrop.errors import TransientError
from imagedrop.ledger.dialect import Dialect
from imagedrop.ledger.sql import (
    DELIVERY_BODY_INSERT,
    DELIVERY_INSERT,
    JOB_COLUMNS,
    JOB_COLUMNS_NO_DATA,
    JOB_INPUT_INSERT,
    JOB_INSERT,
    Tx,
    count,
    job_from_new,
    job_from_row,
    job_values,
    row,
    rows,
    run,
    value,
)
from imagedrop.recipes import JobResult
from imagedrop.records import Job, JobState, NewDelivery, NewJob


def create_jobs(d: Dialect, now: float, jobs: Sequence[NewJob], spooled: Mapping[int, str]
                ) -> Tx[list[tuple[Job, bool]]]:
    """Insert each job unless its dedupe_key (or id) is already recorded; answers (job, new)
    in the given order, the recorded job for a duplicate. `spooled`: the jobs (by position)
    whose image waits in a file beside the ledger, by the file's name."""
    ids = [job.id or str(uuid.uuid4()) for job in jobs]
    inserted: set[str] = set()
    for stmt in d.insert("jobs", JOB_INSERT,
                         [job_values(job, job_id, now) for job, job_id in zip(jobs, ids,
                                                                              strict=True)],
                         returning="id", ignore_conflicts=True):
        inserted.update(r[0] for r in (yield stmt))
    for stmt in d.insert("job_inputs", JOB_INPUT_INSERT, [
            (job_id, b"" if i in spooled else job.input_data,
             "base64" if job.input_base64 else "bytes", spooled.get(i))
            for i, (job, job_id) in enumerate(zip(jobs, ids, strict=True))
            if job.input_data is not None and job_id in inserted]):
        yield stmt
    # A caller may reuse an id within one call: only its first occurrence was inserted.
    out: list[tuple[Job, bool] | None] = []
    for job, job_id in zip(jobs, ids, strict=True):
        fresh = job_id in inserted
        inserted.discard(job_id)
        out.append((job_from_new(job, job_id, now), True) if fresh else None)
    missing = [i for i, pair in enumerate(out) if pair is None]
    if missing:
        keys = [jobs[i].dedupe_key for i in missing if jobs[i].dedupe_key is not None]
        found = yield rows(
            f"SELECT {JOB_COLUMNS_NO_DATA} FROM jobs WHERE {d.in_list('dedupe_key', 'keys')}"
            f" OR {d.in_list('id', 'ids')}",
            keys=d.list_param(keys), ids=d.list_param([ids[i] for i in missing]))
        by_key = {r["dedupe_key"]: r for r in found if r["dedupe_key"] is not None}
        by_id = {r["id"]: r for r in found}
        for i in missing:
            key = jobs[i].dedupe_key
            match = by_key.get(key) if key is not None else None
            out[i] = (job_from_row(match if match is not None else by_id[ids[i]]), False)
    return [pair for pair in out if pair is not None]


def with_inputs(d: Dialect, jobs: list[Job]) -> Tx[tuple[list[Job], dict[str, str]]]:
    """`jobs` with their images from `job_inputs`, and the names of the files beside the
    ledger that hold the images of the others (read by the ledger, off its transaction)."""
    wanted = [job.id for job in jobs if job.source_bucket is None]  # dropped files have none
    if not wanted:
        return jobs, {}
    found = {r[0]: r for r in (yield rows(
        f"SELECT job_id, data, encoding, spool FROM job_inputs WHERE {d.in_list('job_id', 'ids')}",
        ids=d.list_param(wanted)))}
    spooled: dict[str, str] = {}
    out = []
    for job in jobs:
        stored = found.get(job.id)
        if stored is not None:
            if stored[3] is not None:
                spooled[job.id] = stored[3]
            job = replace(job, input_data=None if stored[3] is not None else bytes(stored[1]),
                          input_base64=stored[2] == "base64")
        out.append(job)
    return out, spooled


def spooled(d: Dialect, now: float, names: list[str]) -> Tx[set[str]]:
    """Which of these files beside the ledger an upload or a callback body still names."""
    found = yield rows(f"SELECT spool FROM job_inputs WHERE {d.in_list('spool', 'names')}"
                       f" UNION SELECT spool FROM delivery_bodies"
                       f" WHERE {d.in_list('spool', 'names')}", names=d.list_param(names))
    return {r[0] for r in found}


def get_job(d: Dialect, now: float, job_id: str, with_input: bool = True
            ) -> Tx[tuple[Job | None, dict[str, str]]]:
    columns = JOB_COLUMNS if with_input else JOB_COLUMNS_NO_DATA
    found = yield row(f"SELECT {columns} FROM jobs WHERE id = :id", id=job_id)
    if found is None:
        return None, {}
    if not with_input:
        return job_from_row(found), {}
    jobs, spooled = yield from with_inputs(d, [job_from_row(found)])
    return jobs[0], spooled


def claim_jobs(d: Dialect, now: float, owner: str, limit: int, lease_seconds: float
               ) -> Tx[tuple[list[Job], dict[str, str]]]:
    """Lease due jobs: single jobs first, then batch jobs by position, so batches take turns
    and a 10,000-object batch cannot hold up an image sent on its own. `started_at` keeps the
    first start, `attempts` counts every claim. With the files that hold images (`with_inputs`)."""
    claimed = yield rows(d.claim_jobs, now=now, limit=limit, owner=owner,
                         expires=now + lease_seconds)
    jobs = sorted(claimed, key=lambda r: (r["batch_id"] is not None, r["seq"], r["created_at"],
                                          r["pos"]))  # RETURNING has no defined order
    return (yield from with_inputs(d, [job_from_row(r) for r in jobs]))


def renew_leases(d: Dialect, now: float, owner: str, job_ids: Sequence[str],
                 lease_seconds: float) -> Tx[None]:
    renewed = yield rows(
        "UPDATE jobs SET lease_expires = :expires WHERE state = 'running'"
        f" AND lease_owner = :owner AND {d.in_list('id', 'ids')} RETURNING id",
        expires=now + lease_seconds, owner=owner, ids=d.list_param(job_ids))
    if renewed:  # the object versions these jobs are editing stay theirs as long
        yield run(f"UPDATE version_leases SET lease_expires = :expires"
                  f" WHERE {d.in_list('job_id', 'ids')}",
                  expires=now + lease_seconds, ids=d.list_param([r[0] for r in renewed]))


# The finishing updates below require `lease_owner = owner` but not an unexpired lease: a job
# whose lease ran out and that nobody claimed since is still its owner's to finish, while one
# claimed by another owner has a different lease_owner and is left alone (on PostgreSQL the
# UPDATE waits for a concurrent claim's row lock and re-checks on the new row). Each also
# releases the object version the job held (`claim_version`), in the same transaction: a job
# waiting for that version then finds the completed edit, or takes the version over.
_OWNED = "WHERE id = :id AND state = 'running' AND lease_owner = :owner"
_NO_LEASE = "lease_owner = NULL, lease_expires = NULL"
_GIVE_BACK = "attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END"


def _finish(d: Dialect, now: float, job_id: str, owner: str, assignments: str,
            deliveries: Sequence[NewDelivery] = (), **params: object) -> Tx[bool]:
    changed = yield count(f"UPDATE jobs SET {assignments}, {_NO_LEASE} {_OWNED}",
                          id=job_id, owner=owner, now=now, **params)
    if changed != 1:
        return False
    yield from release_versions_of(d, [job_id])
    yield from insert_deliveries(d, now, deliveries, job_id=job_id)
    return True


def complete_job(d: Dialect, now: float, job_id: str, owner: str, result: JobResult,
                 deliveries: Sequence[NewDelivery]) -> Tx[tuple[bool, str | None]]:
    """Completed, with its deliveries; the inline image is dropped (a failed job keeps it, so
    a replay can run it again): the answer names the file beside the ledger that held it."""
    done = yield from _finish(
        d, now, job_id, owner, "state = 'completed', result = :result, fallback_local = :local,"
        " error = NULL, finished_at = :now, input_data = NULL", deliveries,
        result=result.to_json(), local=result.fallback_local)
    if not done:
        return False, None
    spool = yield value("DELETE FROM job_inputs WHERE job_id = :id RETURNING spool", id=job_id)
    return True, spool


def fail_job(d: Dialect, now: float, job_id: str, owner: str, error: str,
             deliveries: Sequence[NewDelivery]) -> Tx[bool]:
    return (yield from _finish(
        d, now, job_id, owner, "state = 'failed', error = :error, last_error = :error,"
        " finished_at = :now", deliveries, error=error))


def retry_job(d: Dialect, now: float, job_id: str, owner: str, error: str, run_after: float
              ) -> Tx[bool]:
    """Put a running job back in the queue, due at `run_after`; False if not owned."""
    return (yield from _finish(
        d, now, job_id, owner, "state = 'queued', last_error = :error, run_after = :run_after",
        error=error, run_after=float(run_after)))


def defer_job(d: Dialect, now: float, job_id: str, owner: str, run_after: float, reason: str
              ) -> Tx[bool]:
    """Put a running job back in the queue, due at `run_after`, giving back the attempt its
    claim counted (it waits for another job; it did not fail); False if not owned."""
    return (yield from _finish(
        d, now, job_id, owner, f"state = 'queued', {_GIVE_BACK}, last_error = :reason,"
        " run_after = :run_after", reason=reason, run_after=float(run_after)))


def hold_job(d: Dialect, now: float, job_id: str, owner: str, until: float, reason: str,
             deliveries: Sequence[NewDelivery]) -> Tx[bool]:
    """Hold a running job over a budget until `until` (the budget's next day), giving back
    the attempt its claim counted: a budget is not a failed try."""
    return (yield from _finish(
        d, now, job_id, owner, f"state = 'held', {_GIVE_BACK}, last_error = :reason,"
        " run_after = :run_after", deliveries, reason=reason, run_after=float(until)))


def release_jobs(d: Dialect, now: float, owner: str) -> Tx[int]:
    """Give back every job `owner` holds (graceful shutdown), each with the attempt its claim
    counted; returns how many.

    Release abandoned the work; it is not a failed try, so it must not use up `max_attempts`.
    The job stays due at once; `started_at` keeps the first start.
    """
    released = yield rows(
        f"UPDATE jobs SET state = 'queued', {_GIVE_BACK}, {_NO_LEASE}"
        " WHERE state = 'running' AND lease_owner = :owner RETURNING id", owner=owner)
    yield from release_versions_of(d, [r[0] for r in released])
    return len(released)


def list_jobs(d: Dialect, now: float, *, batch_id: str | None = None,
              state: JobState | None = None, limit: int = 1000) -> Tx[list[Job]]:
    """Jobs filtered by batch and/or state, oldest first (input_data left out)."""
    where = [clause for clause, given in (("batch_id = :batch_id", batch_id),
                                          ("state = :state", state)) if given is not None]
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    found = yield rows(
        f"SELECT {JOB_COLUMNS_NO_DATA} FROM jobs {clause} ORDER BY created_at, {d.pos}"
        " LIMIT :limit", batch_id=batch_id, state=None if state is None else str(state),
        limit=max(limit, 0))
    return [job_from_row(r) for r in found]


def insert_deliveries(d: Dialect, now: float, deliveries: Sequence[NewDelivery], *,
                      job_id: str | None = None, batch_id: str | None = None) -> Tx[None]:
    """Record deliveries as pending; one without an id gets a uuid4 (its webhook-id), and the
    job/batch ids fill in what the caller left out."""
    ids = [x.id or str(uuid.uuid4()) for x in deliveries]
    for stmt in d.insert("deliveries", DELIVERY_INSERT, [
        (i, x.kind, x.url, b"", x.event_type, x.job_id or job_id, x.batch_id or batch_id,
         x.secret_ref, "pending", float(x.next_attempt_at), now, x.request_id, x.traceparent)
        for i, x in zip(ids, deliveries, strict=True)
    ]):
        yield stmt
    for stmt in d.insert("delivery_bodies", DELIVERY_BODY_INSERT,
                         [(i, x.body, x.spool) for i, x in zip(ids, deliveries, strict=True)]):
        yield stmt


# A claim takes a version over from a lapsed lease whose holder's owner is not alive, a holder
# that is not running, or itself (after its own restart). On PostgreSQL, in READ COMMITTED, ON
# CONFLICT waits for a concurrent claimant's commit and then decides on the committed row, so
# two claimants never both get the version.
def _claim_version_sql(d: Dialect) -> str:
    holder_owner = "(SELECT lease_owner FROM jobs WHERE jobs.id = v.job_id)"
    return (
        "INSERT INTO version_leases AS v (version_key, job_id, lease_expires)"
        " VALUES (:key, :job_id, :expires)"
        " ON CONFLICT (version_key) DO UPDATE SET job_id = excluded.job_id,"
        " lease_expires = excluded.lease_expires"
        f" WHERE v.job_id = excluded.job_id OR {d.free('v.lease_expires', holder_owner)}"
        " OR NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.id = v.job_id AND jobs.state = 'running')"
        " RETURNING job_id"
    )


def claim_version(d: Dialect, now: float, version_key: str, job_id: str, lease_seconds: float
                  ) -> Tx[str | None]:
    """Hold an object version (+ recipe) for the running job `job_id`, so that no other job
    edits it meanwhile: None when this job holds it now, else the id of the live holder.

    A lease that lapsed (its holder's process died) or whose holder is no longer running is
    taken over; the same job claiming again keeps it. Renewed by `renew_leases`; released with
    the job's outcome (`complete_job`, `fail_job`, `retry_job`, `defer_job`, `release_jobs`)
    in the same transaction, or by `release_version`.
    """
    for _ in range(5):
        took = yield value(_claim_version_sql(d), key=version_key, job_id=job_id,
                           expires=now + lease_seconds, now=now)
        if took is not None:
            return None
        # A later statement sees the holder's commit; None: released meanwhile, claim again.
        holder = yield value("SELECT job_id FROM version_leases WHERE version_key = :key",
                             key=version_key)
        if holder is not None:
            return str(holder)
    raise TransientError("an object version's claim kept changing hands; trying again later")


def release_version(d: Dialect, now: float, version_key: str, job_id: str) -> Tx[None]:
    """Give back a version `job_id` holds (nothing if another job holds it)."""
    yield run("DELETE FROM version_leases WHERE version_key = :key AND job_id = :job_id",
              key=version_key, job_id=job_id)


def release_versions_of(d: Dialect, job_ids: Sequence[str]) -> Tx[None]:
    if job_ids:
        yield run(f"DELETE FROM version_leases WHERE {d.in_list('job_id', 'ids')}",
                  ids=d.list_param(job_ids))


def with_batch(jobs: Sequence[NewJob], batch_id: str) -> list[NewJob]:
    """The jobs, each belonging to `batch_id`."""
    return [job if job.batch_id == batch_id else replace(job, batch_id=batch_id) for job in jobs]
