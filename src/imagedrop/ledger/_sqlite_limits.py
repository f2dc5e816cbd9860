"""The SQLite ledger's transactions for provider limits: the shared edit rate and pauses.

Each function gets an open transaction and the clock's `now`; `sqlite.py` begins and commits.
A write transaction holds SQLite's one write lock, so read-decide-write here is atomic.
"""

from __future__ import annotations

import sqlite3

from imagedrop.limits import take_slot


def take_edit_slot(conn: sqlite3.Connection, now: float, key: str, per_minute: int) -> float:
    row = conn.execute("SELECT tat FROM rate_limits WHERE key = ?", (key,)).fetchone()
    wait, tat = take_slot(0.0 if row is None else row[0], now, per_minute)
    if wait <= 0:
        conn.execute("INSERT INTO rate_limits (key, tat) VALUES (?, ?)"
                     " ON CONFLICT (key) DO UPDATE SET tat = excluded.tat", (key, tat))
    return wait


def pause_provider(conn: sqlite3.Connection, now: float, key: str, until: float,
                   reason: str) -> None:
    # A later deadline wins; a shorter pause never cuts one already in force.
    conn.execute(
        "INSERT INTO provider_pauses (key, until, reason, paused_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (key) DO UPDATE SET until = excluded.until, reason = excluded.reason,"
        " paused_at = excluded.paused_at WHERE excluded.until >= provider_pauses.until",
        (key, until, reason, now))


def provider_pause(conn: sqlite3.Connection, now: float, key: str) -> tuple[float, str] | None:
    row = conn.execute("SELECT until, reason FROM provider_pauses WHERE key = ? AND until > ?",
                       (key, now)).fetchone()
    return None if row is None else (row[0], row[1])
