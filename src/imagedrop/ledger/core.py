"""The ledger: durable jobs, batches and callback deliveries, each transaction written once.

Every state change is committed before it is acknowledged. Work is claimed with a lease that
its owner renews; a claim whose owner died expires and is claimed again.

How it is built, and why. Each transaction is a generator (`tx_*.py`) that yields statements
and receives their answers, sans-I/O in the manner of gidgethub: the same body runs
synchronously on SQLite's own thread (so group commit stays: many calls, one fsync) and
asynchronously on an asyncpg connection. What differs per database is confined to a `Dialect`
(claims, id lists, bulk inserts, locks) and a `Driver` (connections, transactions,
LISTEN/NOTIFY). SQLAlchemy Core was the other candidate: it would compile statements for both,
but not the part that needs writing once (the guards and decisions between statements), and it
would add a dependency and an async/sync split of its own. This class owns the transaction
modes, the wake-up policy and what lies outside the database (files beside it, the group
commit of drops); guards on arguments live in the bodies or the methods around them; drivers
only run what it hands them.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import replace
from functools import partial
from typing import Any, Concatenate, Generic, Literal, ParamSpec, Protocol, TypeVar, overload

from imagedrop.ledger import tx_batches, tx_budgets, tx_drops, tx_jobs, tx_listings, tx_owners
from imagedrop.ledger._grouping import GroupWriter
from imagedrop.ledger._waiters import EVERY, Waiters, Work
from imagedrop.ledger.dialect import Dialect
from imagedrop.ledger.spool import Spool
from imagedrop.ledger.sql import Tx
from imagedrop.payloads import BatchSummary
from imagedrop.recipes import JobResult
from imagedrop.records import (
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    DropItem,
    Job,
    NewDelivery,
    NewJob,
    Requeued,
)

T = TypeVar("T")
P = ParamSpec("P")
#: write: one atomic transaction; single: a body of one statement, atomic by itself (no
#: BEGIN/COMMIT round trips where the database allows; a second statement is refused, on every
#: database); read: no transaction; snapshot: one consistent view.
Mode = Literal["write", "single", "read", "snapshot"]
#: Values this large (an uploaded photo, a callback with a base64 result) are kept in a file
#: beside a SQLite ledger; smaller ones cost less in its pages than a file and a sync.
SPOOL_FROM = 64 * 1024
Body = Callable[..., Tx[T]]
JOBS: tuple[Work, ...] = ("jobs",)
DELIVERIES: tuple[Work, ...] = ("deliveries",)
LISTINGS: tuple[Work, ...] = ("listings",)
#: From a body's result, the kinds of work it made (none: nobody wakes).
Wake = Callable[[T], Sequence[Work]]


class Driver(Protocol):
    """Runs transaction bodies on one database."""

    dialect: Dialect
    #: True when concurrent writes already share commits (SQLite's thread); else the ledger
    #: groups the hottest write (dropped files) itself.
    groups_writes: bool
    #: True when a live owner's liveness lock never lapses (a lock file held by the process);
    #: False when it can, for a moment (a PostgreSQL session reconnecting).
    steady_liveness: bool
    #: Where uploaded images are kept as files beside the database (one host), or None: in it.
    spool: Spool | None

    async def open(self, on_work: Callable[[Sequence[str]], None]) -> None:
        """Connect and migrate; call `on_work(kinds)` when another process reports new work."""

    async def close(self) -> None:
        """Close every connection."""

    async def run(self, mode: Mode, body: Body[T], *args: Any,
                  tell_others: Wake[T] | None = None) -> T:
        """Run `body(dialect, now, *args)`; other processes waiting for the kinds of work
        `tell_others(result)` names hear of it once this commits."""

    async def hold_liveness(self, key: int) -> None:
        """Take the lock on `key` that says this process lives (the dialect's `alive`)."""

    async def drop_liveness(self, key: int) -> None:
        """Give the lock on `key` back."""

    async def forget_liveness(self, keys: Sequence[int]) -> None:
        """Clean up after owners found dead (their locks are gone already)."""


def _if(work: tuple[Work, ...], made: Callable[[T], object] = bool) -> Wake[T]:
    """A wake-up of `work` when `made(result)` says the body made some."""
    return lambda result: work if made(result) else ()


def _first(result: tuple[object, ...]) -> bool:
    return bool(result[0])


def _any_new(result: list[tuple[Job, bool]]) -> bool:
    return any(new for _, new in result)


def _page(result: Requeued[Any]) -> bool:
    return bool(result.items)


class Op(Generic[P, T]):
    """A ledger method that runs one transaction body as it stands: the method takes what the
    body takes after the dialect and the clock (the body's signature and docstring are the
    method's); `mode` and `wake` are the ledger's policy (see `Ledger._run`)."""

    def __init__(self, mode: Mode, body: Callable[Concatenate[Dialect, float, P], Tx[T]],
                 wake: Wake[T] | None = None) -> None:
        self.mode, self.body, self.wake = mode, body, wake
        self.qualname = body.__name__
        self.__doc__ = body.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.qualname = f"{owner.__qualname__}.{name}"

    @overload
    def __get__(self, ledger: None, owner: type) -> Op[P, T]: ...
    @overload
    def __get__(self, ledger: Ledger, owner: type) -> Callable[P, Coroutine[Any, Any, T]]: ...
    def __get__(self, ledger: Ledger | None, owner: type
                ) -> Op[P, T] | Callable[P, Coroutine[Any, Any, T]]:
        if ledger is None:
            return self

        async def method(*args: P.args, **kwargs: P.kwargs) -> T:
            body: Body[T] = partial(self.body, **kwargs) if kwargs else self.body
            return await ledger._run(self.mode, body, *args, wake=self.wake)

        method.__name__, method.__qualname__ = self.body.__name__, self.qualname
        method.__doc__ = self.__doc__
        return method


class Ledger:
    """Durable state on a driver. Every method commits before it returns."""

    def __init__(self, driver: Driver) -> None:
        self._driver = driver
        self._waiters = Waiters()
        # Notifications arrive in bursts: concurrent drops share one transaction (one flush).
        self._drops: GroupWriter[DropItem, tuple[Job, bool]] | None = None if (
            driver.groups_writes) else GroupWriter(self._record_drops)

    async def _run(self, mode: Mode, body: Body[T], *args: Any,
                   wake: Wake[T] | None = None) -> T:
        """Run a body; the `wait_for_work` callers waiting for the kinds of work `wake(result)`
        names wake, here at once and elsewhere through the driver."""
        result = await self._driver.run(mode, body, *args, tell_others=wake)
        if wake is not None:
            self._waiters.wake(wake(result))
        return result

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and apply migrations."""
        await self._driver.open(self._waiters.wake)

    async def close(self) -> None:
        """Close connections."""
        await self._driver.close()

    def wait_for_work(self, timeout: float, work: Work) -> asyncio.Future[None]:
        """A future resolved when new `work` may be claimable (a hint), or after `timeout`
        seconds. Ask before looking for work: it is listening from the moment it is made.
        Cancel it when it is no longer needed."""
        return self._waiters.park(timeout, work)

    # -- owners: who holds leases, and whether it still lives ------------------------------

    async def register_owner(self, owner: str) -> None:
        """Record this process as lease owner `owner` and hold its liveness lock from now until
        `unregister_owner` or the process's death: then its leases are taken over at once
        (`take_over`), and until then never, however stale they get."""
        key = secrets.randbits(62) + 1
        await self._driver.hold_liveness(key)  # held before anyone can look it up
        try:
            await self._run("write", tx_owners.register_owner, owner, key, socket.gethostname(),
                            os.getpid())
        except BaseException:
            await self._driver.drop_liveness(key)
            raise

    async def unregister_owner(self, owner: str) -> None:
        """Forget `owner` and drop its liveness lock (a graceful stop, after releasing work)."""
        key = await self._run("write", tx_owners.unregister_owner, owner)
        if key is not None:
            await self._driver.drop_liveness(key)

    @property
    def steady_liveness(self) -> bool:
        """Whether an owner seen dead once is dead (else look twice: see `liveness.Reaper`)."""
        return self._driver.steady_liveness

    dead_owners = Op("read", tx_owners.dead_owners)

    async def take_over(self, owners: list[str]) -> int:
        """Expire every lease of these dead owners so their work is claimed at once, and forget
        them; returns how many leases were freed (an owner alive after all keeps its own)."""
        if not owners:
            return 0
        freed, keys = await self._run("write", tx_owners.take_over, owners,
                                      wake=_if(EVERY, _first))
        await self._driver.forget_liveness(keys)
        return freed

    claim_sweep = Op("single", tx_owners.claim_sweep)
    release_sweeps = Op("single", tx_owners.release_sweeps)

    # -- jobs -----------------------------------------------------------------------------

    async def create_jobs(self, jobs: list[NewJob]) -> list[tuple[Job, bool]]:
        """Record jobs; for a dedupe_key already recorded, return that job and False."""
        if not jobs:
            return []
        spooled = await self._put_large([job.input_data for job in jobs])
        try:
            created = await self._run("write", tx_jobs.create_jobs, jobs, spooled,
                                      wake=_if(JOBS, _any_new))
        except Exception:  # not committed (a cancelled call may have been: the sweep decides)
            await self._unspool(spooled.values())
            raise
        await self._unspool(name for i, name in spooled.items() if not created[i][1])
        return created

    async def get_job(self, job_id: str, *, with_input: bool = True) -> Job | None:
        """One job, or None; `with_input=False` leaves the inline image out (status reads)."""
        job, spooled = await self._run("read", tx_jobs.get_job, job_id, with_input)
        return None if job is None else (await self._unspooled([job], spooled))[0]

    async def claim_jobs(self, owner: str, limit: int, lease_seconds: float) -> list[Job]:
        """Lease up to `limit` due queued jobs (or running ones whose lease expired).

        Claims prefer single jobs, then interleave batches by `seq`, so a large batch cannot
        starve single-image jobs. Each claim increments `attempts` (the caller fails a job
        whose claims exceed max_attempts, e.g. one that kills workers) and sets `started_at`
        on the first.
        """
        if limit <= 0:  # SQLite reads LIMIT -1 as "no limit"
            return []
        # A write: the leases and the read of their images stand or fall together (leased
        # jobs nobody heard of would stay leased to a live owner, unclaimable).
        jobs, spooled = await self._run("write", tx_jobs.claim_jobs, owner, limit,
                                        lease_seconds)
        return await self._unspooled(jobs, spooled)

    async def tidy_spool(self, older_than: float = 3600.0) -> int:
        """Delete upload files no job names any more that are older than `older_than` seconds
        (left by a crash between a file and its row); returns how many."""
        spool = self._driver.spool
        if spool is None:
            return 0
        names = await spool.stale(older_than)
        if not names:
            return 0
        kept = await self._run("read", tx_jobs.spooled, names)
        await spool.remove(name for name in names if name not in kept)
        return len(names) - len(kept)

    async def _put_large(self, values: Sequence[bytes | None]) -> dict[int, str]:
        """Write the values of `SPOOL_FROM` bytes or more to files beside the ledger, if it
        keeps them there: the files' names by the values' positions."""
        spool = self._driver.spool
        at = [i for i, v in enumerate(values) if v is not None and len(v) >= SPOOL_FROM]
        if spool is None or not at:
            return {}
        names = await spool.put([values[i] or b"" for i in at])
        return dict(zip(at, names, strict=True))

    async def _read_files(self, names: list[str]) -> dict[str, bytes]:
        """The files' contents by name (one that cannot be read is left out)."""
        spool = self._driver.spool
        return {} if spool is None or not names else await spool.get(names)

    async def _spool_bodies(self, deliveries: list[NewDelivery]
                            ) -> tuple[list[NewDelivery], list[str]]:
        """Large bodies (a base64 result) written to files beside the ledger, if it keeps
        them there: the deliveries that name them instead, and the files' names."""
        written = await self._put_large([x.body for x in deliveries])
        out = [replace(x, body=b"", spool=written[i]) if i in written else x
               for i, x in enumerate(deliveries)]
        return out, list(written.values())

    async def _bodies(self, deliveries: list[Delivery]) -> list[Delivery]:
        """`deliveries` with the bodies kept in files read (a missing file leaves it empty)."""
        found = await self._read_files([x.spool for x in deliveries if x.spool is not None])
        return [replace(x, body=found.get(x.spool, b"")) if x.spool is not None else x
                for x in deliveries]

    async def _unspool(self, names: Iterable[str]) -> None:
        if self._driver.spool is not None:
            await self._driver.spool.remove(names)

    async def _unspooled(self, jobs: list[Job], spooled: dict[str, str]) -> list[Job]:
        """`jobs` with the images read from their files (a job whose file is gone keeps None:
        it fails saying its image is no longer stored)."""
        found = await self._read_files(list(spooled.values()))
        return [replace(job, input_data=found.get(spooled[job.id]))
                if job.id in spooled else job for job in jobs]

    async def renew_leases(self, owner: str, job_ids: list[str], lease_seconds: float) -> None:
        """Extend the leases `owner` holds on these jobs, and on the object versions they hold
        (`claim_version`): one heartbeat keeps both."""
        if job_ids:
            await self._run("write", tx_jobs.renew_leases, owner, job_ids, lease_seconds)

    claim_version = Op("write", tx_jobs.claim_version)
    release_version = Op("single", tx_jobs.release_version)

    async def complete_job(self, job_id: str, owner: str, result: JobResult,
                           deliveries: list[NewDelivery]) -> bool:
        """Mark completed and record its deliveries in one transaction; False if not owned.
        The inline image is dropped: it is not needed any more (a failed job keeps it, so a
        replay can run it again)."""
        deliveries, written = await self._spool_bodies(deliveries)
        try:
            done, spool = await self._run(
                "write", tx_jobs.complete_job, job_id, owner, result, deliveries,
                wake=_if(DELIVERIES, _first) if deliveries else None)
        except Exception:
            await self._unspool(written)
            raise
        durable = self._driver.spool is not None and self._driver.spool.commits_durable
        await self._unspool(([spool] if spool is not None and durable else [])
                            + ([] if done else written))
        return bool(done)

    async def fail_job(self, job_id: str, owner: str, error: str,
                       deliveries: list[NewDelivery]) -> bool:
        """Mark failed with the reason and record its deliveries; False if not owned."""
        return await self._run("write", tx_jobs.fail_job, job_id, owner, error, deliveries,
                               wake=_if(DELIVERIES) if deliveries else None)

    retry_job = Op("write", tx_jobs.retry_job, wake=_if(JOBS))
    defer_job = Op("write", tx_jobs.defer_job)  # not due before run_after: no wake-up
    release_jobs = Op("write", tx_jobs.release_jobs, wake=_if(JOBS))
    list_jobs = Op("read", tx_jobs.list_jobs)

    async def hold_job(self, job_id: str, owner: str, until: float, reason: str,
                       deliveries: list[NewDelivery] | None = None) -> bool:
        """Hold a running job over a budget until `until`, giving back the attempt its claim
        counted, with `deliveries` (budget.reached); False if not owned. `release_held`
        queues it again when the day begins."""
        return await self._run("write", tx_jobs.hold_job, job_id, owner, until, reason,
                               deliveries or [], wake=_if(DELIVERIES) if deliveries else None)

    # -- budgets ------------------------------------------------------------------------------

    take_budget = Op("write", tx_budgets.take_budget)
    settle_budget = Op("write", tx_budgets.settle_budget)
    budget_usage = Op("read", tx_budgets.budget_usage)
    budget_day = Op("read", tx_budgets.budget_day)
    release_held = Op("single", tx_budgets.release_held, wake=_if(JOBS))

    # -- batches --------------------------------------------------------------------------

    create_batch = Op("write", tx_batches.create_batch, wake=_if(LISTINGS))
    get_batch = Op("read", tx_batches.get_batch)
    claim_listing = Op("single", tx_batches.claim_listing)
    release_listings = Op("single", tx_batches.release_listings, wake=_if(LISTINGS))
    add_batch_jobs = Op("write", tx_batches.add_batch_jobs, wake=_if(JOBS))
    batch_progress = Op("snapshot", tx_batches.batch_progress)
    finishable_batches = Op("read", tx_batches.finishable_batches)

    async def finish_batch(self, batch_id: str, summary: BatchSummary,
                           deliveries: list[NewDelivery]) -> bool:
        """Close a batch whose jobs are all final, once: True only for the call that closed it."""
        return await self._run("write", tx_batches.finish_batch, batch_id, summary, deliveries,
                               wake=_if(DELIVERIES) if deliveries else None)

    # -- dropped files (notifications, sweep) and replays ----------------------------------

    async def record_drops(self, items: list[DropItem]) -> list[tuple[Job, bool]]:
        """Record dropped objects' jobs idempotently (by dedupe_key), in one transaction.

        A new job joins the batch of its group that is still settling (created from the
        template if none is) and pushes that batch's settle deadline to now + settle_seconds,
        never past max_settle_seconds after it opened. A duplicate joins nothing.
        """
        if not items:
            return []
        if self._drops is not None:
            return await self._drops.submit(items)
        return await self._record_drops(items)

    async def _record_drops(self, items: Sequence[DropItem]) -> list[tuple[Job, bool]]:
        return await self._run("write", tx_drops.record_drops, items, wake=_if(JOBS, _any_new))

    close_settled_batches = Op("single", tx_drops.close_settled_batches)

    completed_versions = Op("read", tx_drops.completed_versions)
    find_completed_version = Op("read", tx_drops.find_completed_version)
    blocked_jobs = Op("read", tx_drops.blocked_jobs)

    async def versions_with_jobs(self, bucket: str, versions: list[tuple[str, str]]
                                 ) -> set[tuple[str, str]]:
        """Which (key, etag) object versions of a bucket already have a job, of any recipe."""
        return await self._run("read", tx_drops.versions_with_jobs, bucket, versions
                               ) if versions else set()

    async def unblock(self, job_ids: list[str]) -> None:
        """These jobs are healed (or no longer concern their manifest): not blocked any more."""
        if job_ids:
            await self._run("write", tx_drops.unblock, job_ids)

    requeue_jobs = Op("write", tx_drops.requeue_jobs, wake=_if(JOBS, _page))
    requeue_deliveries = Op("write", tx_drops.requeue_deliveries, wake=_if(DELIVERIES, _page))
    disable_endpoint = Op("single", tx_drops.disable_endpoint)
    enable_endpoint = Op("single", tx_drops.enable_endpoint)

    async def disabled_endpoints(self, urls: list[str]) -> dict[str, str]:
        """The given URLs that are disabled, with the reason."""
        return await self._run("read", tx_drops.disabled_endpoints, urls) if urls else {}

    # -- provider limits shared by every replica ---------------------------------------------

    take_edit_slot = Op("write", tx_drops.take_edit_slot)
    pause_provider = Op("single", tx_drops.pause_provider)
    provider_pause = Op("read", tx_drops.provider_pause)

    # -- deliveries -----------------------------------------------------------------------

    async def claim_deliveries(self, owner: str, limit: int, lease_seconds: float
                               ) -> list[Delivery]:
        """Lease up to `limit` pending deliveries that are due."""
        if limit <= 0:
            return []
        return await self._bodies(await self._run("single", tx_batches.claim_deliveries, owner,
                                                  limit, lease_seconds))

    async def record_attempt(self, delivery_id: str, owner: str, attempt: DeliveryAttempt, *,
                             state: DeliveryState, next_attempt_at: float | None = None,
                             follow_up: list[NewDelivery] | None = None) -> None:
        """Record one attempt and the new state (pending: retried at `next_attempt_at`); the
        delivery moves on only while `owner` holds it (else history only), and then the
        `follow_up` deliveries are recorded with it (one transaction)."""
        wake = state is DeliveryState.PENDING or bool(follow_up)
        await self._run("write", tx_batches.record_attempt, delivery_id, owner, attempt, state,
                        next_attempt_at, follow_up or [],
                        wake=_if(DELIVERIES) if wake else None)

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        """One delivery, or None."""
        found = await self._run("read", tx_batches.get_delivery, delivery_id)
        return None if found is None else (await self._bodies([found]))[0]

    async def list_deliveries(self, *, job_id: str | None = None, batch_id: str | None = None
                              ) -> list[Delivery]:
        """Deliveries for a job or batch."""
        return await self._bodies(await self._run("read", tx_batches.list_deliveries, job_id,
                                                  batch_id))

    list_attempts = Op("read", tx_batches.list_attempts)

    # -- listings for operators ------------------------------------------------------------

    page_jobs = Op("read", tx_listings.page_jobs)
    page_deliveries = Op("snapshot", tx_listings.page_deliveries)
    page_subscribers = Op("read", tx_listings.page_subscribers)
    ping = Op("read", tx_listings.ping)

    async def jobs_for_objects(self, bucket: str, keys: list[str]) -> dict[str, Job]:
        """The newest job of each stored object named (the dashboard's folder cards)."""
        return await self._run("read", tx_listings.jobs_for_objects, bucket, keys
                               ) if keys else {}

    count_finished = Op("read", tx_listings.count_finished)
    count_jobs = Op("read", tx_listings.count_jobs)
