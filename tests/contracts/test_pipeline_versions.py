"""Jobs and object versions through the pipeline (SQLite ledger, local folder, local provider):
two jobs for one version pay for one edit, and a job edits only the version it was made for."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from imagedrop.config import ImagingSettings, WorkerSettings
from imagedrop.editor import Editor
from imagedrop.ledger import Job, JobKind, JobState, NewJob
from imagedrop.ledger.sqlite import SqliteLedger
from imagedrop.pipeline import Pipeline
from imagedrop.providers.local import LocalProvider
from imagedrop.recipes import Recipe, SubscriberRef
from imagedrop.storage.local import LocalStore
from tests.contracts.ledger_backends import FakeClock
from tests.fixtures import images

VERSION = "b\x1fin/a.png\x1f{etag}\x1frev1"
SUBSCRIBERS = (SubscriberRef(url="https://hooks.example.com/h",
                             secret_ref="IMAGEDROP_HOOK_SECRET_MAIN"),)


class GatedProvider(LocalProvider):
    """The local provider, counting edits; each edit waits for `gate` once it has begun."""

    def __init__(self) -> None:
        super().__init__()
        self.edits = 0
        self.started = asyncio.Event()
        self.gate = asyncio.Event()
        self.gate.set()

    async def edit(self, *args, **kwargs):
        self.edits += 1
        self.started.set()
        await self.gate.wait()
        return await super().edit(*args, **kwargs)


@pytest.fixture(name="parts")
async def _parts(tmp_path):
    clock = FakeClock()
    ledger = SqliteLedger(tmp_path / "l.db", clock=clock)
    await ledger.open()
    store = LocalStore(tmp_path / "data", public_url="http://x", signing_key=b"k")
    await store.ensure_bucket("b")
    provider = GatedProvider()
    pipeline = Pipeline(ledger=ledger, storage=store,
                        editor=Editor(provider, provider, billing_pause=0),
                        imaging_settings=ImagingSettings(), worker_settings=WorkerSettings(),
                        presign_expires=60, clock=clock)
    yield ledger, store, provider, pipeline, clock
    await store.close()
    await ledger.close()


def write(data_dir, key: str, data: bytes) -> str:
    """A file a user wrote into the folder; returns its ETag."""
    path = data_dir / "b" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.md5(data).hexdigest()


def job_for(key: str, etag: str, *, kind: JobKind, output: str, **kw) -> NewJob:
    return NewJob(kind=kind, filename=key.rsplit("/", 1)[-1],
                  recipe=Recipe(prompt="p", model="m"),
                  source_bucket="b", source_key=key, source_etag=etag, output_bucket="b",
                  output_key=output, version_key=VERSION.format(etag=etag), **kw)


async def claim(ledger: SqliteLedger, n: int, owner: str = "w") -> list[Job]:
    jobs = await ledger.claim_jobs(owner, n, 60)
    assert len(jobs) == n
    return jobs


class TestOneVersionOneEdit:
    """A second job for a version being edited waits for that edit and reuses it."""

    async def test_two_jobs_one_version_one_edit(self, parts, tmp_path):
        ledger, store, provider, pipeline, clock = parts
        etag = write(tmp_path / "data", "in/a.png", images.png())
        await ledger.create_jobs([
            job_for("in/a.png", etag, kind=JobKind.DROP, output="out/a.png"),
            job_for("in/a.png", etag, kind=JobKind.BATCH, output="trigger/a.png")])
        first, second = await claim(ledger, 2)
        provider.gate.clear()
        editing = asyncio.create_task(pipeline.run(first, "w"))
        await asyncio.wait_for(provider.started.wait(), 10)
        # Bounded: a second edit would wait at the gate.
        waiting = await asyncio.wait_for(pipeline.run(second, "w"), 10)
        assert waiting.state == "deferred" and first.id in (waiting.reason or "")
        queued = await ledger.get_job(second.id)
        assert queued is not None and queued.state is JobState.QUEUED
        assert queued.attempts == 0 and queued.run_after > clock()  # no attempt used
        provider.gate.set()
        assert (await editing).state == "completed"
        clock.advance(60)
        [again] = await claim(ledger, 1)
        assert again.id == second.id
        assert (await pipeline.run(again, "w")).state == "completed"
        assert provider.edits == 1
        done = await ledger.get_job(second.id)
        assert done is not None and done.result is not None
        assert done.result.reused_from == first.id
        # Copied to the second job's own output place.
        assert (await store.get("b", "trigger/a.png")).data == (
            await store.get("b", "out/a.png")).data

    async def test_after_the_holder_failed_the_waiter_edits(self, parts, tmp_path):
        ledger, _store, provider, pipeline, clock = parts
        etag = write(tmp_path / "data", "in/a.png", images.png())
        await ledger.create_jobs([
            job_for("in/a.png", etag, kind=JobKind.DROP, output="out/a.png"),
            job_for("in/a.png", etag, kind=JobKind.BATCH, output="trigger/a.png")])
        first, second = await claim(ledger, 2)
        assert await ledger.claim_version(first.version_key, first.id, 60) is None
        assert (await pipeline.run(second, "w")).state == "deferred"
        assert await ledger.fail_job(first.id, "w", "moderation_blocked", [])
        clock.advance(60)
        [again] = await claim(ledger, 1)
        assert (await pipeline.run(again, "w")).state == "completed"
        assert provider.edits == 1

    async def test_a_dead_holder_is_taken_over(self, parts, tmp_path):
        """The holder's process died: once its lease lapses, the waiting job edits."""
        ledger, _store, provider, pipeline, clock = parts
        etag = write(tmp_path / "data", "in/a.png", images.png())
        await ledger.create_jobs([
            job_for("in/a.png", etag, kind=JobKind.DROP, output="out/a.png"),
            job_for("in/a.png", etag, kind=JobKind.BATCH, output="trigger/a.png")])
        [dead] = await claim(ledger, 1, owner="dead")
        assert await ledger.claim_version(dead.version_key, dead.id, 60) is None
        [second] = await claim(ledger, 1)
        assert (await pipeline.run(second, "w")).state == "deferred"
        clock.advance(61)
        jobs = await claim(ledger, 2)  # both are due: the dead one's lease lapsed too
        outcomes = [await pipeline.run(job, "w") for job in jobs]
        assert [o.state for o in outcomes] == ["completed", "completed"]
        assert provider.edits == 1

    async def test_a_forced_replay_does_not_wait(self, parts, tmp_path):
        ledger, _store, provider, pipeline, _clock = parts
        etag = write(tmp_path / "data", "in/a.png", images.png())
        await ledger.create_jobs([job_for("in/a.png", etag, kind=JobKind.DROP,
                                          output="out/a.png")])
        [job] = await claim(ledger, 1)
        assert (await pipeline.run(job, "w")).state == "completed"
        await ledger.requeue_jobs(job_ids=[job.id], include_completed=True)
        [replayed] = await claim(ledger, 1)
        assert replayed.generation == 1
        assert await ledger.claim_version(replayed.version_key, "someone", 60) is None
        assert (await pipeline.run(replayed, "w")).state == "completed"
        assert provider.edits == 2


class TestOnlyItsOwnVersion:
    """A job reads the object version it was made for, never a newer one."""

    async def test_overwritten_before_the_edit(self, parts, tmp_path):
        ledger, store, provider, pipeline, _clock = parts
        old = write(tmp_path / "data", "in/a.png", images.png(40))
        new = write(tmp_path / "data", "in/a.png", images.png(41))
        assert old != new
        dropped = job_for("in/a.png", old, kind=JobKind.DROP, output="out/a.png")
        dropped.recipe = dropped.recipe.model_copy(update={"subscribers": SUBSCRIBERS})
        [(job, _)] = await ledger.create_jobs([dropped])
        [claimed] = await claim(ledger, 1)
        outcome = await pipeline.run(claimed, "w")
        assert outcome.state == "failed" and "newer version" in (outcome.reason or "")
        assert provider.edits == 0
        assert await store.head("b", "out/a.png") is None
        assert await ledger.list_deliveries(job_id=job.id) == []  # no image.failed for it
        failed = await ledger.get_job(job.id)
        assert failed is not None and failed.attempts == 1  # not retried: it cannot pass

    async def test_its_own_version_is_edited(self, parts, tmp_path):
        ledger, _store, provider, pipeline, _clock = parts
        etag = write(tmp_path / "data", "in/a.png", images.png(40))
        await ledger.create_jobs([job_for("in/a.png", etag, kind=JobKind.DROP,
                                          output="out/a.png")])
        [claimed] = await claim(ledger, 1)
        assert (await pipeline.run(claimed, "w")).state == "completed"
        assert provider.edits == 1

    async def test_a_listed_version_gone_says_so(self, parts, tmp_path):
        """A folder batch's job: the reason does not promise another job."""
        ledger, _store, provider, pipeline, _clock = parts
        old = write(tmp_path / "data", "in/a.png", images.png(40))
        write(tmp_path / "data", "in/a.png", images.png(41))
        await ledger.create_jobs([job_for("in/a.png", old, kind=JobKind.BATCH,
                                          output="out/a.png")])
        [claimed] = await claim(ledger, 1)
        outcome = await pipeline.run(claimed, "w")
        assert outcome.state == "failed" and "overwritten" in (outcome.reason or "")
        assert provider.edits == 0
