"""The SQLite driver: one connection on one dedicated thread, with group commit for writes.

The event loop never touches SQLite: each body runs on the ledger's thread and is awaited.
Writes that queue up while the thread is busy share one transaction (each in its own
SAVEPOINT, so one failing call leaves the others intact) and so share one fsync; every caller
is answered only after the COMMIT. WAL with `synchronous=FULL` makes every acknowledged change
survive a power cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple, TypeVar
from urllib.parse import parse_qs

from imagedrop.errors import ConfigError, PermanentError, TransientError
from imagedrop.ledger.core import Body, Ledger, Mode, Wake
from imagedrop.ledger.dialect import SQLITE, Dialect
from imagedrop.ledger.schema import SQLITE_MIGRATIONS, check_version, split_statements
from imagedrop.ledger.spool import Spool, open_private_folder
from imagedrop.ledger.sql import Stmt, drive, one_statement, result_of

T = TypeVar("T")
MEMORY = ":memory:"
_SYNCHRONOUS = ("off", "normal", "full", "extra")
_BUSY_TIMEOUT_MS = 5000  # another process (a second replica, the CLI) may hold the write lock
_GROUP_MAX = 256  # bounds one transaction's size and the latency of the first call in it


class _Write(NamedTuple):
    body: Body[Any]
    args: tuple[Any, ...]
    future: Future[Any]
    one: bool  # a "single" body: one statement (refused a second, as on PostgreSQL)


def answers(conn: sqlite3.Connection, clock: Callable[[], float]
            ) -> Callable[[Stmt], Awaitable[Any]]:
    """What `drive` sends a body, from `conn` (never suspends: see `result_of`)."""
    async def answer(stmt: Stmt) -> Any:
        if stmt.want == "now":
            return clock()
        cursor = conn.execute(stmt.sql, stmt.params)
        if stmt.want == "rows":
            return cursor.fetchall()
        if stmt.want in ("row", "value"):
            found = cursor.fetchone()
            return found if stmt.want == "row" or found is None else found[0]
        return cursor.rowcount if stmt.want == "count" else None
    return answer


def apply_migrations(conn: sqlite3.Connection, now: float) -> int:
    """Apply every script newer than the recorded version; returns the resulting version.

    `conn` must be in autocommit mode (isolation_level=None). Each script runs in its own
    BEGIN IMMEDIATE transaction that re-reads the version, so two processes opening the same
    file at once apply each script exactly once.
    """
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version"
                 " (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)")
    version = 0
    for target, script in enumerate(SQLITE_MIGRATIONS, start=1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            (version,) = conn.execute(
                "SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
            if version < target:
                # executescript would COMMIT first; statements one by one keep it atomic.
                for statement in split_statements(script):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version VALUES (?, ?)", (target, now))
                version = target
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    check_version(version, len(SQLITE_MIGRATIONS))
    return version


_LOCK_FLAGS = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC


def _same_file(fd: int, path: Path) -> bool:
    """Whether `path` still names the (not deleted) folder held open as `fd`."""
    try:
        held, there = os.fstat(fd), os.lstat(path)
    except OSError:
        return False
    return held.st_nlink > 0 and (held.st_dev, held.st_ino) == (there.st_dev, there.st_ino)


class SqliteDriver:
    """Runs ledger bodies on one SQLite file (or in memory, for tests and throwaway runs)."""

    dialect: Dialect = SQLITE
    groups_writes = True
    steady_liveness = True

    def __init__(self, path: str, synchronous: str, clock: Callable[[], float]) -> None:
        self.path = path
        self.synchronous = synchronous
        self._clock = clock
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._pending: list[_Write] = []
        # Liveness: one lock file per owner key beside the database (SQLite is one host); the
        # kernel drops a dead process's flock at once. Touched only on the ledger's thread.
        self._owners_dir = None if path == MEMORY else Path(f"{path}.owners")
        self._owners_fd: int | None = None  # that folder, held open: its files reached from it
        self._held: dict[int, int] = {}  # our own keys -> the descriptor holding the lock
        # Uploaded images go to files beside the database (`spool`), not through its pages.
        self.spool = None if path == MEMORY else Spool(
            Path(f"{path}.uploads"), commits_durable=synchronous in ("full", "extra"))

    async def open(self, on_work: Callable[[Sequence[str]], None]) -> None:
        # Other processes on this file are not heard: they are found by polling.
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
        try:
            for key in list(self._held):
                await asyncio.wrap_future(executor.submit(self._drop, key))
        finally:
            await asyncio.wrap_future(executor.submit(self._disconnect))
            executor.shutdown(wait=True)  # the thread is idle now: this join returns at once

    async def run(self, mode: Mode, body: Body[T], *args: Any,
                  tell_others: Wake[T] | None = None) -> T:
        executor = self._require()
        if mode in ("read", "snapshot"):  # a read transaction: one consistent snapshot
            return await self._await(executor.submit(self._read, body, args))
        future: Future[T] = Future()
        with self._lock:
            self._pending.append(_Write(body, args, future, mode == "single"))
        executor.submit(self._drain)  # one drain per write: the first may do them all
        return await self._await(future)

    async def hold_liveness(self, key: int) -> None:
        await self._await(self._require().submit(self._hold, key))

    async def drop_liveness(self, key: int) -> None:
        await self._await(self._require().submit(self._drop, key))

    async def forget_liveness(self, keys: Sequence[int]) -> None:
        await self._await(self._require().submit(self._forget, keys))

    # -- on the ledger's thread ---------------------------------------------------------------

    def _owners(self) -> int:
        """The folder of lock files, held open (made private) and never reached through a link:
        a link, a file or another user's folder in its place is a ConfigError. When the folder
        at its path is no longer the one held (deleted, replaced), the one there now is opened,
        with the same checks, and our own locks are made again in it: other processes look
        there."""
        assert self._owners_dir is not None
        fd = self._owners_fd
        if fd is not None and _same_file(fd, self._owners_dir):
            return fd
        new = open_private_folder(self._owners_dir, "it holds the liveness locks")
        self._owners_fd = new
        if fd is not None:
            os.close(fd)
            for key, held in list(self._held.items()):  # ours, in the folder others now read
                if held >= 0:
                    self._held[key] = self._lock_key(key, new)
                    os.close(held)
        return new

    def _lock_key(self, key: int, folder: int) -> int:
        fd = os.open(f"{int(key)}.lock", _LOCK_FLAGS | os.O_CREAT, 0o600, dir_fd=folder)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _hold(self, key: int) -> None:
        # An in-memory ledger has no other process to tell.
        self._held[key] = -1 if self._owners_dir is None else self._lock_key(key, self._owners())

    def _drop(self, key: int) -> None:
        fd = self._held.pop(key, -1)
        if fd >= 0:
            try:
                # Best effort: a lock file left behind, with nobody holding it, reads as dead.
                with contextlib.suppress(OSError, ConfigError):
                    self._forget([key])
            finally:
                os.close(fd)

    def _forget(self, keys: Sequence[int]) -> None:
        if self._owners_dir is not None and keys:
            folder = self._owners()  # checked once for all of them, not once per key
            for key in keys:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{int(key)}.lock", dir_fd=folder)

    def _alive(self, key: int | None) -> bool:
        """SQL's owner_alive(key): whether the process holding `key`'s lock file lives."""
        if key is None or self._owners_dir is None:
            return key in self._held
        if key in self._held:
            return True
        try:
            fd = os.open(f"{int(key)}.lock", _LOCK_FLAGS, dir_fd=self._owners())
        except FileNotFoundError:
            return False
        except (OSError, ConfigError):
            # A link or worse where its lock should be, or no folder to look in: never take
            # its work on that (and never raise inside SQL: the reason would be lost).
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released by the close below
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

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
            conn.create_function("owner_alive", 1, self._alive)
            apply_migrations(conn, self._clock())
            if self.spool is not None:
                self.spool.open()
            if self._owners_dir is not None:
                self._owners()  # a refusal stops the start, with the reason
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _disconnect(self) -> None:
        if self.spool is not None:
            self.spool.close()
        owners, self._owners_fd = self._owners_fd, None
        if owners is not None:
            os.close(owners)
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _read(self, body: Body[T], args: tuple[Any, ...]) -> T:
        conn = self._connection()
        conn.execute("BEGIN DEFERRED")
        try:
            result = result_of(drive(body(SQLITE, self._clock(), *args),
                                     answers(conn, self._clock)))
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
        for item, (ok, result) in zip(group, outcomes, strict=True):
            if ok:
                item.future.set_result(result)
            else:
                item.future.set_exception(result)

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
                    body = item.body(SQLITE, self._clock(), *item.args)
                    answer = answers(conn, self._clock)
                    outcomes.append((True, result_of(drive(
                        body, one_statement(answer) if item.one else answer))))
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


class SqliteLedger(Ledger):
    """A ledger in one SQLite file (or in memory, for tests and throwaway runs)."""

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time,
                 synchronous: str = "full") -> None:
        if synchronous not in _SYNCHRONOUS:
            raise ConfigError(f"SQLite synchronous must be one of {', '.join(_SYNCHRONOUS)}")
        self.path = str(path)
        self.synchronous = synchronous
        super().__init__(SqliteDriver(self.path, synchronous, clock))

    @classmethod
    def from_url(cls, url: str, *, clock: Callable[[], float] = time.time) -> SqliteLedger:
        """`sqlite:///relative.db`, `sqlite:////abs.db` or `sqlite://:memory:`, plus an
        optional `?synchronous=normal` (faster, may lose the last commits on power loss)."""
        rest, _, query = url.removeprefix("sqlite:").partition("?")
        path = rest[3:] if rest.startswith("///") else rest[2:] if rest.startswith("//") else ""
        if not path:
            raise ConfigError("IMAGEDROP_DATABASE_URL: expected sqlite:///path or sqlite://:memory:")
        options = {k: v[-1] for k, v in parse_qs(query).items()}
        unknown = set(options) - {"synchronous"}
        if unknown:
            raise ConfigError(f"IMAGEDROP_DATABASE_URL: unknown option(s) {sorted(unknown)}")
        return cls(path, clock=clock, synchronous=options.get("synchronous", "full").lower())
