"""The SQLite ledger's one connection on its one thread, with group commit for writes.

Writes that queue up while the thread is busy share one transaction (each in its own SAVEPOINT,
so one failing call leaves the others intact) and so share one fsync; every caller is answered
only after the COMMIT, so nothing is acknowledged before it is durable.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from imagedrop.errors import PermanentError, TransientError
from imagedrop.ledger.migrations import apply_migrations

T = TypeVar("T")
MEMORY = ":memory:"
_BUSY_TIMEOUT_MS = 5000  # another process (a second replica, the CLI) may hold the write lock
_GROUP_MAX = 256  # bounds one transaction's size and the latency of the first call in it


class _Write(NamedTuple):
    body: Callable[..., Any]
    args: tuple[Any, ...]
    future: Future[Any]


class SqliteThread:
    """Runs transaction bodies `body(conn, now, *args)` on a dedicated thread."""

    def __init__(self, path: str, synchronous: str, clock: Callable[[], float]) -> None:
        self.path = path
        self.synchronous = synchronous
        self._clock = clock
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._pending: list[_Write] = []

    async def open(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imagedrop-ledger")
        try:
            await self._await(self._executor.submit(self._connect))
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        await asyncio.wrap_future(executor.submit(self._disconnect))
        executor.shutdown(wait=True)  # the thread is idle now: this join returns at once

    async def read(self, body: Callable[..., T], *args: Any) -> T:
        """Run `body` in a read transaction (a consistent snapshot across its statements)."""
        return await self._await(self._require().submit(self._read, body, args))

    async def write(self, body: Callable[..., T], *args: Any) -> T:
        """Run `body` atomically in a write transaction; return once it is committed."""
        executor = self._require()
        future: Future[T] = Future()
        with self._lock:
            self._pending.append(_Write(body, args, future))
        executor.submit(self._drain)  # one drain per write: the first may do them all
        return await self._await(future)

    # -- on the ledger's thread ---------------------------------------------------------------

    def _connect(self) -> None:
        if self.path != MEMORY:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=_BUSY_TIMEOUT_MS / 1000)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")  # an in-memory database stays "memory"
            conn.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
            conn.execute("PRAGMA foreign_keys = ON")
            apply_migrations(conn, self._clock())
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _read(self, body: Callable[..., T], args: tuple[Any, ...]) -> T:
        conn = self._connection()
        conn.execute("BEGIN DEFERRED")
        try:
            result = body(conn, self._clock(), *args)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result

    def _drain(self) -> None:
        with self._lock:
            group, self._pending = self._pending[:_GROUP_MAX], self._pending[_GROUP_MAX:]
        # A call cancelled before its turn never runs; one already running still commits.
        group = [item for item in group if item.future.set_running_or_notify_cancel()]
        if not group:
            return
        try:
            outcomes = self._commit_group(group)
        except BaseException as exc:  # nothing was committed: every call in the group failed
            for item in group:
                item.future.set_exception(exc)
            return
        for item, (ok, value) in zip(group, outcomes, strict=True):
            if ok:
                item.future.set_result(value)
            else:
                item.future.set_exception(value)

    def _commit_group(self, group: list[_Write]) -> list[tuple[bool, Any]]:
        conn = self._connection()
        outcomes: list[tuple[bool, Any]] = []
        # IMMEDIATE takes the write lock up front: no deadlock-prone lock upgrade mid-transaction.
        conn.execute("BEGIN IMMEDIATE")
        try:
            for item in group:
                conn.execute("SAVEPOINT call")
                try:
                    # `now` is read with the lock held, so leases follow commit order.
                    outcomes.append((True, item.body(conn, self._clock(), *item.args)))
                except Exception as exc:
                    conn.execute("ROLLBACK TO call")
                    outcomes.append((False, exc))
                conn.execute("RELEASE call")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return outcomes

    # -- helpers -----------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the ledger is not open")
        return self._conn

    def _require(self) -> ThreadPoolExecutor:
        if self._executor is None:
            raise RuntimeError("the ledger is not open")
        return self._executor

    @staticmethod
    async def _await(future: Future[T]) -> T:
        try:
            return await asyncio.wrap_future(future)
        except sqlite3.OperationalError as exc:  # locked, busy, disk I/O: may pass
            raise TransientError(f"ledger unavailable: {exc}") from exc
        except sqlite3.Error as exc:  # a constraint the caller broke; retrying will not help
            raise PermanentError(f"ledger refused the change: {exc}") from exc
