"""The job worker: claims due jobs with a lease, runs them with bounded concurrency, renews leases.

Shutdown stops claiming, gives in-flight jobs `shutdown_grace` seconds, then cancels the rest
and hands their leases back so another process (or the next start) takes them up at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog

from imagedrop.config import WorkerSettings
from imagedrop.ledger import Job, Ledger
from imagedrop.pipeline import Pipeline

log = structlog.get_logger(__name__)


class Worker:
    """Bounded-concurrency job runner for one process."""

    name = "worker"

    def __init__(
        self, ledger: Ledger, pipeline: Pipeline, settings: WorkerSettings, *, owner: str
    ) -> None:
        self.ledger = ledger
        self.pipeline = pipeline
        self.settings = settings
        self.owner = owner
        self._inflight: dict[str, asyncio.Task[object]] = {}
        # Jobs still editing: they hold the slots. A job whose edit is over only records its
        # outcome (a commit, maybe a file) while the next job starts: between two waves of
        # edits no slot waits for a commit.
        self._editing: set[str] = set()
        self._stopping = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._exited = asyncio.Event()
        self._started = False

    @property
    def inflight(self) -> int:
        """How many jobs this worker is running now."""
        return len(self._inflight)

    async def run(self) -> None:
        """Claim and run jobs until `stop()`."""
        self._started = True
        heartbeat = asyncio.create_task(self._heartbeat(), name="imagedrop-heartbeat")
        hint: asyncio.Future[None] | None = None
        try:
            while not self._stopping.is_set():
                free = self.settings.concurrency - len(self._editing)
                hint = None
                if free > 0:
                    # Listen for the hint before looking: a job recorded between an empty claim
                    # and the wait still wakes us (the hint is edge-triggered).
                    hint = self.ledger.wait_for_work(self.settings.poll_interval, "jobs")
                    try:
                        jobs = await self.ledger.claim_jobs(
                            self.owner, free, self.settings.lease_seconds)
                    except Exception:  # a ledger hiccup must not kill the worker
                        log.exception("claim_failed")
                        jobs = []
                    for job in jobs:
                        self._start(job)
                    if len(jobs) == free:
                        hint.cancel()
                        continue  # there may be more: fill the free slots first
                await self._idle(hint)
        finally:
            if hint is not None:
                hint.cancel()
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            self._exited.set()

    def _start(self, job: Job) -> None:
        def edited(job_id: str = job.id) -> None:
            if job_id in self._editing and self._inflight.get(job_id) is task:
                self._editing.discard(job_id)
                self._slot_freed.set()

        task = asyncio.create_task(self.pipeline.run(job, self.owner, edited=edited),
                                   name=f"job-{job.id}")
        self._inflight[job.id] = task
        self._editing.add(job.id)

        def done(task: asyncio.Task[object], job_id: str = job.id) -> None:
            # Only our own entry: the job may have been claimed again (a retry due at once)
            # while this task was still recording, and that run is another task.
            if self._inflight.get(job_id) is task:
                edited(job_id)
                del self._inflight[job_id]
            if not task.cancelled() and task.exception() is not None:
                # Pipeline.run records every outcome itself; reaching here is a bug, and the
                # job's lease will lapse and it will run again. Say so loudly.
                log.error("job_task_crashed", job_id=job_id, exc_info=task.exception())

        task.add_done_callback(done)

    async def _idle(self, hint: asyncio.Future[None] | None) -> None:
        """Wait for a free slot, new work (`hint`, when a slot is free), a stop, or the poll
        interval."""
        self._slot_freed.clear()
        waiters: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(self._stopping.wait()),
            asyncio.ensure_future(self._slot_freed.wait())]
        if hint is not None:
            waiters.append(hint)
        try:
            await asyncio.wait(waiters, timeout=self.settings.poll_interval,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _heartbeat(self) -> None:
        interval = max(0.05, self.settings.lease_seconds / 3)
        while True:
            await asyncio.sleep(interval)
            if self._inflight:
                try:
                    await self.ledger.renew_leases(
                        self.owner, list(self._inflight), self.settings.lease_seconds)
                except Exception:
                    log.exception("lease_renewal_failed")

    async def stop(self) -> None:
        """Stop claiming; let in-flight jobs finish within the grace period; release the rest."""
        self._stopping.set()
        if self._started:
            # A claim may be under way: let the loop finish it (its jobs join the in-flight set)
            # before deciding what to drain, so no job starts after the drain began.
            await self._exited.wait()
        tasks = list(self._inflight.values())
        if tasks:
            log.info("worker_draining", inflight=len(tasks), grace=self.settings.shutdown_grace)
            _, pending = await asyncio.wait(tasks, timeout=self.settings.shutdown_grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        released = await self.ledger.release_jobs(self.owner)
        if released:
            log.info("worker_released_jobs", count=released)
