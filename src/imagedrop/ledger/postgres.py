"""The PostgreSQL driver: a pool of asyncpg connections, one transaction per body.

Several replicas share one database: claims lock rows with FOR UPDATE SKIP LOCKED, drop groups
and migrations take advisory locks, and LISTEN/NOTIFY wakes idle replicas when work appears.
JSON columns travel as text (asyncpg's default for jsonb), as they do on SQLite.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from imagedrop.errors import MissingDependencyError
from imagedrop.ledger._pg_url import check_schema, missing_driver_message, parse_url, secrets_of
from imagedrop.ledger._pg_url import where as describe

try:
    import asyncpg
except ModuleNotFoundError as exc:  # the optional driver; saq's pattern
    raise MissingDependencyError(missing_driver_message(exc.name)) from exc

from imagedrop.ledger._pg_errors import DRIVER_ERRORS, translate
from imagedrop.ledger._pg_listen import NOTIFY, Listener
from imagedrop.ledger.core import Body, Ledger, Mode, Wake
from imagedrop.ledger.dialect import MIGRATION_LOCK, POSTGRES, Dialect
from imagedrop.ledger.schema import POSTGRES_MIGRATIONS, check_version
from imagedrop.ledger.spool import Spool
from imagedrop.ledger.sql import Stmt, drive, numbered, one_statement

T = TypeVar("T")


def answers(conn: Any, clock: Callable[[], float]) -> Callable[[Stmt], Awaitable[Any]]:
    """What `drive` sends a body, from the asyncpg connection `conn`."""
    async def answer(stmt: Stmt) -> Any:
        if stmt.want == "now":
            return clock()
        if isinstance(stmt.params, Mapping):
            sql, names = numbered(stmt.sql)
            args = [stmt.params[name] for name in names]
        else:  # a dialect's own statement, numbered already
            sql, args = stmt.sql, list(stmt.params)
        if stmt.want == "rows":
            return await conn.fetch(sql, *args)
        if stmt.want == "row":
            return await conn.fetchrow(sql, *args)
        if stmt.want == "value":
            return await conn.fetchval(sql, *args)
        status = await conn.execute(sql, *args)
        # Rows a command touched, from its status tag (`UPDATE 3`, `INSERT 0 1`, `DELETE 0`).
        return int(status.rsplit(" ", 1)[-1]) if stmt.want == "count" else None
    return answer


async def _notify(conn: Any, tell: Wake[T] | None, result: T) -> None:
    """Tell the other replicas of the kinds of work `tell(result)` names, if any."""
    work = tell(result) if tell is not None else ()
    if work:
        await conn.execute(NOTIFY, " ".join(work))


async def _kept(conn: Any) -> None:
    """A pooled connection goes back as it is: its session holds nothing to undo (no SET, no
    LISTEN, no session lock or cursor: those live on the listener's own connection), and the
    pool still rolls back a transaction left open. The default reset is a round trip per call."""


async def apply_migrations(conn: Any, now: float, schema: str | None) -> int:
    """Apply every script newer than the recorded version; returns the resulting version.

    One transaction holds an advisory lock for this schema while it creates the schema (if
    named), reads the version and applies what is missing, so replicas starting together apply
    each script exactly once and a failed script leaves nothing behind. `schema` must already
    be a checked identifier (`_pg_url.check_schema`); the connection's search_path names it.
    """
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext(COALESCE($2::text, current_schema(), '')))",
            MIGRATION_LOCK, schema,
        )
        # Checked first: CREATE SCHEMA IF NOT EXISTS still needs CREATE on the database.
        if schema is not None and not await conn.fetchval(
            "SELECT true FROM pg_namespace WHERE nspname = $1", schema
        ):
            await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version"
            " (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
        )
        version = await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version")
        for target, script in enumerate(POSTGRES_MIGRATIONS, start=1):
            if version < target:
                await conn.execute(script)
                await conn.execute("INSERT INTO schema_version VALUES ($1, $2)", target, now)
                version = target
    check_version(version, len(POSTGRES_MIGRATIONS))
    return int(version)


class PostgresDriver:
    """Runs ledger bodies on a PostgreSQL database, optionally in its own schema."""

    dialect: Dialect = POSTGRES
    groups_writes = False
    steady_liveness = False
    spool: Spool | None = None  # replicas on other hosts share the database: images stay in it

    def __init__(self, dsn: str, *, clock: Callable[[], float], schema: str | None,
                 pool_min: int, pool_max: int) -> None:
        self.schema = check_schema(schema)
        self.pool_min, self.pool_max = pool_min, max(pool_min, pool_max)
        self._dsn = dsn  # private: it may hold a password; never put it in a message
        self._secrets = secrets_of(dsn)
        self.where = describe(dsn)
        self._clock = clock
        self._pool: Any = None
        self._listener: Listener | None = None

    def _settings(self) -> dict[str, str]:
        # Plans made per execution, for the tables as they are: asyncpg prepares each statement
        # once per pooled session, and PostgreSQL would soon keep one generic plan for it. Made
        # while a new ledger's tables were all but empty, that plan scanned the whole jobs
        # table for every drop once it held thousands (no ANALYZE had run to replace it).
        settings = {"application_name": "imagedrop", "plan_cache_mode": "force_custom_plan"}
        if self.schema is not None:
            settings["search_path"] = self.schema
        return settings

    async def _connect(self) -> Any:
        return await asyncpg.connect(self._dsn, server_settings=self._settings())

    async def open(self, on_work: Callable[[Sequence[str]], None]) -> None:
        if self._pool is not None:
            return
        try:
            pool = await asyncpg.create_pool(self._dsn, min_size=self.pool_min,
                                             max_size=self.pool_max, reset=_kept,
                                             server_settings=self._settings())
        except DRIVER_ERRORS as exc:
            raise translate(exc, self._secrets, self.where) from exc
        listener = Listener(self._connect, on_work)
        try:
            async with pool.acquire() as conn:
                await apply_migrations(conn, self._clock(), self.schema)
            await listener.start()
        except BaseException as exc:
            await pool.close()
            if isinstance(exc, DRIVER_ERRORS):
                raise translate(exc, self._secrets, self.where) from exc
            raise
        self._pool, self._listener = pool, listener

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        pool, self._pool = self._pool, None
        if listener is not None:
            await listener.stop()
        if pool is not None:
            await pool.close()

    @property
    def listening(self) -> bool:
        return self._listener is not None and self._listener.connected

    async def hold_liveness(self, key: int) -> None:
        if self._listener is None:
            raise RuntimeError("the ledger is not open")
        try:
            await self._listener.hold(key)
        except DRIVER_ERRORS as exc:
            raise translate(exc, self._secrets, self.where) from exc

    async def drop_liveness(self, key: int) -> None:
        if self._listener is not None:
            try:
                await self._listener.drop(key)
            except DRIVER_ERRORS as exc:
                raise translate(exc, self._secrets, self.where) from exc

    async def forget_liveness(self, keys: Sequence[int]) -> None:
        """Nothing to clean: a dead session's advisory locks are gone with it."""

    async def run(self, mode: Mode, body: Body[T], *args: Any,
                  tell_others: Wake[T] | None = None) -> T:
        if self._pool is None:
            raise RuntimeError("the ledger is not open")
        try:
            async with self._pool.acquire() as conn:
                answer = answers(conn, self._clock)
                if mode == "write":
                    async with conn.transaction():
                        result = await drive(body(POSTGRES, self._clock(), *args), answer)
                        await _notify(conn, tell_others, result)  # sent at COMMIT, or never
                    return result
                if mode == "snapshot":
                    async with conn.transaction(isolation="repeatable_read", readonly=True):
                        return await drive(body(POSTGRES, self._clock(), *args), answer)
                # One statement (atomic by itself) or a plain read: no BEGIN/COMMIT round
                # trips. A second statement would commit apart from the first: refused.
                result = await drive(body(POSTGRES, self._clock(), *args),
                                     one_statement(answer) if mode == "single" else answer)
                await _notify(conn, tell_others, result)
                return result
        except DRIVER_ERRORS as exc:
            raise translate(exc, self._secrets, self.where) from exc


class PostgresLedger(Ledger):
    """A ledger in a PostgreSQL database, optionally in its own schema."""

    def __init__(self, dsn: str, *, clock: Callable[[], float] = time.time,
                 schema: str | None = None, pool_min: int = 1, pool_max: int = 10) -> None:
        self._pg = PostgresDriver(dsn, clock=clock, schema=schema, pool_min=pool_min,
                                  pool_max=pool_max)
        self.schema, self.where = self._pg.schema, self._pg.where
        super().__init__(self._pg)

    @classmethod
    def from_url(cls, url: str, *, clock: Callable[[], float] = time.time) -> PostgresLedger:
        """`postgresql://user:pass@host:5432/db[?schema=name&…]`: `schema` is consumed here, the
        other query parameters go to asyncpg (e.g. `sslmode`)."""
        dsn, schema = parse_url(url)
        return cls(dsn, clock=clock, schema=schema)

    def __repr__(self) -> str:
        return f"PostgresLedger({self.where!r}, schema={self.schema!r})"

    @property
    def listening(self) -> bool:
        """Whether other replicas' NOTIFYs reach this ledger now (else it polls until back)."""
        return self._pg.listening
