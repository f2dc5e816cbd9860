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
would add a dependency and an async/sync split of its own. This class owns the guards,
invariants and wake-up policy; drivers only run what it hands them.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any, Literal, Protocol, TypeVar

from imagedrop.ledger import tx_batches, tx_budgets, tx_drops, tx_jobs, tx_listings, tx_owners
from imagedrop.ledger._grouping import GroupWriter
from imagedrop.ledger._waiters import Waiters
from imagedrop.ledger.dialect import Dialect
from imagedrop.ledger.spool import Spool
from imagedrop.ledger.sql import Tx
from imagedrop.payloads import BatchSummary
from imagedrop.recipes import JobResult
from imagedrop.records import (
    Batch,
    BatchProgress,
    BudgetLimit,
    BudgetTake,
    Delivery,
    DeliveryAttempt,
    DeliveryFilter,
    DeliveryLog,
    DeliveryState,
    DropItem,
    Job,
    JobFilter,
    JobState,
    NewBatch,
    NewDelivery,
    NewJob,
    Page,
    Requeued,
    SubscriberState,
)

T = TypeVar("T")
#: write: one atomic transaction; single: one statement, atomic by itself (no BEGIN/COMMIT
#: round trips where the database allows); read: no transaction; snapshot: one consistent view.
Mode = Literal["write", "single", "read", "snapshot"]
#: Values this large (an uploaded photo, a callback with a base64 result) are kept in a file
#: beside a SQLite ledger; smaller ones cost less in its pages than a file and a sync.
SPOOL_FROM = 64 * 1024
Body = Callable[..., Tx[T]]


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

    async def open(self, on_work: Callable[[], None]) -> None:
        """Connect and migrate; call `on_work` when another process reports new work."""

    async def close(self) -> None:
        """Close every connection."""

    async def run(self, mode: Mode, body: Body[T], *args: Any,
                  tell_others: Callable[[T], bool] | None = None) -> T:
        """Run `body(dialect, now, *args)`; `tell_others(result)` true: other processes
        waiting for work hear of it once this commits."""

    async def hold_liveness(self, key: int) -> None:
        """Take the lock on `key` that says this process lives (the dialect's `alive`)."""

    async def drop_liveness(self, key: int) -> None:
        """Give the lock on `key` back."""

    async def forget_liveness(self, keys: Sequence[int]) -> None:
        """Clean up after owners found dead (their locks are gone already)."""


def _any(result: object) -> bool:
    return bool(result)


def _first(result: tuple[object, ...]) -> bool:
    return bool(result[0])


def _any_new(result: list[tuple[Job, bool]]) -> bool:
    return any(new for _, new in result)


class Ledger:
    """Durable state on a driver. Every method commits before it returns."""

    def __init__(self, driver: Driver) -> None:
        self._driver = driver
        self._waiters = Waiters()
        # Notifications arrive in bursts: concurrent drops share one transaction (one flush).
        self._drops: GroupWriter[DropItem, tuple[Job, bool]] | None = None if (
            driver.groups_writes) else GroupWriter(self._record_drops)

    async def _run(self, mode: Mode, body: Body[T], *args: Any,
                   wake: Callable[[T], bool] | None = None) -> T:
        """Run a body; when `wake(result)`, every `wait_for_work` caller (the job worker, the
        sender, the lister) wakes, here at once and elsewhere through the driver."""
        result = await self._driver.run(mode, body, *args, tell_others=wake)
        if wake is not None and wake(result):
            self._waiters.wake()
        return result

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and apply migrations."""
        await self._driver.open(self._waiters.wake)

    async def close(self) -> None:
        """Close connections."""
        await self._driver.close()

    async def wait_for_work(self, timeout: float) -> None:
        """Return when new work may be claimable (a hint), or after `timeout` seconds."""
        await self._waiters.wait(timeout)

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

    async def dead_owners(self, me: str) -> list[str]:
        """Registered owners other than `me` whose process is gone."""
        return await self._run("read", tx_owners.dead_owners, me)

    async def take_over(self, owners: list[str]) -> int:
        """Expire every lease of these dead owners so their work is claimed at once, and forget
        them; returns how many leases were freed (an owner alive after all keeps its own)."""
        if not owners:
            return 0
        freed, keys = await self._run("write", tx_owners.take_over, owners,
                                      wake=lambda done: done[0] > 0)
        await self._driver.forget_liveness(keys)
        return freed

    async def claim_sweep(self, bucket: str, owner: str, lease_seconds: float) -> bool:
        """Hold the sweep of `bucket` for `owner` (renewing it): True while it is ours. One
        replica sweeps a bucket; another takes over once the sweeper is dead."""
        return await self._run("single", tx_owners.claim_sweep, bucket, owner, lease_seconds)

    async def release_sweeps(self, owner: str) -> int:
        """Give back the sweeps `owner` holds (graceful stop)."""
        return await self._run("single", tx_owners.release_sweeps, owner)

    # -- jobs -----------------------------------------------------------------------------

    async def create_jobs(self, jobs: list[NewJob]) -> list[tuple[Job, bool]]:
        """Record jobs; for a dedupe_key already recorded, return that job and False."""
        if not jobs:
            return []
        spooled = await self._put_large([job.input_data for job in jobs])
        try:
            created = await self._run("write", tx_jobs.create_jobs, jobs, spooled,
                                      wake=_any_new)
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
        jobs, spooled = await self._run("single", tx_jobs.claim_jobs, owner, limit,
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

    async def claim_version(self, version_key: str, job_id: str, lease_seconds: float
                            ) -> str | None:
        """Hold an object version (+ recipe) for the running job `job_id`, so that no other job
        edits it meanwhile: None when this job holds it now, else the id of the live holder.

        A lease that lapsed (its holder's process died) or whose holder is no longer running
        is taken over; the same job claiming again keeps it. Renewed by `renew_leases`;
        released with the job's outcome (`complete_job`, `fail_job`, `retry_job`, `defer_job`,
        `release_jobs`) in the same transaction, or by `release_version`.
        """
        return await self._run("write", tx_jobs.claim_version, version_key, job_id,
                               lease_seconds)

    async def release_version(self, version_key: str, job_id: str) -> None:
        """Give back a version `job_id` holds (nothing if another job holds it)."""
        await self._run("single", tx_jobs.release_version, version_key, job_id)

    async def complete_job(self, job_id: str, owner: str, result: JobResult,
                           deliveries: list[NewDelivery]) -> bool:
        """Mark completed and record its deliveries in one transaction; False if not owned.
        The inline image is dropped: it is not needed any more (a failed job keeps it, so a
        replay can run it again)."""
        deliveries, written = await self._spool_bodies(deliveries)
        try:
            done, spool = await self._run("write", tx_jobs.complete_job, job_id, owner, result,
                                          deliveries, wake=_first if deliveries else None)
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
                               wake=_any if deliveries else None)

    async def retry_job(self, job_id: str, owner: str, error: str, run_after: float) -> bool:
        """Put a running job back in the queue, due at `run_after`; False if not owned."""
        return await self._run("write", tx_jobs.retry_job, job_id, owner, error, run_after,
                               wake=_any)

    async def defer_job(self, job_id: str, owner: str, run_after: float, reason: str) -> bool:
        """Put a running job back in the queue, due at `run_after`, giving back the attempt its
        claim counted (it waits for another job; it did not fail); False if not owned."""
        # No wake-up: the job is not due before `run_after`.
        return await self._run("write", tx_jobs.defer_job, job_id, owner, run_after, reason)

    async def hold_job(self, job_id: str, owner: str, until: float, reason: str,
                       deliveries: list[NewDelivery] | None = None) -> bool:
        """Hold a running job over a budget until `until`, giving back the attempt its claim
        counted, with `deliveries` (budget.reached); False if not owned. `release_held`
        queues it again when the day begins."""
        return await self._run("write", tx_jobs.hold_job, job_id, owner, until, reason,
                               deliveries or [], wake=_any if deliveries else None)

    # -- budgets ------------------------------------------------------------------------------

    async def take_budget(self, limits: Sequence[BudgetLimit], usd: float, *,
                          count: bool = True, folder: str | None = None) -> BudgetTake:
        """Count one edit expected to cost `usd` against every budget of `limits` (today, UTC),
        all or none: the day counted on, and the budget it would take past its limit if any.
        `count` False: only look (an early check that saves a download and a rate slot)."""
        return await self._run("write", tx_budgets.take_budget, limits, usd, count, folder)

    async def settle_budget(self, scopes: Sequence[str], day: str, usd: float,
                            edits: int = 0) -> None:
        """Correct `day`'s usage of `scopes` by `usd` dollars and `edits` edits."""
        await self._run("write", tx_budgets.settle_budget, scopes, day, usd, edits)

    async def budget_usage(self, scope: str, day: str) -> tuple[int, float]:
        """Edits and dollars counted against `scope` on `day` (YYYY-MM-DD, UTC)."""
        return await self._run("read", tx_budgets.budget_usage, scope, day)

    async def budget_day(self, day: str) -> list[tuple[str, int, float]]:
        """Every budget's (scope, edits, dollars) on `day` (YYYY-MM-DD, UTC)."""
        return await self._run("read", tx_budgets.budget_day, day)

    async def release_held(self) -> int:
        """Queue again the held jobs whose budget day has begun; returns how many."""
        return await self._run("single", tx_budgets.release_held, wake=_any)

    async def release_jobs(self, owner: str) -> int:
        """Give back every job `owner` holds (graceful shutdown), each with the attempt its
        claim counted; returns how many."""
        return await self._run("write", tx_jobs.release_jobs, owner, wake=_any)

    async def list_jobs(self, *, batch_id: str | None = None, state: JobState | None = None,
                        limit: int = 1000) -> list[Job]:
        """Jobs filtered by batch and/or state, oldest first (input_data left out)."""
        return await self._run("read", tx_jobs.list_jobs, batch_id, state, limit)

    # -- batches --------------------------------------------------------------------------

    async def create_batch(self, batch: NewBatch) -> Batch:
        """Record a batch."""
        return await self._run("write", tx_batches.create_batch, batch, wake=_any)

    async def get_batch(self, batch_id: str) -> Batch | None:
        """One batch, or None."""
        return await self._run("read", tx_batches.get_batch, batch_id)

    async def claim_listing(self, owner: str, lease_seconds: float) -> Batch | None:
        """Lease one batch whose listing is unfinished (new, or its lister died)."""
        return await self._run("single", tx_batches.claim_listing, owner, lease_seconds)

    async def release_listings(self, owner: str) -> int:
        """Give back the unfinished listings `owner` holds (graceful stop): another lister
        resumes them from their cursor at once instead of after the lease."""
        return await self._run("single", tx_batches.release_listings, owner, wake=_any)

    async def add_batch_jobs(self, batch_id: str, owner: str, jobs: list[NewJob], cursor: str,
                             done: bool) -> int:
        """Record one listed page's jobs (they get this batch's id) and advance the cursor
        atomically; returns new jobs. Also renews the listing lease (`done` ends it); adds
        nothing, and raises nothing, if the lease was lost."""
        return await self._run("write", tx_batches.add_batch_jobs, batch_id, owner, jobs,
                               cursor, done, wake=_any)

    async def batch_progress(self, batch_id: str) -> BatchProgress:
        """Counts over the batch's jobs; raises `NotFound` for an unknown batch."""
        return await self._run("snapshot", tx_batches.batch_progress, batch_id)

    async def finishable_batches(self, limit: int = 100) -> list[str]:
        """Batches whose listing is done and whose jobs are all final but that are not closed
        (their closer died between the last outcome and the summary): to be closed now."""
        return await self._run("read", tx_batches.finishable_batches, limit)

    async def finish_batch(self, batch_id: str, summary: BatchSummary,
                           deliveries: list[NewDelivery]) -> bool:
        """Close a batch whose jobs are all final, once: True only for the call that closed it."""
        return await self._run("write", tx_batches.finish_batch, batch_id, summary, deliveries,
                               wake=_any if deliveries else None)

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
        return await self._run("write", tx_drops.record_drops, items, wake=_any_new)

    async def close_settled_batches(self) -> list[str]:
        """Mark drop batches whose settle deadline passed as complete; returns their ids."""
        return await self._run("single", tx_drops.close_settled_batches)

    async def versions_with_jobs(self, bucket: str, versions: list[tuple[str, str]]
                                 ) -> set[tuple[str, str]]:
        """Which (key, etag) object versions of a bucket already have a job, of any recipe."""
        if not versions:
            return set()
        return await self._run("read", tx_drops.versions_with_jobs, bucket, versions)

    async def completed_versions(self, version_keys: list[str]) -> set[str]:
        """Which of `version_keys` have a completed edit (a dry run counts them as done)."""
        return await self._run("read", tx_drops.completed_versions, version_keys)

    async def find_completed_version(self, version_key: str) -> Job | None:
        """The latest completed job that edited this object version with this recipe."""
        return await self._run("read", tx_drops.find_completed_version, version_key)

    async def blocked_jobs(self, bucket: str, manifest_key: str, etag: str, limit: int = 200
                           ) -> list[Job]:
        """Failed jobs that a broken version of this manifest (not version `etag`) blocked."""
        return await self._run("read", tx_drops.blocked_jobs, bucket, manifest_key, etag, limit)

    async def unblock(self, job_ids: list[str]) -> None:
        """These jobs are healed (or no longer concern their manifest): not blocked any more."""
        if job_ids:
            await self._run("write", tx_drops.unblock, job_ids)

    async def requeue_jobs(
        self, *, job_ids: list[str] | None = None, batch_id: str | None = None,
        bucket: str | None = None, prefix: str | None = None, include_completed: bool = False,
        limit: int = 1000,
    ) -> Requeued[Job]:
        """Queue final jobs again (failed ones; completed ones too when include_completed,
        bumping their generation so the edit is redone), at most `limit` of them, oldest
        first: the answer says whether more matched (call again for the next page). Their
        finished batches reopen, so each sends a fresh summary. At least one filter is
        required."""
        return await self._run("write", tx_drops.requeue_jobs, job_ids, batch_id, bucket,
                               prefix, include_completed, max(1, limit),
                               wake=lambda page: bool(page.items))

    async def requeue_deliveries(
        self, *, delivery_ids: list[str] | None = None, job_id: str | None = None,
        batch_id: str | None = None, url: str | None = None, since: float | None = None,
        limit: int = 1000,
    ) -> Requeued[Delivery]:
        """Make failed or disabled deliveries pending again: due now, a fresh retry schedule
        (attempt history kept); at most `limit`, oldest first, the answer says whether more
        matched. `url` and `since` (recorded at or after) select all failed deliveries to one
        endpoint since a time. At least one filter is required."""
        return await self._run("write", tx_drops.requeue_deliveries, delivery_ids, job_id,
                               batch_id, url, since, max(1, limit),
                               wake=lambda page: bool(page.items))

    async def disable_endpoint(self, url: str, reason: str) -> None:
        """Stop delivering to a subscriber URL (it answered 410 Gone)."""
        await self._run("single", tx_drops.disable_endpoint, url, reason)

    async def enable_endpoint(self, url: str) -> bool:
        """Deliver to a disabled subscriber URL again; False if it was not disabled."""
        return await self._run("single", tx_drops.enable_endpoint, url)

    async def disabled_endpoints(self, urls: list[str]) -> dict[str, str]:
        """The given URLs that are disabled, with the reason."""
        if not urls:
            return {}
        return await self._run("read", tx_drops.disabled_endpoints, urls)

    # -- provider limits shared by every replica ---------------------------------------------

    async def take_edit_slot(self, key: str, per_minute: int) -> float:
        """Take a slot of the edit rate `key` allows (`per_minute`, with a burst of one
        second's worth, see `gcra.take_slot`): 0.0 when taken, else the seconds to wait
        before asking again. Atomic across replicas."""
        return await self._run("write", tx_drops.take_edit_slot, key, per_minute)

    async def pause_provider(self, key: str, until: float, reason: str) -> None:
        """Pause the provider `key` until `until` (a later deadline already set stays).
        `reason` starts with the provider's error code: `billing_hard_limit_reached: …`."""
        await self._run("single", tx_drops.pause_provider, key, until, reason)

    async def provider_pause(self, key: str) -> tuple[float, str] | None:
        """The pause in force for `key` as (until, reason), or None."""
        return await self._run("read", tx_drops.provider_pause, key)

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
                        next_attempt_at, follow_up or [], wake=_any if wake else None)

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        """One delivery, or None."""
        found = await self._run("read", tx_batches.get_delivery, delivery_id)
        return None if found is None else (await self._bodies([found]))[0]

    async def list_deliveries(self, *, job_id: str | None = None, batch_id: str | None = None
                              ) -> list[Delivery]:
        """Deliveries for a job or batch."""
        return await self._bodies(await self._run("read", tx_batches.list_deliveries, job_id,
                                                  batch_id))

    async def list_attempts(self, delivery_id: str) -> list[DeliveryAttempt]:
        """Every recorded attempt of a delivery, in order."""
        return await self._run("read", tx_batches.list_attempts, delivery_id)

    # -- listings for operators ------------------------------------------------------------

    async def page_jobs(self, where: JobFilter, *, after: str | None = None, limit: int = 50
                        ) -> Page[Job]:
        """Jobs matching `where`, newest first, `limit` per page (input data left out);
        `after` is the previous page's `next` (an InputError if it is not one)."""
        return await self._run("read", tx_listings.page_jobs, where, after, max(1, limit))

    async def page_deliveries(self, where: DeliveryFilter, *, after: str | None = None,
                              limit: int = 50) -> Page[DeliveryLog]:
        """Callback deliveries (bodies left out) with every attempt, newest first."""
        return await self._run("snapshot", tx_listings.page_deliveries, where, after,
                               max(1, limit))

    async def page_subscribers(self, *, after: str | None = None, limit: int = 100
                               ) -> Page[SubscriberState]:
        """Every subscriber URL that was sent an event or is disabled, by URL, with its state."""
        return await self._run("read", tx_listings.page_subscribers, after, max(1, limit))

    async def ping(self) -> None:
        """Answer a trivial query (readiness): raises what the database raises."""
        await self._run("read", tx_listings.ping)

    async def jobs_for_objects(self, bucket: str, keys: list[str]) -> dict[str, Job]:
        """The newest job of each stored object named (the dashboard's folder cards)."""
        if not keys:
            return {}
        return await self._run("read", tx_listings.jobs_for_objects, bucket, keys)

    async def count_finished(self, state: JobState, since: float, cap: int = 1000) -> int:
        """How many jobs became `state` (completed or failed) at or after `since` (at most
        `cap`): the dashboard's edits per minute and failures per hour."""
        return await self._run("read", tx_listings.count_finished, str(state), since, cap)

    async def count_jobs(self, state: JobState) -> int:
        """How many jobs are in `state` now (across every replica)."""
        return await self._run("read", tx_listings.count_jobs, str(state))
