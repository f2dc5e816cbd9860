"""The ledger's transactions for spend budgets and held jobs, written once for every database
(sans-I/O generators, as in `tx_jobs`). A budget's usage is one row per scope and UTC day,
locked while an edit is counted against it, so concurrent workers never go past it."""

from __future__ import annotations

from collections.abc import Sequence

from imagedrop.ledger.dialect import Dialect
from imagedrop.ledger.sql import Tx, count, rows, run, value
from imagedrop.prices import next_day, utc_day
from imagedrop.records import BudgetLimit, BudgetRefusal, BudgetTake

#: Scopes of the marker rows saying a folder heard that the service's budget was reached.
TOLD = "told>"


def take_budget(d: Dialect, now: float, limits: Sequence[BudgetLimit], usd: float, *,
                count: bool = True, folder: str | None = None) -> Tx[BudgetTake]:
    """Count one edit, expected to cost `usd`, against every budget in `limits` (today, UTC);
    or against none, answering the first budget it would take past its limit: the day counted
    on, and that budget if any. With `count` False only look (an early check that saves a
    download and a rate slot; a refusal is still recorded as the day's first, to be told
    once). `folder` (the job's folder scope): the service's budget is told once per folder
    and day, not once."""
    day = utc_day(now)
    scopes = sorted({limit.scope for limit in limits})
    for scope in scopes:
        yield run("INSERT INTO budget_usage (scope, day) VALUES (:scope, :day)"
                  " ON CONFLICT DO NOTHING", scope=scope, day=day)
    # Locked in one order (a row lock on PostgreSQL; SQLite has one writer): two workers
    # counting against one budget take turns, and never deadlock.
    found = yield rows(f"SELECT scope, edits, usd, reached_at FROM budget_usage"
                       f" WHERE day = :day AND {d.in_list('scope', 'scopes')}"
                       f" ORDER BY scope{d.lock}", day=day, scopes=d.list_param(scopes))
    usage = {r[0]: (int(r[1]), float(r[2]), r[3]) for r in found}
    for limit in sorted(limits, key=lambda lim: lim.scope):
        edits, spent, reached_at = usage[limit.scope]
        reason, never = None, False
        if limit.edits_per_day is not None and edits + 1 > limit.edits_per_day:
            reason = f"{limit.edits_per_day} edits per day"
        elif limit.usd_per_day is not None and spent + usd > limit.usd_per_day + 1e-9:
            never = usd > limit.usd_per_day + 1e-9
            reason = (f"US${limit.usd_per_day:g} per day (US${spent:.4f} spent, this edit "
                      f"about US${usd:.4f}"
                      + (": more than the whole day's budget, so it can never run)" if never
                         else ")"))
        if reason is not None:
            told = limit.scope
            if limit.scope == "service" and folder is not None:
                told = f"{TOLD}{folder}"  # a marker row: each folder hears it once
                yield run("INSERT INTO budget_usage (scope, day) VALUES (:scope, :day)"
                          " ON CONFLICT DO NOTHING", scope=told, day=day)
                reached_at = yield value(f"SELECT reached_at FROM budget_usage WHERE scope ="
                                         f" :scope AND day = :day{d.lock}", scope=told, day=day)
            if reached_at is None:
                yield run("UPDATE budget_usage SET reached_at = :now WHERE scope = :scope"
                          " AND day = :day", now=now, scope=told, day=day)
            return BudgetTake(day, BudgetRefusal(
                scope=limit.scope, reason=f"budget reached: {reason} "
                f"({_scope_name(limit.scope)}, UTC day {day})", first=reached_at is None,
                until=next_day(now), never=never))
    if count:
        yield run(f"UPDATE budget_usage SET edits = edits + 1, usd = usd + :usd"
                  f" WHERE day = :day AND {d.in_list('scope', 'scopes')}", usd=usd, day=day,
                  scopes=d.list_param(scopes))
    return BudgetTake(day, None)


def settle_budget(d: Dialect, now: float, scopes: list[str], day: str, usd: float,
                  edits: int = 0) -> Tx[None]:
    """Correct the day's usage of `scopes` by `usd` and `edits` (the real cost against the
    estimate; an edit that never reached the provider given back)."""
    yield run(f"UPDATE budget_usage SET usd = usd + :usd, edits = edits + :edits"
              f" WHERE day = :day AND {d.in_list('scope', 'scopes')}", usd=usd, edits=edits,
              day=day, scopes=d.list_param(list(scopes)))


def budget_usage(d: Dialect, now: float, scope: str, day: str) -> Tx[tuple[int, float]]:
    """Edits and dollars counted against `scope` on `day` (YYYY-MM-DD, UTC)."""
    found = yield rows("SELECT edits, usd FROM budget_usage WHERE scope = :scope AND day = :day",
                       scope=scope, day=day)
    return (int(found[0][0]), float(found[0][1])) if found else (0, 0.0)


def budget_day(d: Dialect, now: float, day: str) -> Tx[list[tuple[str, int, float]]]:
    """Every budget's (scope, edits, dollars) counted on `day`."""
    found = yield rows("SELECT scope, edits, usd FROM budget_usage WHERE day = :day"
                       " AND scope NOT LIKE :told ORDER BY scope LIMIT 1000", day=day,
                       told=TOLD + "%")
    return [(str(r[0]), int(r[1]), float(r[2])) for r in found]


def release_held(d: Dialect, now: float) -> Tx[int]:
    """Queue again the held jobs whose budget day has begun; returns how many."""
    return int((yield count("UPDATE jobs SET state = 'queued' WHERE state = 'held'"
                            " AND run_after <= :now", now=now)))


def _scope_name(scope: str) -> str:
    return "the service's budget" if scope == "service" else (
        f"the budget of {scope.removeprefix('folder:')}")
