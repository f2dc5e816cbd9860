"""The ledger's transactions for dropped files, replays, subscribers and provider limits,
written once for every database (sans-I/O generators, as in `tx_jobs`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from imagedrop.gcra import take_slot
from imagedrop.ledger.dialect import Dialect
from imagedrop.ledger.sql import (
    DELIVERY_COLUMNS,
    JOB_COLUMNS_NO_DATA,
    NOW,
    Tx,
    count,
    delivery_from_row,
    dumps,
    job_from_row,
    loads,
    row,
    rows,
    run,
    value,
)
from imagedrop.ledger.tx_batches import create_batch
from imagedrop.ledger.tx_jobs import create_jobs
from imagedrop.records import Delivery, DropItem, Job, NewJob, Requeued

# -- dropped files ----------------------------------------------------------------------------


def record_drops(d: Dialect, now: float, items: Sequence[DropItem]
                 ) -> Tx[list[tuple[Job, bool]]]:
    """Each new job joins its group's settling batch (made if none); duplicates join nothing.

    Written set-wise, a statement per step for the whole call (not per item): what is known
    already, the groups' open batches, each settling one's deadline (with its next position),
    then one insert.
    Two replicas dropping into one folder at once must not open two batches: each takes a lock
    per group for the rest of its transaction, all of them up front and in one order (so two
    calls with the same groups cannot deadlock), and looks for the settling batch only once it
    holds them; `now` is read again after the locks, since a wait behind another replica must
    not leave it stale. Rows are inserted in dedupe_key order, so two replicas recording the
    same objects wait for each other instead of deadlocking; results come in the caller's order.
    """
    # Duplicates are looked for before the group locks, to hold those briefly; one recorded
    # meanwhile by another call is caught by the insert (ON CONFLICT) below.
    keys = sorted({item.job.dedupe_key for item in items if item.job.dedupe_key is not None})
    known: dict[str, Job] = {}
    if keys:
        found = yield rows(f"SELECT {JOB_COLUMNS_NO_DATA} FROM jobs"
                           f" WHERE {d.in_list('dedupe_key', 'keys')}", keys=d.list_param(keys))
        known = {r["dedupe_key"]: job_from_row(r) for r in found}
    groups = sorted({item.batch.group_key for item in items
                     if item.batch is not None and item.batch.group_key})
    for stmt in d.group_locks(groups):  # noqa: UP028 - each is sent its answer
        yield stmt
    open_batches: list[Any] = []
    if groups:
        now = yield NOW
        # The groups' open batches, locked in id order where rows lock (as replays and
        # finishes lock them): housekeeping cannot close one under us (close skips locked
        # batches). Each group's settling batch is picked from them.
        open_batches = yield rows(
            f"SELECT id, group_key, created_at, settle_until, {d.pos} AS pos FROM batches"
            f" WHERE {d.in_list('group_key', 'groups')} AND NOT listing_done"
            f" AND group_key IS NOT NULL AND settle_until IS NOT NULL ORDER BY id{d.lock}",
            groups=d.list_param(groups))
    # The first of each new key is new; later ones in this call are its duplicates.
    fresh: dict[str, int] = {}
    new: list[int] = []
    for i, item in enumerate(items):
        key = item.job.dedupe_key
        if key is None or (key not in known and key not in fresh):
            if key is not None:
                fresh[key] = i
            new.append(i)
    batch_of: dict[str, str] = {}
    opened: list[str] = []
    next_seq: dict[str, int] = {}
    for group in groups:
        joining = [items[i] for i in new if _group(items[i]) == group]
        if joining:
            batch_id, made, seq = yield from _settling_batch(
                d, now, joining, [r for r in open_batches if r["group_key"] == group])
            batch_of[group], next_seq[batch_id] = batch_id, seq
            opened += [batch_id] if made else []
    placed: dict[int, NewJob] = {}
    for i in new:
        job, its_group = items[i].job, _group(items[i])
        if its_group is not None:
            joined = batch_of[its_group]
            seq = next_seq.get(joined, 0)
            next_seq[joined] = seq + 1
            job = replace(job, batch_id=joined, seq=seq)
        placed[i] = job
    order = sorted(placed, key=lambda i: placed[i].dedupe_key or "")
    recorded = yield from create_jobs(d, now, [placed[i] for i in order], {})
    results: dict[int, tuple[Job, bool]] = dict(zip(order, recorded, strict=True))
    if opened and not all(results[i][1] for i in placed):
        # A same-key job committed meanwhile by a call outside our group lock (a trigger)
        # made some of ours duplicates: a batch we opened for them alone must not stay.
        yield run(f"DELETE FROM batches WHERE {d.in_list('id', 'ids')} AND NOT EXISTS"
                  " (SELECT 1 FROM jobs WHERE jobs.batch_id = batches.id)",
                  ids=d.list_param(opened))
    out: list[tuple[Job, bool]] = []
    for i, item in enumerate(items):
        if i in results:
            out.append(results[i])
        else:  # known before, or a duplicate of an earlier item of this call
            key = item.job.dedupe_key
            assert key is not None
            out.append((known[key], False) if key in known else (results[fresh[key]][0], False))
    return out


def _group(item: DropItem) -> str | None:
    return item.batch.group_key if item.batch is not None and item.batch.group_key else None


def _settling_batch(d: Dialect, now: float, joining: Sequence[DropItem], open_batches: list[Any]
                    ) -> Tx[tuple[str, bool, int]]:
    """The id of the group's batch still collecting images (and whether it was made now), its
    deadline pushed out for the items `joining` it, and its next position.

    `open_batches`: the group's open rows, locked where rows lock. The lock orders this against
    housekeeping: a batch it closed meanwhile is not among them (a new batch opens); one we
    lock cannot be closed until our jobs are committed in it, so its summary counts them.
    """
    first = joining[0]
    assert first.batch is not None and first.batch.group_key
    settling = max((r for r in open_batches if float(r["settle_until"]) > now),
                   key=lambda r: (float(r["created_at"]), r["pos"]), default=None)
    opened = now if settling is None else float(settling["created_at"])
    until = max(min(now + item.settle_seconds, opened + item.max_settle_seconds)
                for item in joining)
    if settling is None:  # made with its deadline; nothing in it yet
        return (yield from create_batch(d, now, first.batch, settle_until=until)).id, True, 0
    batch_id = settling["id"]
    # The next position comes with the update: one index probe however large the batch grows.
    seq = yield value("UPDATE batches SET settle_until = :until WHERE id = :id RETURNING"
                      " (SELECT COALESCE(MAX(seq) + 1, 0) FROM jobs WHERE batch_id = :id)",
                      until=until, id=batch_id)
    return str(batch_id), False, int(seq)


def close_settled_batches(d: Dialect, now: float) -> Tx[list[str]]:
    """Mark drop batches whose settle deadline passed as complete; returns their ids. One a
    drop is joining right now (row locked) is skipped and closed on a later round, if its
    deadline has not moved by then."""
    closed = yield rows(
        "UPDATE batches SET listing_done = TRUE WHERE id IN (SELECT id FROM batches"
        " WHERE NOT listing_done AND group_key IS NOT NULL AND settle_until <= :now"
        f"{d.skip_locked}) AND NOT listing_done AND settle_until <= :now RETURNING id", now=now)
    return [r[0] for r in closed]


def completed_versions(d: Dialect, now: float, version_keys: list[str]) -> Tx[set[str]]:
    """Which of `version_keys` (object version and recipe) have a completed edit (a dry run
    counts them as done)."""
    found = yield rows(f"SELECT DISTINCT version_key FROM jobs WHERE state = 'completed'"
                       f" AND {d.in_list('version_key', 'keys')}",
                       keys=d.list_param(sorted(set(version_keys))))
    return {r[0] for r in found}


def versions_with_jobs(d: Dialect, now: float, bucket: str, versions: list[tuple[str, str]]
                       ) -> Tx[set[tuple[str, str]]]:
    """Which (key, etag) object versions of a bucket already have a job, of any recipe."""
    found = yield rows(
        "SELECT DISTINCT source_key, source_etag FROM jobs WHERE source_bucket = :bucket"
        f" AND {d.in_list('source_key', 'keys')}",
        bucket=bucket, keys=d.list_param(sorted({key for key, _ in versions})))
    wanted = set(versions)
    return {(key, etag) for key, etag in found if (key, etag) in wanted}


def find_completed_version(d: Dialect, now: float, version_key: str) -> Tx[Job | None]:
    """The latest completed job that edited this object version with this recipe."""
    found = yield row(
        f"SELECT {JOB_COLUMNS_NO_DATA} FROM jobs WHERE version_key = :key"
        f" AND state = 'completed' ORDER BY finished_at DESC, {d.pos} DESC LIMIT 1",
        key=version_key)
    return None if found is None else job_from_row(found)


def blocked_jobs(d: Dialect, now: float, bucket: str, manifest_key: str, etag: str,
                 limit: int = 200) -> Tx[list[Job]]:
    """Failed jobs blocked by a version of this manifest other than `etag`, oldest first."""
    manifest = f"{bucket}\x1f{manifest_key}\x1f"
    found = yield rows(
        f"SELECT {JOB_COLUMNS_NO_DATA} FROM jobs WHERE blocked_by IS NOT NULL AND state = 'failed'"
        " AND substr(blocked_by, 1, :length) = :manifest AND blocked_by <> :current"
        f" ORDER BY created_at, {d.pos} LIMIT :limit", length=len(manifest), manifest=manifest,
        current=manifest + etag, limit=limit)
    return [job_from_row(r) for r in found]


def unblock(d: Dialect, now: float, job_ids: Sequence[str]) -> Tx[None]:
    yield run(f"UPDATE jobs SET blocked_by = NULL WHERE {d.in_list('id', 'ids')}",
              ids=d.list_param(job_ids))


# -- replays ----------------------------------------------------------------------------------


def requeue_jobs(d: Dialect, now: float, *, job_ids: list[str] | None = None,
                 batch_id: str | None = None, bucket: str | None = None,
                 prefix: str | None = None, include_completed: bool = False, limit: int = 1000
                 ) -> Tx[Requeued[Job]]:
    """Queue final jobs again (failed ones; completed ones too when include_completed, bumping
    their generation so the edit is redone), at most `limit` of them, oldest first: the answer
    says whether more matched (call again for the next page: those queued are no longer
    final). Their finished batches reopen, so each sends a fresh summary. At least one filter
    is required."""
    limit = max(1, limit)
    where, params = _filters(d, job_ids=job_ids, batch_id=batch_id, bucket=bucket,
                             prefix=prefix)
    params["states"] = d.list_param(["failed", "completed"] if include_completed
                                    else ["failed"])
    picked = yield rows(f"SELECT id FROM jobs WHERE {d.in_list('state', 'states')} AND {where}"
                        f" ORDER BY created_at, {d.pos} LIMIT :limit", limit=limit + 1, **params)
    ids = d.list_param([r[0] for r in picked[:limit]])
    if not picked:
        return Requeued([], False)
    if d.row_locks:
        # Lock the batches first, as finish_batch does, so a finish cannot slip in between
        # requeueing a batch's jobs and reopening it.
        yield run(f"SELECT 1 FROM batches WHERE id IN (SELECT batch_id FROM jobs WHERE"
                  f" {d.in_list('id', 'ids')}) ORDER BY id{d.lock}", ids=ids)
    requeued = yield rows(
        "UPDATE jobs SET state = 'queued', attempts = 0, run_after = :now, error = NULL,"
        " finished_at = NULL, lease_owner = NULL, lease_expires = NULL,"
        " generation = generation + CASE WHEN state = 'completed' THEN 1 ELSE 0 END"
        f" WHERE {d.in_list('state', 'states')} AND {d.in_list('id', 'ids')}"
        f" RETURNING {d.pos} AS pos, {JOB_COLUMNS_NO_DATA}", now=now, ids=ids,
        states=params["states"])
    jobs = [job_from_row(r) for r in sorted(requeued, key=lambda r: (r["created_at"],
                                                                    r["pos"]))]
    batches = sorted({job.batch_id for job in jobs if job.batch_id})
    if batches:
        # A replayed batch reports again: its old summary is kept in `extra`.
        for batch_id, summary, extra in (yield rows(
            "SELECT id, summary, extra FROM batches WHERE finished_at IS NOT NULL"
            f" AND {d.in_list('id', 'ids')} ORDER BY id", ids=d.list_param(batches),
        )):
            kept = {**loads(extra), "previous_summary": loads(summary)}
            yield run("UPDATE batches SET finished_at = NULL, summary = NULL, extra = :extra"
                      " WHERE id = :id", extra=dumps(kept), id=batch_id)
    return Requeued(jobs, len(picked) > limit)


def requeue_deliveries(d: Dialect, now: float, *, delivery_ids: list[str] | None = None,
                       job_id: str | None = None, batch_id: str | None = None,
                       url: str | None = None, since: float | None = None, limit: int = 1000
                       ) -> Tx[Requeued[Delivery]]:
    """Make failed or disabled deliveries pending again: due now, a fresh retry schedule
    (attempt history kept); at most `limit`, oldest first, the answer says whether more
    matched. `url` and `since` (recorded at or after) select all failed deliveries to one
    endpoint since a time. At least one filter is required."""
    limit = max(1, limit)
    where, params = _filters(d, delivery_ids=delivery_ids, job_id=job_id, batch_id=batch_id,
                             url=url, since=since)
    picked = yield rows(f"SELECT id FROM deliveries WHERE state IN ('failed', 'disabled')"
                        f" AND {where} ORDER BY created_at, {d.pos} LIMIT :limit",
                        limit=limit + 1, **params)
    if not picked:
        return Requeued([], False)
    requeued = yield rows(
        "UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = :now,"
        " finished_at = NULL, lease_owner = NULL, lease_expires = NULL"
        f" WHERE state IN ('failed', 'disabled') AND {d.in_list('id', 'ids')}"
        f" RETURNING {d.pos} AS pos, {DELIVERY_COLUMNS}", now=now,
        ids=d.list_param([r[0] for r in picked[:limit]]))
    ordered = sorted(requeued, key=lambda r: (r["created_at"], r["pos"]))
    return Requeued([delivery_from_row(r) for r in ordered], len(picked) > limit)


_FILTER_COLUMNS = {"job_ids": "id", "delivery_ids": "id", "batch_id": "batch_id",
                   "job_id": "job_id", "bucket": "source_bucket", "url": "url"}


def _filters(d: Dialect, **given: object) -> tuple[str, dict[str, object]]:
    """AND-ed WHERE conditions for the filters given; refuses an unfiltered (whole-table) call."""
    clauses: list[str] = []
    params: dict[str, object] = {}
    for name, wanted in given.items():
        if wanted is None:
            continue
        if name == "prefix":
            # LIKE would treat % and _ in keys as wildcards; compare the key's start instead.
            clauses.append("substr(source_key, 1, :prefix_length) = :prefix")
            params.update(prefix=wanted, prefix_length=len(str(wanted)))
        elif name == "since":
            clauses.append("created_at >= :since")
            params["since"] = float(wanted)  # type: ignore[arg-type]
        elif isinstance(wanted, list | tuple):
            clauses.append(d.in_list(_FILTER_COLUMNS[name], name))
            params[name] = d.list_param(wanted)
        else:
            clauses.append(f"{_FILTER_COLUMNS[name]} = :{name}")
            params[name] = wanted
    if not clauses:
        raise ValueError("a filter is required (ids, batch, job, bucket, prefix or url)")
    return " AND ".join(clauses), params


# -- subscriber endpoints -----------------------------------------------------------------------


def disable_endpoint(d: Dialect, now: float, url: str, reason: str) -> Tx[None]:
    """Stop delivering to a subscriber URL (it answered 410 Gone)."""
    yield run("INSERT INTO endpoints (url, disabled_at, reason) VALUES (:url, :now, :reason)"
              " ON CONFLICT (url) DO NOTHING", url=url, now=now, reason=reason)


def enable_endpoint(d: Dialect, now: float, url: str) -> Tx[bool]:
    """Deliver to a disabled subscriber URL again; False if it was not disabled."""
    return bool((yield count("DELETE FROM endpoints WHERE url = :url", url=url)) == 1)


def disabled_endpoints(d: Dialect, now: float, urls: list[str]) -> Tx[dict[str, str]]:
    """The given URLs that are disabled, with the reason."""
    found = yield rows(f"SELECT url, reason FROM endpoints WHERE {d.in_list('url', 'urls')}",
                       urls=d.list_param(urls))
    return {r[0]: r[1] for r in found}


# -- provider limits shared by every replica -----------------------------------------------------


def take_edit_slot(d: Dialect, now: float, key: str, per_minute: int) -> Tx[float]:
    """Take a slot of the edit rate `key` allows (`per_minute`, with a burst of one second's
    worth, see `gcra.take_slot`): 0.0 when taken, else the seconds to wait before asking
    again. Atomic across replicas."""
    # Creates the row if missing and, where rows lock, locks it until commit (an upsert's DO
    # UPDATE takes the row lock and sees the latest committed tat): askers are served in turn.
    stored = yield value("INSERT INTO rate_limits (key, tat) VALUES (:key, 0) ON CONFLICT (key)"
                         " DO UPDATE SET tat = rate_limits.tat RETURNING tat", key=key)
    wait, tat = take_slot(float(stored), now, per_minute)
    if wait <= 0:
        yield run("UPDATE rate_limits SET tat = :tat WHERE key = :key", tat=tat, key=key)
    return wait


def pause_provider(d: Dialect, now: float, key: str, until: float, reason: str) -> Tx[None]:
    """Pause the provider `key` until `until` (a later deadline already set stays). `reason`
    starts with the provider's error code: `billing_hard_limit_reached: …`."""
    # A later deadline wins; a shorter pause never cuts one already in force.
    yield run("INSERT INTO provider_pauses (key, until, reason, paused_at)"
              " VALUES (:key, :until, :reason, :now) ON CONFLICT (key) DO UPDATE SET"
              " until = excluded.until, reason = excluded.reason, paused_at = excluded.paused_at"
              " WHERE excluded.until >= provider_pauses.until",
              key=key, until=float(until), reason=reason, now=now)


def provider_pause(d: Dialect, now: float, key: str) -> Tx[tuple[float, str] | None]:
    """The pause in force for `key` as (until, reason), or None."""
    found = yield row("SELECT until, reason FROM provider_pauses WHERE key = :key"
                      " AND until > :now", key=key, now=now)
    return None if found is None else (float(found[0]), str(found[1]))
