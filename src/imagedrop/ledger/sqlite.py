"""The SQLite ledger: one connection on one dedicated thread, one transaction per method.

The event loop never touches SQLite: each call runs on the ledger's thread and is awaited.
WAL with `synchronous=FULL` makes every acknowledged change survive a power cut.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs

from imagedrop.errors import ConfigError
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
from imagedrop.ledger import _sqlite_batches as batch_tx
from imagedrop.ledger import _sqlite_drops as drop_tx
from imagedrop.ledger import _sqlite_jobs as job_tx
from imagedrop.ledger import _sqlite_limits as limit_tx
from imagedrop.ledger._sqlite_thread import SqliteThread
from imagedrop.ledger._waiters import Waiters

T = TypeVar("T")
_SYNCHRONOUS = ("off", "normal", "full", "extra")


class SqliteLedger:
    """A `Ledger` in one SQLite file (or in memory, for tests and throwaway runs)."""

    def __init__(
        self, path: str | Path, *, clock: Callable[[], float] = time.time,
        synchronous: str = "full",
    ) -> None:
        if synchronous not in _SYNCHRONOUS:
            raise ConfigError(f"SQLite synchronous must be one of {', '.join(_SYNCHRONOUS)}")
        self.path = str(path)
        self.synchronous = synchronous
        self._thread = SqliteThread(self.path, synchronous, clock)
        self._waiters = Waiters()

    @classmethod
    def from_url(cls, url: str, *, clock: Callable[[], float] = time.time) -> SqliteLedger:
        """`sqlite:///relative.db`, `sqlite:////abs.db` or `sqlite://:memory:`, plus an
        optional `?synchronous=normal` (faster, may lose the last commits on power loss)."""
        rest, _, query = url.removeprefix("sqlite:").partition("?")
        if rest.startswith("///"):
            path = rest[3:]
        elif rest.startswith("//"):
            path = rest[2:]
        else:
            path = ""
        if not path:
            raise ConfigError("IMAGEDROP_DATABASE_URL: expected sqlite:///path or sqlite://:memory:")
        options = {k: v[-1] for k, v in parse_qs(query).items()}
        unknown = set(options) - {"synchronous"}
        if unknown:
            raise ConfigError(f"IMAGEDROP_DATABASE_URL: unknown option(s) {sorted(unknown)}")
        return cls(path, clock=clock, synchronous=options.get("synchronous", "full").lower())

    # -- plumbing ---------------------------------------------------------------------------

    async def _read(self, body: Callable[..., T], *args: Any) -> T:
        return await self._thread.read(body, *args)

    async def _write(self, body: Callable[..., T], *args: Any) -> T:
        return await self._thread.write(body, *args)

    def _notify(self) -> None:
        """Wake every `wait_for_work` caller (the job worker, the sender, the lister)."""
        self._waiters.wake()

    # -- lifecycle --------------------------------------------------------------------------

    async def open(self) -> None:
        await self._thread.open()

    async def close(self) -> None:
        await self._thread.close()

    async def wait_for_work(self, timeout: float) -> None:
        await self._waiters.wait(timeout)

    # -- jobs -------------------------------------------------------------------------------

    async def create_jobs(self, jobs: list[NewJob]) -> list[tuple[Job, bool]]:
        if not jobs:
            return []
        out = await self._write(job_tx.create_jobs, jobs)
        if any(new for _, new in out):
            self._notify()
        return out

    async def get_job(self, job_id: str, *, with_input: bool = True) -> Job | None:
        return await self._read(job_tx.get_job, job_id, with_input)

    async def claim_jobs(self, owner: str, limit: int, lease_seconds: float) -> list[Job]:
        """See the Protocol; `started_at` keeps the first start, `attempts` counts every claim
        (the caller fails a job whose claims exceed max_attempts, e.g. one that kills workers)."""
        if limit <= 0:  # SQLite reads LIMIT -1 as "no limit"
            return []
        return await self._write(job_tx.claim_jobs, owner, limit, lease_seconds)

    async def renew_leases(self, owner: str, job_ids: list[str], lease_seconds: float) -> None:
        if job_ids:
            await self._write(job_tx.renew_leases, owner, job_ids, lease_seconds)

    async def complete_job(
        self, job_id: str, owner: str, result: dict[str, Any], deliveries: list[NewDelivery]
    ) -> bool:
        done = await self._write(job_tx.complete_job, job_id, owner, result, deliveries)
        if done and deliveries:
            self._notify()
        return done

    async def fail_job(
        self, job_id: str, owner: str, error: str, deliveries: list[NewDelivery]
    ) -> bool:
        done = await self._write(job_tx.fail_job, job_id, owner, error, deliveries)
        if done and deliveries:
            self._notify()
        return done

    async def retry_job(self, job_id: str, owner: str, error: str, run_after: float) -> bool:
        done = await self._write(job_tx.retry_job, job_id, owner, error, run_after)
        if done:
            self._notify()
        return done

    async def defer_job(self, job_id: str, owner: str, run_after: float, reason: str) -> bool:
        # No wake-up: the job is not due before `run_after`.
        return await self._write(job_tx.defer_job, job_id, owner, run_after, reason)

    async def claim_version(self, version_key: str, job_id: str, lease_seconds: float
                            ) -> str | None:
        return await self._write(job_tx.claim_version, version_key, job_id, lease_seconds)

    async def release_version(self, version_key: str, job_id: str) -> None:
        await self._write(job_tx.release_version, version_key, job_id)

    async def release_jobs(self, owner: str) -> int:
        """See the Protocol; each released job gets back the attempt its claim counted."""
        released = await self._write(job_tx.release_jobs, owner)
        if released:
            self._notify()
        return released

    async def list_jobs(
        self, *, batch_id: str | None = None, state: JobState | None = None, limit: int = 1000
    ) -> list[Job]:
        return await self._read(job_tx.list_jobs, batch_id, state, limit)

    # -- batches ----------------------------------------------------------------------------

    async def create_batch(self, batch: NewBatch) -> Batch:
        created = await self._write(batch_tx.create_batch, batch)
        self._notify()
        return created

    async def get_batch(self, batch_id: str) -> Batch | None:
        return await self._read(batch_tx.get_batch, batch_id)

    async def claim_listing(self, owner: str, lease_seconds: float) -> Batch | None:
        return await self._write(batch_tx.claim_listing, owner, lease_seconds)

    async def release_listings(self, owner: str) -> int:
        released = await self._write(batch_tx.release_listings, owner)
        if released:
            self._notify()
        return released

    async def add_batch_jobs(
        self, batch_id: str, owner: str, jobs: list[NewJob], cursor: str, done: bool
    ) -> int:
        """See the Protocol; the jobs get this batch's id, and `done` also ends the lease."""
        added = await self._write(batch_tx.add_batch_jobs, batch_id, owner, jobs, cursor, done)
        if added:
            self._notify()
        return added

    async def batch_progress(self, batch_id: str) -> BatchProgress:
        """Counts over the batch's jobs; raises `NotFound` for an unknown batch."""
        return await self._read(batch_tx.batch_progress, batch_id)

    async def finishable_batches(self, limit: int = 100) -> list[str]:
        return await self._read(batch_tx.finishable_batches, limit)

    async def finish_batch(
        self, batch_id: str, summary: dict[str, Any], deliveries: list[NewDelivery]
    ) -> bool:
        done = await self._write(batch_tx.finish_batch, batch_id, summary, deliveries)
        if done and deliveries:
            self._notify()
        return done

    # -- dropped files and replays ------------------------------------------------------------

    async def record_drops(self, items: list[DropItem]) -> list[tuple[Job, bool]]:
        if not items:
            return []
        out = await self._write(drop_tx.record_drops, items)
        if any(new for _, new in out):
            self._notify()
        return out

    async def close_settled_batches(self) -> list[str]:
        return await self._write(drop_tx.close_settled_batches)

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
        jobs = await self._write(drop_tx.requeue_jobs, job_ids, batch_id, bucket, prefix,
                                 include_completed)
        if jobs:
            self._notify()
        return jobs

    async def requeue_deliveries(
        self, *, delivery_ids: list[str] | None = None, job_id: str | None = None,
        batch_id: str | None = None,
    ) -> list[Delivery]:
        deliveries = await self._write(drop_tx.requeue_deliveries, delivery_ids, job_id,
                                       batch_id)
        if deliveries:
            self._notify()
        return deliveries

    async def disable_endpoint(self, url: str, reason: str) -> None:
        await self._write(drop_tx.disable_endpoint, url, reason)

    async def enable_endpoint(self, url: str) -> bool:
        return await self._write(drop_tx.enable_endpoint, url)

    async def disabled_endpoints(self, urls: list[str]) -> dict[str, str]:
        return await self._read(drop_tx.disabled_endpoints, urls) if urls else {}

    # -- provider limits --------------------------------------------------------------------

    async def take_edit_slot(self, key: str, per_minute: int) -> float:
        return await self._write(limit_tx.take_edit_slot, key, per_minute)

    async def pause_provider(self, key: str, until: float, reason: str) -> None:
        await self._write(limit_tx.pause_provider, key, until, reason)

    async def provider_pause(self, key: str) -> tuple[float, str] | None:
        return await self._read(limit_tx.provider_pause, key)

    # -- deliveries -------------------------------------------------------------------------

    async def claim_deliveries(
        self, owner: str, limit: int, lease_seconds: float
    ) -> list[Delivery]:
        if limit <= 0:
            return []
        return await self._write(batch_tx.claim_deliveries, owner, limit, lease_seconds)

    async def record_attempt(
        self, delivery_id: str, owner: str, attempt: DeliveryAttempt, *,
        state: DeliveryState, next_attempt_at: float | None = None,
    ) -> None:
        """Record the try; the delivery moves on only while `owner` holds it (else history only)."""
        moved = await self._write(
            batch_tx.record_attempt, delivery_id, owner, attempt, state, next_attempt_at
        )
        if moved and state is DeliveryState.PENDING:
            self._notify()

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        return await self._read(batch_tx.get_delivery, delivery_id)

    async def list_deliveries(
        self, *, job_id: str | None = None, batch_id: str | None = None
    ) -> list[Delivery]:
        return await self._read(batch_tx.list_deliveries, job_id, batch_id)

    async def list_attempts(self, delivery_id: str) -> list[DeliveryAttempt]:
        return await self._read(batch_tx.list_attempts, delivery_id)

