"""The job worker and folder lister with real parts: SQLite ledger, local folder, slow provider."""

from __future__ import annotations

import asyncio
import time

import pytest

from imagedrop.config import ImagingSettings, WorkerSettings
from imagedrop.editor import Editor
from imagedrop.errors import TransientError
from imagedrop.ledger import JobKind, JobState, NewBatch, NewJob
from imagedrop.ledger.sqlite import SqliteLedger
from imagedrop.listing import Lister
from imagedrop.pipeline import Pipeline
from imagedrop.providers.local import LocalProvider
from imagedrop.recipes import Recipe
from imagedrop.storage.local import LocalStore
from imagedrop.worker import Worker
from tests.fixtures import images


class SlowProvider(LocalProvider):
    """The local provider, taking `delay` seconds per edit and noting the order of prompts."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.order: list[str] = []

    async def edit(self, image, mime_type, filename, spec):
        await asyncio.sleep(self.delay)
        self.order.append(filename)
        return await super().edit(image, mime_type, filename, spec)


@pytest.fixture(name="parts")
async def _parts(tmp_path):
    ledger = SqliteLedger(tmp_path / "l.db")
    await ledger.open()
    store = LocalStore(tmp_path / "data", public_url="http://x", signing_key=b"k")
    await store.ensure_bucket("b")
    provider = SlowProvider(0.05)
    pipeline = Pipeline(ledger=ledger, storage=store,
                        editor=Editor(provider, provider, billing_pause=0),
                        imaging_settings=ImagingSettings(), worker_settings=WorkerSettings(),
                        presign_expires=60)
    yield ledger, store, provider, pipeline
    await store.close()
    await ledger.close()


async def until(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def b64_job(name: str) -> NewJob:
    return NewJob(kind=JobKind.B64, filename=name, recipe=Recipe(prompt="p", model="m"),
                  input_data=images.png())


class TestWorker:
    """Bounded concurrency, fairness and a clean stop."""

    async def test_single_job_is_not_starved_by_a_batch(self, parts):
        ledger, _, provider, pipeline = parts
        batch = await ledger.create_batch(NewBatch(kind="wxo", bucket="b", prefix="",
                                                   output_bucket="b", output_prefix="o/",
                                                   recipe=Recipe(), listing_done=True))
        await ledger.create_jobs([
            NewJob(kind=JobKind.B64, filename=f"batch{i:02d}.png",
                   recipe=Recipe(prompt="p", model="m"), input_data=images.png(),
                   batch_id=batch.id, seq=i)
            for i in range(30)])
        worker = Worker(ledger, pipeline, WorkerSettings(concurrency=2, poll_interval=0.05),
                        owner="w")
        task = asyncio.create_task(worker.run())
        await until(lambda: _done(provider, 4))
        [(single, _)] = await ledger.create_jobs([b64_job("single.png")])
        finished_before = len(provider.order)
        await until(lambda: _state(ledger, single.id, JobState.COMPLETED))
        # The single job overtook the rest of the batch: only the two batch jobs already in
        # flight (and at most one claimed in the same instant) finished before it.
        assert provider.order.index("single.png") <= finished_before + 2 + 1
        assert len(provider.order) < 30
        await worker.stop()
        await task

    async def test_concurrency_is_bounded(self, parts):
        ledger, _, provider, pipeline = parts
        await ledger.create_jobs([b64_job(f"{i}.png") for i in range(12)])
        in_flight = peak = 0
        inner = provider.edit

        async def counting(*args, **kwargs):
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                return await inner(*args, **kwargs)
            finally:
                in_flight -= 1

        provider.edit = counting
        worker = Worker(ledger, pipeline, WorkerSettings(concurrency=3, poll_interval=0.05),
                        owner="w")
        task = asyncio.create_task(worker.run())
        await until(lambda: _done(provider, 12))
        await worker.stop()
        await task
        assert peak == 3

    async def test_the_next_edit_starts_while_an_outcome_is_recorded(self, parts):
        """A slot is an edit, not a whole job: with concurrency 1, job 2's edit begins while
        job 1's completion is still being committed (held here), never two edits at once."""
        ledger, _, provider, pipeline = parts
        gate = asyncio.Event()
        complete = ledger.complete_job

        async def held_complete(*args, **kwargs):
            await gate.wait()
            return await complete(*args, **kwargs)

        ledger.complete_job = held_complete
        [(first, _)] = await ledger.create_jobs([b64_job("1.png")])
        [(second, _)] = await ledger.create_jobs([b64_job("2.png")])
        worker = Worker(ledger, pipeline, WorkerSettings(concurrency=1, poll_interval=0.05),
                        owner="w")
        task = asyncio.create_task(worker.run())
        try:
            await until(lambda: _done(provider, 2))  # both edited, the first not yet recorded
            assert provider.order == ["1.png", "2.png"]
            assert (await ledger.get_job(first.id)).state is JobState.RUNNING
            gate.set()
            await until(lambda: _state(ledger, first.id, JobState.COMPLETED))
            await until(lambda: _state(ledger, second.id, JobState.COMPLETED))
        finally:
            gate.set()
            await worker.stop()
            await task
        assert worker.inflight == 0

    async def test_stop_waits_for_a_claim_in_flight(self, parts):
        """A claim that returns after stop() began is drained, not orphaned."""
        ledger, _, _provider, pipeline = parts
        gate = asyncio.Event()
        claims = ledger.claim_jobs

        async def slow_claim(*args, **kwargs):
            await gate.wait()
            return await claims(*args, **kwargs)

        ledger.claim_jobs = slow_claim
        [(job, _)] = await ledger.create_jobs([b64_job("late.png")])
        worker = Worker(ledger, pipeline, WorkerSettings(concurrency=1, poll_interval=0.05,
                                                         shutdown_grace=10), owner="w")
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(0)  # the loop is now inside the gated claim
        stopping = asyncio.create_task(worker.stop())
        gate.set()
        await stopping
        await task
        assert (await ledger.get_job(job.id)).state in (JobState.COMPLETED, JobState.QUEUED)
        assert worker.inflight == 0


    async def test_a_job_recorded_during_an_empty_claim_wakes_the_worker(self, parts):
        # The wake-up is edge-triggered: a job recorded after the claim looked and before the
        # worker waits must still wake it, not wait out the poll interval (an hour here).
        ledger, _, _provider, pipeline = parts
        claims = ledger.claim_jobs
        recorded: list[str] = []

        async def claim_then_record(*args, **kwargs):
            found = await claims(*args, **kwargs)
            if not recorded:  # the first claim found nothing; a job comes in right after
                [(job, _)] = await ledger.create_jobs([b64_job("gap.png")])
                recorded.append(job.id)
            return found

        ledger.claim_jobs = claim_then_record
        worker = Worker(ledger, pipeline, WorkerSettings(concurrency=1, poll_interval=3600),
                        owner="w")
        task = asyncio.create_task(worker.run())
        try:
            async def done() -> bool:
                job = await ledger.get_job(recorded[0]) if recorded else None
                return job is not None and job.state is JobState.COMPLETED
            await until(done)
        finally:
            await worker.stop()
            await task


class TestLister:
    """The lister survives errors and lists the folder into jobs."""

    async def test_survives_a_transient_error(self, parts, tmp_path):
        ledger, _, _, pipeline = parts
        for i in range(3):
            (tmp_path / "data" / "b" / f"{i}.png").write_bytes(images.png())
        batch = await ledger.create_batch(NewBatch(kind="wxo", bucket="b", prefix="",
                                                   output_bucket="b", output_prefix="out/",
                                                   recipe=Recipe(prompt="p", model="m")))
        progress = ledger.batch_progress
        failures = [TransientError("database is locked")]

        async def flaky(batch_id):
            if failures:
                raise failures.pop()
            return await progress(batch_id)

        ledger.batch_progress = flaky
        lister = Lister(ledger, pipeline.storage, pipeline, owner="l", lease_seconds=0.2,
                        poll_interval=0.05, max_attempts=3)
        task = asyncio.create_task(lister.run())
        await until(lambda: _listed(progress, batch.id, 3))
        await lister.stop()
        await task
        assert not failures


async def _done(provider: SlowProvider, n: int) -> bool:
    return len(provider.order) >= n


async def _state(ledger, job_id: str, state: JobState) -> bool:
    return (await ledger.get_job(job_id)).state is state


async def _listed(batch_progress, batch_id: str, n: int) -> bool:
    progress = await batch_progress(batch_id)
    return progress.listing_done and progress.total == n
