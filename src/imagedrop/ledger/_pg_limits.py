"""The PostgreSQL ledger's transactions for provider limits: the shared edit rate and pauses.

Each function gets a connection in an open transaction and the clock's `now`; `postgres.py`
begins and commits. The rate row is locked while the next slot is decided, so
replicas asking at once are served one after the other.
"""

from __future__ import annotations

from typing import Any

from imagedrop.limits import take_slot


async def take_edit_slot(conn: Any, now: float, key: str, per_minute: int) -> float:
    # One round trip creates the row if missing and locks it until COMMIT (an upsert's
    # DO UPDATE takes the row lock and sees the latest committed tat).
    stored = await conn.fetchval(
        "INSERT INTO rate_limits (key, tat) VALUES ($1, 0) ON CONFLICT (key)"
        " DO UPDATE SET tat = rate_limits.tat RETURNING tat", key)
    wait, tat = take_slot(stored, now, per_minute)
    if wait <= 0:
        await conn.execute("UPDATE rate_limits SET tat = $2 WHERE key = $1", key, tat)
    return wait


async def pause_provider(conn: Any, now: float, key: str, until: float, reason: str) -> None:
    # A later deadline wins; a shorter pause never cuts one already in force.
    await conn.execute(
        "INSERT INTO provider_pauses (key, until, reason, paused_at) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (key) DO UPDATE SET until = excluded.until, reason = excluded.reason,"
        " paused_at = excluded.paused_at WHERE excluded.until >= provider_pauses.until",
        key, float(until), reason, now)


async def provider_pause(conn: Any, now: float, key: str) -> tuple[float, str] | None:
    row = await conn.fetchrow("SELECT until, reason FROM provider_pauses"
                              " WHERE key = $1 AND until > $2", key, now)
    return None if row is None else (row["until"], row["reason"])
