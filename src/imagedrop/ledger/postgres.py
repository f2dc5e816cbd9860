"""The PostgreSQL ledger: a pool of asyncpg connections, one transaction per method.

Several replicas share one database: claims lock rows with FOR UPDATE SKIP LOCKED, drop groups
and migrations take advisory locks, and LISTEN/NOTIFY wakes idle replicas when work appears.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from imagedrop.errors import MissingDependencyError
from imagedrop.ledger._pg_url import check_schema, missing_driver_message, parse_url, secrets_of
from imagedrop.ledger._pg_url import where as describe

try:
    import asyncpg
except ModuleNotFoundError as exc:  # the optional driver; saq's pattern
    raise MissingDependencyError(missing_driver_message(exc.name)) from exc

from imagedrop.ledger import (
    Batch,
    BatchProgress,
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    DropItem,
    Job,
    JobState,
    NewBatch,
    NewDelivery,
    NewJob,
)
from imagedrop.ledger import _pg_batches as batch_tx
from imagedrop.ledger import _pg_drops as drop_tx
from imagedrop.ledger import _pg_jobs as job_tx
from imagedrop.ledger import _pg_limits as limit_tx
from imagedrop.ledger._grouping import GroupWriter
from imagedrop.ledger._pg_errors import DRIVER_ERRORS, translate
from imagedrop.ledger._pg_listen import NOTIFY, Listener, Waiters
from imagedrop.ledger._pg_rows import install_codecs
from imagedrop.ledger.pg_migrations import apply_migrations


def _any(result: Any) -> bool:
    return bool(result)


def _any_new(result: list[tuple[Job, bool]]) -> bool:
    return any(new for _, new in result)


class PostgresLedger:
    """A `Ledger` in a PostgreSQL database, optionally in its own schema."""

    def __init__(
        self, dsn: str, *, clock: Callable[[], float] = time.time, schema: str | None = None,
        pool_min: int = 1, pool_max: int = 10,
    ) -> None:
        self.schema = check_schema(schema)
        self.pool_min, self.pool_max = pool_min, max(pool_min, pool_max)
        self._dsn = dsn  # private: it may hold a password; never put it in a message
        self._secrets = secrets_of(dsn)
        self.where = describe(dsn)
        self._clock = clock
        self._pool: Any = None
        self._waiters = Waiters()
        self._listener: Listener | None = None
        # Notifications arrive in bursts: concurrent drops share one transaction (one flush).
        self._drops: GroupWriter[DropItem, tuple[Job, bool]] = GroupWriter(
            lambda items: self._write(drop_tx.record_drops, items, self._clock, wake=_any_new))

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
        return self._listener is not None and self._listener.connected

    # -- plumbing ---------------------------------------------------------------------------

    def _settings(self) -> dict[str, str]:
        settings = {"application_name": "imagedrop"}
        if self.schema is not None:
            settings["search_path"] = self.schema
        return settings

    async def _connect(self) -> Any:
        return await asyncpg.connect(self._dsn, server_settings=self._settings())

    def _require(self) -> Any:
        if self._pool is None:
            raise RuntimeError("the ledger is not open")
        return self._pool

    async def _write(
        self, body: Callable[..., Any], *args: Any, wake: Callable[[Any], bool] | None = None
    ) -> Any:
        """Run `body(conn, now, *args)` in one transaction; NOTIFY in it if `wake(result)`."""
        pool = self._require()
        try:
            async with pool.acquire() as conn, conn.transaction():
                result = await body(conn, self._clock(), *args)
                woke = wake is not None and wake(result)
                if woke:
                    await conn.execute(NOTIFY)  # sent at COMMIT, never for a rollback
        except DRIVER_ERRORS as exc:
            raise translate(exc, self._secrets, self.where) from exc
        if woke:  # our own waiters need not wait for the round trip through the server
            self._waiters.wake()
        return result

    async def _single(self, body: Callable[..., Any], *args: Any) -> Any:
        """Run a `body` that is one statement, atomic by itself: no BEGIN/COMMIT round trips
        (claims are the hot path; each is one UPDATE … FROM (SELECT … SKIP LOCKED))."""
        return await self._read(body, *args)

    async def _read(self, body: Callable[..., Any], *args: Any, snapshot: bool = False) -> Any:
        """Run a read; `snapshot` gives its statements one consistent view."""
        pool = self._require()
        try:
            async with pool.acquire() as conn:
                if not snapshot:
                    return await body(conn, self._clock(), *args)
                async with conn.transaction(isolation="repeatable_read", readonly=True):
                    return await body(conn, self._clock(), *args)
        except DRIVER_ERRORS as exc:
            raise translate(exc, self._secrets, self.where) from exc

    # -- lifecycle --------------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            pool = await asyncpg.create_pool(
                self._dsn, min_size=self.pool_min, max_size=self.pool_max,
                server_settings=self._settings(), init=install_codecs,
            )
        except DRIVER_ERRORS as exc:
            raise translate(exc, self._secrets, self.where) from exc
        listener = Listener(self._connect, self._waiters.wake)
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

    async def wait_for_work(self, timeout: float) -> None:
        await self._waiters.wait(timeout)

    # -- jobs -------------------------------------------------------------------------------

    async def create_jobs(self, jobs: list[NewJob]) -> list[tuple[Job, bool]]:
        if not jobs:
            return []
        return await self._write(job_tx.create_jobs, jobs, wake=_any_new)

    async def get_job(self, job_id: str, *, with_input: bool = True) -> Job | None:
        return await self._read(job_tx.get_job, job_id, with_input)

    async def claim_jobs(self, owner: str, limit: int, lease_seconds: float) -> list[Job]:
        """See the Protocol; `started_at` keeps the first start, `attempts` counts every claim."""
        if limit <= 0:
            return []
        return await self._single(job_tx.claim_jobs, owner, limit, lease_seconds)

    async def renew_leases(self, owner: str, job_ids: list[str], lease_seconds: float) -> None:
        if job_ids:
            await self._single(job_tx.renew_leases, owner, job_ids, lease_seconds)

    async def complete_job(
        self, job_id: str, owner: str, result: dict[str, Any], deliveries: list[NewDelivery]
    ) -> bool:
        if not deliveries:  # one UPDATE: no transaction block needed
            return await self._single(job_tx.complete_job, job_id, owner, result, deliveries)
        return await self._write(job_tx.complete_job, job_id, owner, result, deliveries,
                                 wake=_any)

    async def fail_job(
        self, job_id: str, owner: str, error: str, deliveries: list[NewDelivery]
    ) -> bool:
        if not deliveries:
            return await self._single(job_tx.fail_job, job_id, owner, error, deliveries)
        return await self._write(job_tx.fail_job, job_id, owner, error, deliveries, wake=_any)

    async def retry_job(self, job_id: str, owner: str, error: str, run_after: float) -> bool:
        return await self._write(job_tx.retry_job, job_id, owner, error, run_after, wake=_any)

    async def defer_job(self, job_id: str, owner: str, run_after: float, reason: str) -> bool:
        # No NOTIFY: the job is not due before `run_after`.
        return await self._single(job_tx.defer_job, job_id, owner, run_after, reason)

    async def claim_version(self, version_key: str, job_id: str, lease_seconds: float
                            ) -> str | None:
        return await self._write(job_tx.claim_version, version_key, job_id, lease_seconds)

    async def release_version(self, version_key: str, job_id: str) -> None:
        await self._single(job_tx.release_version, version_key, job_id)

    async def release_jobs(self, owner: str) -> int:
        """See the Protocol; each released job gets back the attempt its claim counted."""
        return await self._write(job_tx.release_jobs, owner, wake=_any)

    async def list_jobs(
        self, *, batch_id: str | None = None, state: JobState | None = None, limit: int = 1000
    ) -> list[Job]:
        return await self._read(job_tx.list_jobs, batch_id, state, limit)

    # -- batches ----------------------------------------------------------------------------

    async def create_batch(self, batch: NewBatch) -> Batch:
        return await self._write(batch_tx.create_batch, batch, wake=_any)

    async def get_batch(self, batch_id: str) -> Batch | None:
        return await self._read(batch_tx.get_batch, batch_id)

    async def claim_listing(self, owner: str, lease_seconds: float) -> Batch | None:
        return await self._single(batch_tx.claim_listing, owner, lease_seconds)

    async def release_listings(self, owner: str) -> int:
        return await self._write(batch_tx.release_listings, owner, wake=_any)

    async def add_batch_jobs(
        self, batch_id: str, owner: str, jobs: list[NewJob], cursor: str, done: bool
    ) -> int:
        """See the Protocol; the jobs get this batch's id, and `done` also ends the lease."""
        return await self._write(batch_tx.add_batch_jobs, batch_id, owner, jobs, cursor, done,
                                 wake=_any)

    async def batch_progress(self, batch_id: str) -> BatchProgress:
        """Counts over the batch's jobs; raises `NotFound` for an unknown batch."""
        return await self._read(batch_tx.batch_progress, batch_id, snapshot=True)

    async def finishable_batches(self, limit: int = 100) -> list[str]:
        return await self._read(batch_tx.finishable_batches, limit)

    async def finish_batch(
        self, batch_id: str, summary: dict[str, Any], deliveries: list[NewDelivery]
    ) -> bool:
        wake = _any if deliveries else None
        return await self._write(batch_tx.finish_batch, batch_id, summary, deliveries,
                                 wake=wake)

    # -- dropped files and replays ------------------------------------------------------------

    async def record_drops(self, items: list[DropItem]) -> list[tuple[Job, bool]]:
        if not items:
            return []
        return await self._drops.submit(items)

    async def close_settled_batches(self) -> list[str]:
        return await self._single(drop_tx.close_settled_batches)

    async def versions_with_jobs(
        self, bucket: str, versions: list[tuple[str, str]]
    ) -> set[tuple[str, str]]:
        if not versions:
            return set()
        return await self._read(drop_tx.versions_with_jobs, bucket, versions)

    async def find_completed_version(self, version_key: str) -> Job | None:
        return await self._read(drop_tx.find_completed_version, version_key)

    async def requeue_jobs(
        self, *, job_ids: list[str] | None = None, batch_id: str | None = None,
        bucket: str | None = None, prefix: str | None = None, include_completed: bool = False,
    ) -> list[Job]:
        return await self._write(drop_tx.requeue_jobs, job_ids, batch_id, bucket, prefix,
                                 include_completed, wake=_any)

    async def requeue_deliveries(
        self, *, delivery_ids: list[str] | None = None, job_id: str | None = None,
        batch_id: str | None = None,
    ) -> list[Delivery]:
        return await self._write(drop_tx.requeue_deliveries, delivery_ids, job_id, batch_id,
                                 wake=_any)

    async def disable_endpoint(self, url: str, reason: str) -> None:
        await self._single(drop_tx.disable_endpoint, url, reason)

    async def enable_endpoint(self, url: str) -> bool:
        return await self._single(drop_tx.enable_endpoint, url)

    async def disabled_endpoints(self, urls: list[str]) -> dict[str, str]:
        return await self._read(drop_tx.disabled_endpoints, urls) if urls else {}

    # -- provider limits --------------------------------------------------------------------

    async def take_edit_slot(self, key: str, per_minute: int) -> float:
        return await self._write(limit_tx.take_edit_slot, key, per_minute)

    async def pause_provider(self, key: str, until: float, reason: str) -> None:
        await self._single(limit_tx.pause_provider, key, until, reason)

    async def provider_pause(self, key: str) -> tuple[float, str] | None:
        return await self._read(limit_tx.provider_pause, key)

    # -- deliveries -------------------------------------------------------------------------

    async def claim_deliveries(
        self, owner: str, limit: int, lease_seconds: float
    ) -> list[Delivery]:
        if limit <= 0:
            return []
        return await self._single(batch_tx.claim_deliveries, owner, limit, lease_seconds)

    async def record_attempt(
        self, delivery_id: str, owner: str, attempt: DeliveryAttempt, *,
        state: DeliveryState, next_attempt_at: float | None = None,
    ) -> None:
        """Record the try; the delivery moves on only while `owner` holds it (else history only)."""
        pending = state is DeliveryState.PENDING
        await self._write(batch_tx.record_attempt, delivery_id, owner, attempt, state,
                          next_attempt_at, wake=_any if pending else None)

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        return await self._read(batch_tx.get_delivery, delivery_id)

    async def list_deliveries(
        self, *, job_id: str | None = None, batch_id: str | None = None
    ) -> list[Delivery]:
        return await self._read(batch_tx.list_deliveries, job_id, batch_id)

    async def list_attempts(self, delivery_id: str) -> list[DeliveryAttempt]:
        return await self._read(batch_tx.list_attempts, delivery_id)

