"""Wake-ups for the PostgreSQL ledger: local waiters, and LISTEN on a dedicated connection.

Writes that create claimable work NOTIFY `imagedrop_work` in their transaction (delivered at
commit), naming its kinds (jobs, deliveries, listings), so work recorded by another replica wakes
the services of this one that it concerns; polling remains the fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog

from imagedrop.ledger._waiters import EVERY

CHANNEL = "imagedrop_work"
# The payload is the writer's schema and the kinds of work, space-separated: replicas of other
# ledgers sharing the database (test schemas, staging next to prod) hear the channel too, and
# ignore what is not theirs. A payload with no kinds (an older replica's) wakes every kind.
NOTIFY = f"SELECT pg_notify('{CHANNEL}', current_schema() || ' ' || $1::text)"
_RETRY_MIN, _RETRY_MAX = 0.5, 30.0

__all__ = ["CHANNEL", "NOTIFY", "Listener"]

log = structlog.get_logger(__name__)


class Listener:
    """Holds one connection that LISTENs, and reconnects (with backoff) when it is lost."""

    def __init__(self, connect: Callable[[], Awaitable[Any]],
                 on_work: Callable[[Sequence[str]], None]) -> None:
        self._connect = connect
        self._on_work = on_work
        self._conn: Any = None
        self._schema: str | None = None
        self._reconnect: asyncio.Task[None] | None = None
        self._closed = False
        # Liveness keys: held as session advisory locks on this connection, so they last as
        # long as the process (a SIGKILLed replica's connection closes and its locks go).
        self._keys: set[int] = set()

    async def start(self) -> None:
        """Connect and LISTEN; raises the driver's error if the server cannot be reached."""
        conn = await self._connect()
        try:
            self._schema = await conn.fetchval("SELECT current_schema()")
            await conn.add_listener(CHANNEL, self._heard)
            for key in self._keys:  # again after a reconnect
                await conn.execute("SELECT pg_advisory_lock($1)", key)
            conn.add_termination_listener(self._lost)
        except BaseException:
            await conn.close()
            raise
        self._conn = conn

    @property
    def connected(self) -> bool:
        """Whether notifications are being heard (False while reconnecting)."""
        return self._conn is not None and not self._conn.is_closed()

    async def hold(self, key: int) -> None:
        """Hold the advisory lock `key` on this connection, now and after every reconnect."""
        self._keys.add(key)
        if self.connected:
            await self._conn.execute("SELECT pg_advisory_lock($1)", key)

    async def drop(self, key: int) -> None:
        self._keys.discard(key)
        if self.connected:
            await self._conn.execute("SELECT pg_advisory_unlock($1)", key)

    async def stop(self) -> None:
        self._closed = True
        if self._reconnect is not None:
            self._reconnect.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnect
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.remove_termination_listener(self._lost)
            with contextlib.suppress(Exception):  # closing: a broken connection is fine
                await conn.close(timeout=5)

    def _heard(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        schema, _, kinds = payload.partition(" ")
        if schema == self._schema:
            self._on_work(kinds.split() or EVERY)

    def _lost(self, conn: Any) -> None:
        if self._closed or conn is not self._conn:
            return
        self._conn = None
        # Notifications sent while we were away are gone: let the waiters poll once now.
        self._on_work(EVERY)
        self._reconnect = asyncio.get_running_loop().create_task(self._come_back())

    async def _come_back(self) -> None:
        delay = _RETRY_MIN
        while not self._closed:
            try:
                await self.start()
            except Exception as exc:  # unreachable for now: polling covers the gap
                log.warning("ledger_listener_reconnect_failed", error=type(exc).__name__,
                            retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX)
            else:
                self._on_work(EVERY)  # anything missed during the gap
                return
