"""The ledger's listings for operators: jobs, callback deliveries with their attempts, and
subscribers; newest first and cursor-paginated (sans-I/O generators, as in `tx_jobs`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields

from imagedrop.ledger.dialect import Dialect
from imagedrop.ledger.sql import (
    ATTEMPT_COLUMNS,
    JOB_COLUMNS_NO_DATA,
    Tx,
    attempt_from_row,
    decode_cursor,
    delivery_from_row,
    encode_cursor,
    job_from_row,
    rows,
    value,
)
from imagedrop.records import (
    Delivery,
    DeliveryAttempt,
    DeliveryFilter,
    DeliveryLog,
    Job,
    JobFilter,
    JobState,
    Page,
    SubscriberState,
)

# A listing leaves the (possibly large) callback body out.
_DELIVERY_LISTED = ", ".join(f.name for f in fields(Delivery) if f.name not in ("body", "spool"))


def _newest_first(d: Dialect, equal: dict[str, object], since: float | None,
                  after: str | None, limit: int) -> tuple[list[str], dict[str, object], str]:
    """The conditions, parameters and ORDER/LIMIT tail of a newest-first listing: the columns
    in `equal` that are given, recorded since `since`, continuing after cursor `after`."""
    where = [f"{column} = :{column}" for column, given in equal.items() if given is not None]
    params: dict[str, object] = {c: str(v) for c, v in equal.items() if v is not None}
    if since is not None:
        where.append("created_at >= :since")
        params["since"] = float(since)
    if after is not None:
        at, pos = decode_cursor(after, float, int)
        where.append(f"(created_at < :c_at OR (created_at = :c_at AND {d.pos} < :c_pos))")
        params.update(c_at=float(at), c_pos=pos)
    params["limit"] = limit + 1  # one more than the page: is there a next one?
    return where, params, f"ORDER BY created_at DESC, {d.pos} DESC LIMIT :limit"


def _where(conditions: list[str]) -> str:
    return f"WHERE {' AND '.join(conditions)}" if conditions else ""


def _page(found: Sequence[object], limit: int) -> tuple[list[object], str | None]:
    items = list(found[:limit])
    if len(found) <= limit:
        return items, None
    last = items[-1]
    return items, encode_cursor(float(last["created_at"]), int(last["pos"]))  # type: ignore[index]


def page_jobs(d: Dialect, now: float, where: JobFilter, *, after: str | None = None,
              limit: int = 50) -> Tx[Page[Job]]:
    """Jobs matching `where`, newest first, `limit` per page (input data left out); `after` is
    the previous page's `next` (an InputError if it is not one)."""
    limit = max(1, limit)
    conds, params, tail = _newest_first(
        d, {"state": where.state, "kind": where.kind, "source_bucket": where.bucket,
            "batch_id": where.batch_id}, where.since, after, limit)
    if where.prefix:
        # LIKE would treat % and _ in keys as wildcards; compare the key's start instead.
        conds.append("substr(source_key, 1, :prefix_length) = :prefix")
        params.update(prefix=where.prefix, prefix_length=len(where.prefix))
    found = yield rows(f"SELECT {d.pos} AS pos, {JOB_COLUMNS_NO_DATA} FROM jobs"
                       f" {_where(conds)} {tail}", **params)
    items, cursor = _page(found, limit)
    return Page([job_from_row(r) for r in items], cursor)  # type: ignore[arg-type]


def page_deliveries(d: Dialect, now: float, where: DeliveryFilter, *, after: str | None = None,
                    limit: int = 50) -> Tx[Page[DeliveryLog]]:
    """Callback deliveries (bodies left out) with every attempt, newest first."""
    limit = max(1, limit)
    conds, params, tail = _newest_first(
        d, {"state": where.state, "url": where.url, "job_id": where.job_id}, where.since, after,
        limit)
    found = yield rows(f"SELECT {d.pos} AS pos, {_DELIVERY_LISTED} FROM deliveries"
                       f" {_where(conds)} {tail}", **params)
    items, cursor = _page(found, limit)
    deliveries = [delivery_from_row({**r, "body": b""}) for r in items]  # type: ignore[dict-item]
    attempts = []
    if deliveries:
        attempts = yield rows(
            f"SELECT {ATTEMPT_COLUMNS} FROM delivery_attempts WHERE"
            f" {d.in_list('delivery_id', 'ids')} ORDER BY delivery_id, attempt, {d.pos}",
            ids=d.list_param([x.id for x in deliveries]))
    by_delivery: dict[str, list[DeliveryAttempt]] = {}
    for attempt in attempts:
        by_delivery.setdefault(attempt["delivery_id"], []).append(attempt_from_row(attempt))
    return Page([DeliveryLog(x, by_delivery.get(x.id, [])) for x in deliveries], cursor)


def page_subscribers(d: Dialect, now: float, *, after: str | None = None, limit: int = 100
                     ) -> Tx[Page[SubscriberState]]:
    """Every subscriber URL that was sent an event or is disabled, by URL, with its state."""
    limit = max(1, limit)
    start = decode_cursor(after, str)[0] if after is not None else ""
    found = yield rows(
        "SELECT u.url, e.reason,"
        " SUM(CASE WHEN x.state = 'delivered' THEN 1 ELSE 0 END),"
        " SUM(CASE WHEN x.state = 'failed' THEN 1 ELSE 0 END),"
        " SUM(CASE WHEN x.state = 'pending' THEN 1 ELSE 0 END),"
        " MAX(CASE WHEN x.state = 'delivered' THEN x.finished_at END),"
        " MAX(CASE WHEN x.state IN ('failed', 'disabled') THEN x.finished_at END),"
        " MAX(CASE WHEN x.state = 'pending' AND x.attempts > 0 THEN 1 ELSE 0 END)"
        " FROM (SELECT url FROM deliveries WHERE kind = 'webhook' AND url > :start"
        " UNION SELECT url FROM endpoints WHERE url > :start) u"
        " LEFT JOIN deliveries x ON x.url = u.url AND x.kind = 'webhook'"
        " LEFT JOIN endpoints e ON e.url = u.url"
        " GROUP BY u.url, e.reason ORDER BY u.url LIMIT :limit", start=start, limit=limit + 1)
    out = []
    for url, reason, delivered, failed, pending, success, failure, retrying in found[:limit]:
        if reason is not None:
            state = "disabled"
        elif retrying or (failure is not None and (success is None or failure > success)):
            state = "failing"
        else:
            state = "active"
        out.append(SubscriberState(
            url=url, state=state, disabled_reason=reason, delivered=int(delivered or 0),
            failed=int(failed or 0), pending=int(pending or 0),
            last_success=None if success is None else float(success),
            last_failure=None if failure is None else float(failure)))
    return Page(out, encode_cursor(out[-1].url) if len(found) > limit else None)


def ping(d: Dialect, now: float) -> Tx[None]:
    """Answer a trivial query (readiness): raises what the database raises."""
    yield value("SELECT 1")


def count_jobs(d: Dialect, now: float, state: JobState) -> Tx[int]:
    """How many jobs are in `state` now (across every replica)."""
    return int((yield value("SELECT COUNT(*) FROM jobs WHERE state = :state", state=str(state))))


def count_finished(d: Dialect, now: float, state: JobState, since: float, cap: int = 1000
                   ) -> Tx[int]:
    """How many jobs became `state` (completed or failed) at or after `since` (at most `cap`):
    the dashboard's edits per minute and failures per hour."""
    return int((yield value(
        "SELECT COUNT(*) FROM (SELECT 1 FROM jobs WHERE state = :state AND finished_at >= :since"
        " LIMIT :cap) AS recent", state=str(state), since=float(since), cap=cap)))


def jobs_for_objects(d: Dialect, now: float, bucket: str, keys: list[str]
                     ) -> Tx[dict[str, Job]]:
    """The newest job of each stored object named in `bucket` (the dashboard's folder cards;
    objects without one left out)."""
    found = yield rows(
        f"SELECT {JOB_COLUMNS_NO_DATA} FROM jobs WHERE source_bucket = :bucket"
        f" AND {d.in_list('source_key', 'keys')} ORDER BY created_at, {d.pos}",
        bucket=bucket, keys=d.list_param(sorted(set(keys))))
    return {job.source_key: job for job in map(job_from_row, found) if job.source_key}
