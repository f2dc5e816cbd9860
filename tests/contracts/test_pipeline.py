"""One job through the pipeline with real parts: SQLite ledger, local folder, local provider."""

from __future__ import annotations

import hashlib

import pytest

from imagedrop.config import ImagingSettings, WorkerSettings
from imagedrop.editor import Editor
from imagedrop.ledger import JobKind, JobState, NewJob
from imagedrop.ledger.sqlite import SqliteLedger
from imagedrop.pipeline import JOB_META, Pipeline
from imagedrop.providers.local import LocalProvider
from imagedrop.recipes import Recipe
from imagedrop.storage import OUTPUT_MARKER
from imagedrop.storage.local import LocalStore
from tests.contracts.ledger_backends import FakeClock
from tests.fixtures import images


class CountingProvider(LocalProvider):
    """The local provider, counting its edits."""

    def __init__(self) -> None:
        super().__init__()
        self.edits = 0

    async def edit(self, *args, **kwargs):
        self.edits += 1
        return await super().edit(*args, **kwargs)


@pytest.fixture(name="parts")
async def _parts(tmp_path):
    clock = FakeClock()
    ledger = SqliteLedger(tmp_path / "l.db", clock=clock)
    await ledger.open()
    store = LocalStore(tmp_path / "data", public_url="http://x", signing_key=b"k")
    await store.ensure_bucket("b")
    provider = CountingProvider()
    pipeline = Pipeline(ledger=ledger, storage=store, editor=Editor(provider, provider,
                                                                    billing_pause=0),
                        imaging_settings=ImagingSettings(), worker_settings=WorkerSettings(),
                        presign_expires=60, clock=clock)
    parts = (ledger, store, provider, pipeline, clock)
    yield parts
    await store.close()
    await ledger.close()


def drop(data_dir, key: str) -> None:
    """A file a user dropped: written straight into the folder, no imagedrop marker."""
    path = data_dir / "b" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(images.png())


# The version `drop` writes: the pipeline reads a job's source only at its own ETag.
ETAG = hashlib.md5(images.png()).hexdigest()


def _job(key: str, **kw) -> NewJob:
    values = dict(kind=JobKind.BATCH, filename=key, recipe=Recipe(prompt="p", model="m"),
                  source_bucket="b", source_key=key, source_etag=ETAG, output_bucket="b",
                  output_key=f"out/{key}")
    values.update(kw)
    return NewJob(**values)


class TestPipeline:
    """Outcomes recorded in the ledger, outputs marked, and no edit paid for twice."""

    async def test_edit_written_with_marker(self, parts, tmp_path):
        ledger, store, provider, pipeline, _ = parts
        drop(tmp_path / "data", "a.png")
        [(job, _)] = await ledger.create_jobs([_job("a.png")])
        [claimed] = await ledger.claim_jobs("w", 1, 60)
        outcome = await pipeline.run(claimed, "w")
        assert outcome.state == "completed" and provider.edits == 1
        info = await store.head("b", "out/a.png")
        assert info.metadata[OUTPUT_MARKER] and info.metadata[JOB_META] == job.id
        assert (await ledger.get_job(job.id)).state is JobState.COMPLETED

    async def test_output_of_an_earlier_attempt_is_reused(self, parts, tmp_path):
        """A crash after the write: the rerun records the result without editing again."""
        ledger, store, provider, pipeline, _clock = parts
        drop(tmp_path / "data", "a.png")
        [(job, _)] = await ledger.create_jobs([_job("a.png")])
        await store.put("b", "out/a.png", images.png(), content_type="image/png",
                        metadata={JOB_META: job.id})
        [claimed] = await ledger.claim_jobs("w", 1, 60)
        assert (await pipeline.run(claimed, "w")).state == "completed"
        assert provider.edits == 0
        assert (await ledger.get_job(job.id)).result.reused is True

    async def test_same_edit_found_without_the_ledger(self, parts, tmp_path):
        """A wiped ledger: the output of the same version and recipe is recognised, not paid
        for again; a different recipe edits anew."""
        ledger, store, provider, pipeline, _ = parts
        drop(tmp_path / "data", "a.png")
        await ledger.create_jobs([_job("a.png", version_key="v1")])
        [claimed] = await ledger.claim_jobs("w", 1, 60)
        assert (await pipeline.run(claimed, "w")).state == "completed"
        assert provider.edits == 1
        # A brand-new ledger over the same storage, as after a lost volume, and the sweep's job.
        fresh = SqliteLedger(tmp_path / "fresh.db")
        await fresh.open()
        try:
            again = Pipeline(ledger=fresh, storage=store, editor=pipeline.editor,
                             imaging_settings=ImagingSettings(),
                             worker_settings=WorkerSettings(), presign_expires=60)
            await fresh.create_jobs([_job("a.png", version_key="v1"),
                                     _job("a.png", version_key="v2", dedupe_key="recipe-2")])
            for claimed in await fresh.claim_jobs("w", 2, 60):
                assert (await again.run(claimed, "w")).state == "completed"
        finally:
            await fresh.close()
        assert provider.edits == 2  # v1 reused from storage; v2 is a new recipe: edited

    async def test_outputs_are_never_inputs(self, parts):
        ledger, store, provider, pipeline, _ = parts
        await store.put("b", "done.png", images.png(), content_type="image/png")  # marked
        await ledger.create_jobs([_job("done.png")])
        [claimed] = await ledger.claim_jobs("w", 1, 60)
        outcome = await pipeline.run(claimed, "w")
        assert outcome.state == "failed" and "written by imagedrop" in outcome.reason
        assert provider.edits == 0

    async def test_job_that_kills_its_worker_is_failed_not_looped(self, parts, tmp_path):
        """Claimed past max_attempts (the process died each time): failed with the reason."""
        ledger, _store, provider, pipeline, clock = parts
        drop(tmp_path / "data", "a.png")
        await ledger.create_jobs([_job("a.png", max_attempts=2)])
        for _ in range(3):  # three claims whose owners vanished
            assert await ledger.claim_jobs("dead", 1, 10)
            clock.advance(11)
        [claimed] = await ledger.claim_jobs("w", 1, 60)
        outcome = await pipeline.run(claimed, "w")
        assert outcome.state == "failed" and "never finished" in outcome.reason
        assert provider.edits == 0

    async def test_missing_source_fails_with_reason(self, parts):
        ledger, _, _, pipeline, _ = parts
        await ledger.create_jobs([_job("gone.png")])
        [claimed] = await ledger.claim_jobs("w", 1, 60)
        outcome = await pipeline.run(claimed, "w")
        assert outcome.state == "failed" and "gone.png" in outcome.reason
