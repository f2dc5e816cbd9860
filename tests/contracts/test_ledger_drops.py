"""The Ledger contract for dropped files, replays and disabled subscribers (every backend)."""

from __future__ import annotations

import asyncio
import json

import pytest

from imagedrop.ledger import (
    DeliveryState,
    DropItem,
    JobKind,
    JobState,
    Ledger,
    NewBatch,
    NewDelivery,
    NewJob,
)
from imagedrop.recipes import JobResult, Recipe
from tests.contracts.ledger_backends import FakeClock
from tests.contracts.test_ledger import attempt, running, summary

LEASE = 30.0


def drop(key: str, etag: str = "e1", folder: str = "food/", settle: float = 5.0,
         max_settle: float = 60.0) -> DropItem:
    job = NewJob(kind=JobKind.DROP, filename=key, recipe=Recipe(prompt="p"),
                 dedupe_key=f"drop:b:{folder}{key}:{etag}:r1", version_key=f"b/{key}:{etag}:r1",
                 source_bucket="b", source_key=f"{folder}{key}", source_etag=etag)
    batch = NewBatch(kind="drop", bucket="b", prefix=folder, output_bucket="b",
                     output_prefix="edited/", recipe=Recipe(prompt="p"), group_key=f"b/{folder}:r1")
    return DropItem(job=job, batch=batch, settle_seconds=settle, max_settle_seconds=max_settle)


async def finish_all(ledger: Ledger, owner: str = "w") -> list[str]:
    ids = []
    for job in await ledger.claim_jobs(owner, 100, LEASE):
        await ledger.complete_job(job.id, owner, JobResult(provider="local"), [])
        ids.append(job.id)
    return ids


class TestRecordDrops:
    """Drops are idempotent and collect into one settling batch per folder."""

    async def test_duplicates_are_harmless(self, ledger: Ledger):
        first = await ledger.record_drops([drop("a.jpg")])
        again = await ledger.record_drops([drop("a.jpg"), drop("a.jpg")])
        assert first[0][1] is True and [new for _, new in again] == [False, False]
        assert {job.id for job, _ in again} == {first[0][0].id}

    async def test_one_call_many_items(self, ledger: Ledger, clock: FakeClock):
        """One call, written set-wise: two folders, a known object, a repeat within the call;
        positions follow the caller's order within each folder's batch."""
        [(known, _)] = await ledger.record_drops([drop("k.jpg")])
        got = await ledger.record_drops([
            drop("b.jpg"), drop("x.jpg", folder="other/"), drop("k.jpg"), drop("a.jpg"),
            drop("b.jpg"), drop("y.jpg", folder="other/", settle=9.0)])
        assert [new for _, new in got] == [True, True, False, True, False, True]
        assert got[2][0].id == known.id and got[4][0].id == got[0][0].id
        food, other = got[0][0].batch_id, got[1][0].batch_id
        assert food == known.batch_id and other and other != food
        assert got[3][0].batch_id == food and got[5][0].batch_id == other
        assert (got[0][0].seq, got[3][0].seq) == (1, 2) and (got[1][0].seq, got[5][0].seq) == (0, 1)
        batch = await ledger.get_batch(other)
        assert batch.settle_until == pytest.approx(clock.now + 9)  # the longest wait asked

    async def test_concurrent_duplicates_make_one_job(self, ledger: Ledger):
        results = await asyncio.gather(*(ledger.record_drops([drop("a.jpg")]) for _ in range(30)))
        assert sum(new for [(_, new)] in results) == 1

    async def test_one_batch_per_settling_folder(self, ledger: Ledger, clock: FakeClock):
        [(a, _)] = await ledger.record_drops([drop("a.jpg")])
        clock.advance(3)
        [(b, _)] = await ledger.record_drops([drop("b.jpg")])
        [(c, _)] = await ledger.record_drops([drop("c.jpg", folder="other/")])
        assert a.batch_id and a.batch_id == b.batch_id != c.batch_id
        assert (a.seq, b.seq) == (0, 1)
        batch = await ledger.get_batch(a.batch_id)
        assert batch.settle_until == pytest.approx(clock.now + 5)  # pushed out by b
        assert batch.kind == "drop" and not batch.listing_done

    async def test_settled_batch_closes_and_a_new_one_opens(self, ledger: Ledger,
                                                            clock: FakeClock):
        [(a, _)] = await ledger.record_drops([drop("a.jpg")])
        assert await ledger.close_settled_batches() == []
        clock.advance(6)
        assert await ledger.close_settled_batches() == [a.batch_id]
        assert (await ledger.batch_progress(a.batch_id)).listing_done
        [(b, _)] = await ledger.record_drops([drop("b.jpg")])
        assert b.batch_id != a.batch_id

    async def test_settle_window_is_capped(self, ledger: Ledger, clock: FakeClock):
        [(a, _)] = await ledger.record_drops([drop("a.jpg", max_settle=8)])
        for name in ("b", "c", "d"):
            clock.advance(3)
            await ledger.record_drops([drop(f"{name}.jpg", max_settle=8)])
        batch = await ledger.get_batch(a.batch_id)
        assert batch.settle_until == pytest.approx(a.created_at + 8)

    async def test_no_batch_without_template(self, ledger: Ledger):
        item = drop("a.jpg")
        item.batch = None
        [(job, new)] = await ledger.record_drops([item])
        assert new and job.batch_id is None

    async def test_drop_batches_are_not_listed(self, ledger: Ledger):
        await ledger.record_drops([drop("a.jpg")])
        assert await ledger.claim_listing("lister", LEASE) is None

    async def test_finished_only_after_settling(self, ledger: Ledger, clock: FakeClock):
        [(a, _)] = await ledger.record_drops([drop("a.jpg")])
        await finish_all(ledger)
        assert not await ledger.finish_batch(a.batch_id, summary(), [])
        clock.advance(6)
        await ledger.close_settled_batches()
        assert await ledger.finish_batch(a.batch_id, summary(), [])


class TestVersionsWithJobs:
    """The sweep asks which object versions already have a job, whatever the recipe."""

    async def test_known_versions(self, ledger: Ledger):
        await ledger.record_drops([drop("a.jpg", etag="e1"), drop("b.jpg", etag="e2")])
        known = await ledger.versions_with_jobs("b", [("food/a.jpg", "e1"), ("food/a.jpg", "e9"),
                                                      ("food/b.jpg", "e2"), ("food/c.jpg", "e3")])
        assert known == {("food/a.jpg", "e1"), ("food/b.jpg", "e2")}
        assert await ledger.versions_with_jobs("other", [("food/a.jpg", "e1")]) == set()
        assert await ledger.versions_with_jobs("b", []) == set()


class TestCompletedVersion:
    """An identical earlier edit is found by version key."""

    async def test_found_only_when_completed(self, ledger: Ledger):
        [(job, _)] = await ledger.record_drops([drop("a.jpg")])
        assert await ledger.find_completed_version(job.version_key) is None
        await finish_all(ledger)
        found = await ledger.find_completed_version(job.version_key)
        assert found is not None and found.id == job.id and found.input_data is None
        assert await ledger.find_completed_version("other") is None


class TestRequeueJobs:
    """Replays: failed jobs again, completed ones only when forced."""

    async def test_failed_jobs_of_a_batch_and_reopened_summary(self, ledger: Ledger,
                                                              clock: FakeClock):
        [(a, _)] = await ledger.record_drops([drop("a.jpg")])
        [(b, _)] = await ledger.record_drops([drop("b.jpg")])
        claimed = {j.id: j for j in await ledger.claim_jobs("w", 10, LEASE)}
        await ledger.complete_job(a.id, "w", JobResult(), [])
        await ledger.fail_job(b.id, "w", "boom", [])
        clock.advance(6)
        await ledger.close_settled_batches()
        assert await ledger.finish_batch(a.batch_id, summary(status="completed_with_errors"), [])
        assert len(claimed) == 2

        page = await ledger.requeue_jobs(batch_id=a.batch_id)
        assert [j.id for j in page.items] == [b.id] and not page.more
        again = await ledger.get_job(b.id)
        assert again.state is JobState.QUEUED and again.attempts == 0 and again.error is None
        assert again.generation == 0
        batch = await ledger.get_batch(a.batch_id)
        assert batch.finished_at is None
        assert batch.extra["previous_summary"] == json.loads(
            summary(status="completed_with_errors").to_body())
        await finish_all(ledger)
        assert await ledger.finish_batch(a.batch_id, summary(status="completed"), [])

    async def test_completed_only_when_forced(self, ledger: Ledger):
        [(a, _)] = await ledger.record_drops([drop("a.jpg")])
        await finish_all(ledger)
        assert (await ledger.requeue_jobs(job_ids=[a.id])).items == []
        [forced] = (await ledger.requeue_jobs(job_ids=[a.id], include_completed=True)).items
        assert forced.state is JobState.QUEUED and forced.generation == 1

    async def test_by_prefix_is_literal(self, ledger: Ledger):
        await ledger.record_drops([drop("a.jpg", folder="f_1/"), drop("b.jpg", folder="f%1/")])
        for job in await ledger.claim_jobs("w", 10, LEASE):
            await ledger.fail_job(job.id, "w", "x", [])
        page = await ledger.requeue_jobs(bucket="b", prefix="f_1/")
        assert [j.source_key for j in page.items] == ["f_1/a.jpg"]

    async def test_in_pages(self, ledger: Ledger):
        await ledger.record_drops([drop(f"{i}.jpg") for i in range(7)])
        for job in await ledger.claim_jobs("w", 10, LEASE):
            await ledger.fail_job(job.id, "w", "x", [])
        pages = []
        while True:
            page = await ledger.requeue_jobs(bucket="b", prefix="", limit=3)
            pages.append(len(page.items))
            if not page.more:
                break
        assert pages == [3, 3, 1]
        assert len(await ledger.list_jobs(state=JobState.QUEUED)) == 7

    async def test_a_filter_is_required(self, ledger: Ledger):
        with pytest.raises(ValueError, match="filter"):
            await ledger.requeue_jobs()


class TestRequeueDeliveries:
    """Failed deliveries can be sent again, with a fresh schedule."""

    async def test_failed_delivery_pending_again(self, ledger: Ledger):
        job_id = await running(ledger)
        await ledger.complete_job(job_id, "w1", JobResult(), [NewDelivery(kind="webhook",
                                                                 url="http://h/x", body=b"{}")])
        [d] = await ledger.claim_deliveries("s", 1, LEASE)
        await ledger.record_attempt(d.id, "s", attempt(d.id, 1, 0.0, 410),
                                    state=DeliveryState.DISABLED)
        [again] = (await ledger.requeue_deliveries(job_id=job_id)).items
        assert again.state is DeliveryState.PENDING and again.attempts == 0
        assert len(await ledger.list_attempts(d.id)) == 1  # history kept
        assert (await ledger.requeue_deliveries(job_id=job_id)).items == []  # pending: untouched


class TestEndpoints:
    """A subscriber that answered 410 stays disabled until enabled."""

    async def test_disable_enable(self, ledger: Ledger):
        await ledger.disable_endpoint("http://h/a", "410 Gone")
        await ledger.disable_endpoint("http://h/a", "again")  # idempotent
        assert await ledger.disabled_endpoints(["http://h/a", "http://h/b"]) == {
            "http://h/a": "410 Gone"}
        assert await ledger.enable_endpoint("http://h/a")
        assert not await ledger.enable_endpoint("http://h/a")
        assert await ledger.disabled_endpoints(["http://h/a"]) == {}


class TestFinishableBatches:
    """A batch whose closer died after the last outcome is found and closed later."""

    async def test_found_until_finished(self, ledger: Ledger, clock: FakeClock):
        [(a, _)] = await ledger.record_drops([drop("a.jpg")])
        assert await ledger.finishable_batches() == []  # still settling
        clock.advance(6)
        await ledger.close_settled_batches()
        assert await ledger.finishable_batches() == []  # a job still queued
        await finish_all(ledger)
        assert await ledger.finishable_batches() == [a.batch_id]
        assert await ledger.finish_batch(a.batch_id, summary(), [])
        assert await ledger.finishable_batches() == []


class TestInlineImage:
    """The inline image is kept until the job completes, and left out of status reads."""

    async def test_dropped_on_completion(self, ledger: Ledger):
        [(job, _)] = await ledger.create_jobs([NewJob(kind=JobKind.B64, filename="a.png",
                                                      recipe=Recipe(), input_data=b"img")])
        assert (await ledger.get_job(job.id)).input_data == b"img"
        assert (await ledger.get_job(job.id, with_input=False)).input_data is None
        [claimed] = await ledger.claim_jobs("w", 1, LEASE)
        assert claimed.input_data == b"img"
        await ledger.complete_job(job.id, "w", JobResult(), [])
        assert (await ledger.get_job(job.id)).input_data is None

    async def test_kept_on_failure_for_replay(self, ledger: Ledger):
        [(job, _)] = await ledger.create_jobs([NewJob(kind=JobKind.B64, filename="a.png",
                                                      recipe=Recipe(), input_data=b"img")])
        await ledger.claim_jobs("w", 1, LEASE)
        await ledger.fail_job(job.id, "w", "boom", [])
        assert (await ledger.get_job(job.id)).input_data == b"img"
