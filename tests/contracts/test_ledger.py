"""The Ledger contract: every test runs against every backend in `ledger_backends.BACKENDS`."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from imagedrop.errors import ConfigError, NotFound, PermanentError
from imagedrop.ledger import (
    DeliveryAttempt,
    DeliveryState,
    JobKind,
    JobState,
    Ledger,
    NewBatch,
    NewDelivery,
    NewJob,
    open_ledger,
)
from imagedrop.ledger.schema import SQLITE_MIGRATIONS as MIGRATIONS
from imagedrop.ledger.schema import split_statements
from imagedrop.ledger.sqlite import SqliteLedger
from imagedrop.payloads import BatchSummary
from imagedrop.recipes import JobResult, Recipe
from tests.contracts.ledger_backends import (
    FakeClock,
    LedgerBackend,
    PostgresBackend,
    SqliteBackend,
    postgres_admin,
)

LEASE = 30.0


def new_job(name: str = "a.png", **kw: object) -> NewJob:
    return NewJob(kind=JobKind.B64, filename=name, recipe=Recipe(prompt="sepia"), **kw)  # type: ignore[arg-type]


async def _raw_sql(backend: LedgerBackend, statement: str) -> None:
    """Run `statement` on the backend's database behind the ledger's back."""
    if isinstance(backend, SqliteBackend):
        with sqlite3.connect(backend.path) as db:
            db.execute(statement)
        return
    assert isinstance(backend, PostgresBackend)
    admin = await postgres_admin()
    try:
        await admin.execute(f'SET search_path = "{backend.schema}"')
        await admin.execute(statement)
    finally:
        await admin.close()


def new_batch(**kw: object) -> NewBatch:
    return NewBatch(kind="trigger", bucket="in", prefix="food/", output_bucket="out",  # type: ignore[arg-type]
                    output_prefix="edited/", recipe=Recipe(prompt="sepia"), **kw)


def summary(**kw: object) -> BatchSummary:
    """A batch summary to close a batch with (its counts don't matter to the ledger)."""
    values: dict[str, object] = {"job_id": "b", "total_files": 0, "processed": 0, "failed": 0,
                                 "fallback_local": 0, "duration_seconds": 0.0,
                                 "output_bucket": "o", "output_prefix": "p/"}
    return BatchSummary.model_validate(values | kw)


def new_delivery(**kw: object) -> NewDelivery:
    return NewDelivery(kind="webhook", url="http://hooks.test/x", body=b'{"a":1}', **kw)  # type: ignore[arg-type]


def attempt(delivery_id: str, n: int, at: float, status: int | None = 500) -> DeliveryAttempt:
    return DeliveryAttempt(delivery_id=delivery_id, attempt=n, at=at, status=status,
                           error=None if status == 200 else f"HTTP {status}", duration_ms=12.5)


async def running(ledger: Ledger, owner: str = "w1", **kw: object) -> str:
    """Create one job and claim it; returns its id."""
    [(job, _)] = await ledger.create_jobs([new_job(**kw)])
    [claimed] = await ledger.claim_jobs(owner, 1, LEASE)
    assert claimed.id == job.id
    return job.id


class TestCreateJobs:
    """Recording jobs, idempotently by dedupe_key."""

    async def test_records_a_job_with_a_generated_id(self, ledger: Ledger, clock: FakeClock):
        [(job, created)] = await ledger.create_jobs([new_job(input_data=b"\x89PNG", seq=4)])
        assert created and len(job.id) == 36
        assert (job.state, job.attempts, job.created_at) == (JobState.QUEUED, 0, clock.now)
        assert await ledger.get_job(job.id) == job
        assert await ledger.get_job("nope") is None

    async def test_dedupe_key_returns_the_recorded_job(self, ledger: Ledger):
        [(first, _)] = await ledger.create_jobs([new_job(dedupe_key="k")])
        [(again, created)] = await ledger.create_jobs([new_job("other.png", dedupe_key="k")])
        assert not created and again == first

    async def test_duplicates_within_one_call(self, ledger: Ledger):
        out = await ledger.create_jobs([new_job(dedupe_key="k"), new_job(dedupe_key="k"),
                                        new_job(), new_job()])
        assert [created for _, created in out] == [True, False, True, True]
        assert out[0][0].id == out[1][0].id
        assert len(await ledger.list_jobs()) == 3

    async def test_concurrent_creates_record_once(self, ledger: Ledger, second: Ledger):
        calls = [(ledger if i % 2 else second).create_jobs([new_job(dedupe_key="k")])
                 for i in range(50)]
        results = [pair for out in await asyncio.gather(*calls) for pair in out]
        assert sum(created for _, created in results) == 1
        assert len({job.id for job, _ in results}) == 1

    async def test_a_refused_call_leaves_concurrent_ones_intact(self, ledger: Ledger):
        calls = [ledger.create_jobs([new_job(f"{i}.png", batch_id="no-such-batch" if i == 3
                                             else None)]) for i in range(8)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert isinstance(results[3], PermanentError)
        assert sum(isinstance(r, list) for r in results) == 7
        assert len(await ledger.list_jobs()) == 7


class TestClaimJobs:
    """Leasing due jobs: limits, expiry, run_after and fairness."""

    async def test_claims_up_to_limit_with_a_lease(self, ledger: Ledger, clock: FakeClock):
        await ledger.create_jobs([new_job(input_data=b"img") for _ in range(5)])
        first = await ledger.claim_jobs("w1", 3, LEASE)
        assert len(first) == 3
        for job in first:
            assert (job.state, job.lease_owner, job.attempts) == (JobState.RUNNING, "w1", 1)
            assert job.lease_expires == clock.now + LEASE and job.started_at == clock.now
            assert job.input_data == b"img"
        assert len(await ledger.claim_jobs("w2", 3, LEASE)) == 2
        assert await ledger.claim_jobs("w2", 3, LEASE) == []

    async def test_an_upload_kept_as_base64_comes_back_as_it_was_sent(self, ledger: Ledger):
        # Canonical base64 is stored as it came and decoded when the job runs; bytes stay
        # bytes. Both forms come back the same from a claim and from a read.
        await ledger.create_jobs([new_job(id="b64", input_data=b"iVBORw0KGgo=",
                                          input_base64=True),
                                  new_job(id="raw", input_data=b"\x89PNG")])
        claimed = {job.id: job for job in await ledger.claim_jobs("w1", 5, LEASE)}
        assert (claimed["b64"].input_data, claimed["b64"].input_base64) == (b"iVBORw0KGgo=",
                                                                            True)
        assert (claimed["raw"].input_data, claimed["raw"].input_base64) == (b"\x89PNG", False)
        read = await ledger.get_job("b64")
        assert read is not None and (read.input_data, read.input_base64) == (b"iVBORw0KGgo=",
                                                                             True)
        status = await ledger.get_job("b64", with_input=False)
        assert status is not None and status.input_data is None

    async def test_a_claim_that_fails_part_way_claims_nothing(
        self, backend: LedgerBackend, ledger: Ledger
    ):
        # A claim is two statements (lease the jobs, read their images): if the second fails
        # (here: its table is gone for a moment), the first must not stand, or the jobs stay
        # leased to a live owner that never heard of them, unclaimable while it lives.
        await ledger.register_owner("w1")
        await ledger.create_jobs([new_job(id="up", input_data=b"img")])
        await _raw_sql(backend, "ALTER TABLE job_inputs RENAME TO job_inputs_away")
        with pytest.raises(Exception, match="job_inputs"):
            await ledger.claim_jobs("w1", 5, LEASE)
        await _raw_sql(backend, "ALTER TABLE job_inputs_away RENAME TO job_inputs")
        job = await ledger.get_job("up", with_input=False)
        assert job is not None and (job.state, job.lease_owner, job.attempts) == (
            JobState.QUEUED, None, 0)
        [claimed] = await ledger.claim_jobs("w1", 5, LEASE)
        assert (claimed.id, claimed.input_data, claimed.attempts) == ("up", b"img", 1)

    async def test_expired_lease_is_claimed_again(self, ledger: Ledger, clock: FakeClock):
        job_id = await running(ledger, "w1")
        started = clock.now
        clock.advance(LEASE)  # expires strictly after lease_expires
        assert await ledger.claim_jobs("w2", 5, LEASE) == []
        clock.advance(1)
        [again] = await ledger.claim_jobs("w2", 5, LEASE)
        assert (again.id, again.lease_owner, again.attempts) == (job_id, "w2", 2)
        assert again.started_at == started  # the first start is kept
        assert not await ledger.complete_job(job_id, "w1", JobResult(), [])

    async def test_run_after_is_respected(self, ledger: Ledger, clock: FakeClock):
        await ledger.create_jobs([new_job(run_after=clock.now + 10)])
        assert await ledger.claim_jobs("w1", 5, LEASE) == []
        clock.advance(10)
        assert len(await ledger.claim_jobs("w1", 5, LEASE)) == 1

    async def test_single_jobs_before_a_large_batch(self, ledger: Ledger):
        batch = await ledger.create_batch(new_batch(listing_done=True))
        await ledger.create_jobs([new_job(f"{i}.png", batch_id=batch.id, seq=i)
                                  for i in range(100)])
        singles = await ledger.create_jobs([new_job(f"s{i}.png") for i in range(3)])
        claimed = await ledger.claim_jobs("w1", 3, LEASE)
        assert {j.id for j in claimed} == {j.id for j, _ in singles}

    async def test_batches_take_turns(self, ledger: Ledger):
        a = await ledger.create_batch(new_batch(listing_done=True))
        b = await ledger.create_batch(new_batch(listing_done=True))
        for batch in (a, b):
            await ledger.create_jobs([new_job(f"{i}.png", batch_id=batch.id, seq=i)
                                      for i in range(5)])
        claimed = await ledger.claim_jobs("w1", 4, LEASE)
        assert [(j.batch_id, j.seq) for j in claimed] == [(a.id, 0), (b.id, 0), (a.id, 1),
                                                          (b.id, 1)]


class TestFinishingJobs:
    """complete/fail/retry/renew act only for the lease owner."""

    async def test_others_cannot_finish_a_job(self, ledger: Ledger):
        job_id = await running(ledger, "w1")
        before = await ledger.get_job(job_id)
        assert not await ledger.complete_job(job_id, "w2", JobResult(model="m1"), [new_delivery()])
        assert not await ledger.fail_job(job_id, "w2", "no", [new_delivery()])
        assert not await ledger.retry_job(job_id, "w2", "later", 0.0)
        await ledger.renew_leases("w2", [job_id], 999)
        assert await ledger.get_job(job_id) == before
        assert await ledger.list_deliveries(job_id=job_id) == []

    async def test_renew_extends_the_lease(self, ledger: Ledger, clock: FakeClock):
        job_id = await running(ledger, "w1")
        clock.advance(20)
        await ledger.renew_leases("w1", [job_id], LEASE)
        clock.advance(20)
        assert await ledger.claim_jobs("w2", 1, LEASE) == []
        assert (await ledger.get_job(job_id)).lease_expires == clock.now - 20 + LEASE

    async def test_complete_records_result_and_deliveries(self, ledger: Ledger, clock: FakeClock):
        job_id = await running(ledger, "w1")
        ok = await ledger.complete_job(job_id, "w1", JobResult(key="out/a.png"),
                                       [new_delivery(next_attempt_at=clock.now + 1)])
        job = await ledger.get_job(job_id)
        assert ok and job.state is JobState.COMPLETED and job.result == JobResult(key="out/a.png")
        assert (job.finished_at, job.lease_owner, job.lease_expires) == (clock.now, None, None)
        [delivery] = await ledger.list_deliveries(job_id=job_id)
        assert (delivery.state, delivery.attempts, delivery.body) == (DeliveryState.PENDING, 0,
                                                                      b'{"a":1}')
        assert delivery.next_attempt_at == clock.now + 1 and len(delivery.id) == 36
        assert not await ledger.complete_job(job_id, "w1", JobResult(), [])  # already final

    async def test_fail_records_the_reason(self, ledger: Ledger):
        job_id = await running(ledger, "w1")
        assert await ledger.fail_job(job_id, "w1", "moderation_blocked", [new_delivery(id="d1")])
        job = await ledger.get_job(job_id)
        assert (job.state, job.error) == (JobState.FAILED, "moderation_blocked")
        assert (await ledger.get_delivery("d1")).job_id == job_id

    async def test_retry_requeues_at_run_after(self, ledger: Ledger, clock: FakeClock):
        job_id = await running(ledger, "w1")
        assert await ledger.retry_job(job_id, "w1", "429", clock.now + 5)
        job = await ledger.get_job(job_id)
        assert (job.state, job.last_error, job.lease_owner) == (JobState.QUEUED, "429", None)
        assert await ledger.claim_jobs("w2", 1, LEASE) == []
        clock.advance(5)
        [again] = await ledger.claim_jobs("w2", 1, LEASE)
        assert again.attempts == 2

    async def test_release_gives_back_owned_jobs(self, ledger: Ledger):
        mine = await running(ledger, "w1")
        theirs = await running(ledger, "w2")
        assert await ledger.release_jobs("w1") == 1
        job = await ledger.get_job(mine)
        # The abandoned claim does not count against max_attempts.
        assert (job.state, job.attempts, job.lease_owner) == (JobState.QUEUED, 0, None)
        assert (await ledger.get_job(theirs)).state is JobState.RUNNING
        [again] = await ledger.claim_jobs("w3", 5, LEASE)
        assert again.id == mine and again.attempts == 1


class TestListJobs:
    """Listing filters by batch and state, oldest first, without image data."""

    async def test_filters_and_order(self, ledger: Ledger, clock: FakeClock):
        batch = await ledger.create_batch(new_batch(listing_done=True))
        ids = []
        for i in range(3):
            clock.advance(1)
            [(job, _)] = await ledger.create_jobs([new_job(f"{i}.png", batch_id=batch.id,
                                                           input_data=b"x", seq=i)])
            ids.append(job.id)
        await ledger.create_jobs([new_job("single.png")])
        await ledger.claim_jobs("w1", 1, LEASE)  # the single job goes first
        listed = await ledger.list_jobs(batch_id=batch.id)
        assert [j.id for j in listed] == ids and all(j.input_data is None for j in listed)
        queued = await ledger.list_jobs(batch_id=batch.id, state=JobState.QUEUED, limit=2)
        assert [j.id for j in queued] == ids[:2]
        assert [j.filename for j in await ledger.list_jobs(state=JobState.RUNNING)] == [
            "single.png"]


class TestListing:
    """Claiming a batch's listing, advancing its cursor, resuming after a lister dies."""

    async def test_batch_round_trip(self, ledger: Ledger, clock: FakeClock):
        batch = await ledger.create_batch(new_batch(callback_url="http://cb.test/",
                                                    extra={"job_folder": "j1"}))
        assert await ledger.get_batch(batch.id) == batch
        assert (batch.listing_cursor, batch.listing_done, batch.created_at) == ("", False,
                                                                                clock.now)
        assert batch.extra == {"job_folder": "j1"} and batch.finished_at is None
        assert await ledger.get_batch("nope") is None

    async def test_a_batch_with_a_group_key_is_only_made_by_drops(self, ledger: Ledger):
        """A group key marks a settling drop batch (never listed, closed when it settles): one
        made directly would be neither listed nor closed, so it is refused."""
        with pytest.raises(ValueError, match="record_drops"):
            await ledger.create_batch(new_batch(group_key="in/food/"))
        assert await ledger.claim_listing("l1", LEASE) is None

    async def test_cursor_resumes_after_lease_expiry(self, ledger: Ledger, clock: FakeClock):
        batch = await ledger.create_batch(new_batch())
        claimed = await ledger.claim_listing("l1", LEASE)
        assert claimed.id == batch.id and claimed.lease_owner == "l1"
        assert await ledger.claim_listing("l2", LEASE) is None
        page = [new_job(f"{i}.png", seq=i, dedupe_key=f"k{i}") for i in range(3)]
        assert await ledger.add_batch_jobs(batch.id, "l1", page, "food/2.png", False) == 3
        clock.advance(20)  # the page renewed the lease: still held
        assert await ledger.claim_listing("l2", LEASE) is None
        clock.advance(LEASE)
        resumed = await ledger.claim_listing("l2", LEASE)
        assert (resumed.id, resumed.listing_cursor) == (batch.id, "food/2.png")
        # The old lister lost the listing: its late page adds nothing and moves nothing.
        late = [new_job("9.png", seq=9, dedupe_key="k9")]
        assert await ledger.add_batch_jobs(batch.id, "l1", late, "food/9.png", True) == 0
        again = await ledger.get_batch(batch.id)
        assert (again.listing_cursor, again.listing_done) == ("food/2.png", False)
        # The new lister re-lists page one (duplicates are harmless) and finishes.
        assert await ledger.add_batch_jobs(batch.id, "l2", page, "food/2.png", False) == 0
        assert await ledger.add_batch_jobs(batch.id, "l2", late, "food/9.png", True) == 1
        done = await ledger.get_batch(batch.id)
        assert done.listing_done and done.lease_owner is None
        assert await ledger.claim_listing("l3", LEASE) is None
        jobs = await ledger.list_jobs(batch_id=batch.id)
        assert len(jobs) == 4 and all(j.batch_id == batch.id for j in jobs)


class TestFinishBatch:
    """A batch closes once, only after its listing and every job are done."""

    async def listed(self, ledger: Ledger, n: int, *, done: bool = True) -> str:
        batch = await ledger.create_batch(new_batch())
        await ledger.claim_listing("l1", LEASE)
        jobs = [new_job(f"{i}.png", seq=i) for i in range(n)]
        await ledger.add_batch_jobs(batch.id, "l1", jobs, "c", done)
        return batch.id

    async def test_progress_counts(self, ledger: Ledger):
        batch_id = await self.listed(ledger, 4)
        a, b, c = await ledger.claim_jobs("w1", 3, LEASE)
        await ledger.complete_job(a.id, "w1", JobResult(fallback_local=True), [])
        await ledger.complete_job(b.id, "w1", JobResult(fallback_local=False), [])
        await ledger.fail_job(c.id, "w1", "bad", [])
        progress = await ledger.batch_progress(batch_id)
        assert (progress.total, progress.queued, progress.running, progress.completed,
                progress.failed, progress.fallback_local) == (4, 1, 0, 2, 1, 1)
        assert progress.listing_done and not progress.finished and not progress.all_final
        with pytest.raises(NotFound):
            await ledger.batch_progress("nope")

    async def test_not_before_listing_done(self, ledger: Ledger):
        batch_id = await self.listed(ledger, 0, done=False)
        assert not await ledger.finish_batch(batch_id, summary(status="completed"), [])

    async def test_not_while_jobs_run(self, ledger: Ledger):
        batch_id = await self.listed(ledger, 1)
        [job] = await ledger.claim_jobs("w1", 1, LEASE)
        assert not await ledger.finish_batch(batch_id, summary(), [])
        await ledger.complete_job(job.id, "w1", JobResult(), [])
        assert await ledger.finish_batch(batch_id, summary(status="completed"), [])
        batch = await ledger.get_batch(batch_id)
        assert batch.summary == summary(status="completed") and batch.finished_at is not None

    async def test_once_under_concurrency(self, ledger: Ledger, second: Ledger):
        batch_id = await self.listed(ledger, 0)
        calls = [(ledger if i % 2 else second).finish_batch(batch_id, summary(error=f"n{i}"),
                                                            [new_delivery()])
                 for i in range(10)]
        assert sum(await asyncio.gather(*calls)) == 1
        [delivery] = await ledger.list_deliveries(batch_id=batch_id)
        assert delivery.batch_id == batch_id
        assert (await ledger.batch_progress(batch_id)).finished


class TestDeliveries:
    """Claiming deliveries and recording every attempt until a final state."""

    async def pending(self, ledger: Ledger, *at: float) -> list[str]:
        job_id = await running(ledger)
        await ledger.complete_job(job_id, "w1", JobResult(),
                                  [new_delivery(next_attempt_at=t) for t in at])
        return [d.id for d in await ledger.list_deliveries(job_id=job_id)]

    async def test_claims_due_ones_in_order(self, ledger: Ledger, clock: FakeClock):
        late, soon, future = await self.pending(ledger, clock.now, clock.now - 5, clock.now + 40)
        claimed = await ledger.claim_deliveries("s1", 5, LEASE)
        assert [d.id for d in claimed] == [soon, late]
        assert claimed[0].lease_owner == "s1" and claimed[0].lease_expires == clock.now + LEASE
        assert await ledger.claim_deliveries("s2", 5, LEASE) == []
        clock.advance(LEASE + 1)  # the first sender died: its claims lapse
        assert [d.id for d in await ledger.claim_deliveries("s2", 1, LEASE)] == [soon]
        clock.advance(10)  # `future` is due; s2 still holds `soon`
        assert {d.id for d in await ledger.claim_deliveries("s3", 5, LEASE)} == {late, future}

    async def test_retries_then_delivers(self, ledger: Ledger, clock: FakeClock):
        [delivery_id] = await self.pending(ledger, clock.now)
        await ledger.claim_deliveries("s1", 1, LEASE)
        await ledger.record_attempt(delivery_id, "s1", attempt(delivery_id, 1, clock.now),
                                    state=DeliveryState.PENDING, next_attempt_at=clock.now + 5)
        d = await ledger.get_delivery(delivery_id)
        assert (d.state, d.attempts, d.last_status, d.last_error) == (
            DeliveryState.PENDING, 1, 500, "HTTP 500")
        assert (d.next_attempt_at, d.lease_owner, d.finished_at) == (clock.now + 5, None, None)
        assert await ledger.claim_deliveries("s1", 1, LEASE) == []
        clock.advance(5)
        assert len(await ledger.claim_deliveries("s1", 1, LEASE)) == 1
        await ledger.record_attempt(delivery_id, "s1", attempt(delivery_id, 2, clock.now, 200),
                                    state=DeliveryState.DELIVERED)
        d = await ledger.get_delivery(delivery_id)
        assert (d.state, d.attempts, d.last_status, d.finished_at) == (
            DeliveryState.DELIVERED, 2, 200, clock.now)
        clock.advance(1000)
        assert await ledger.claim_deliveries("s1", 1, LEASE) == []
        history = await ledger.list_attempts(delivery_id)
        assert [(a.attempt, a.status) for a in history] == [(1, 500), (2, 200)]
        assert history[0] == attempt(delivery_id, 1, clock.now - 1005)

    @pytest.mark.parametrize("final", [DeliveryState.FAILED, DeliveryState.DISABLED])
    async def test_final_states(self, ledger: Ledger, clock: FakeClock, final: DeliveryState):
        [delivery_id] = await self.pending(ledger, clock.now)
        await ledger.claim_deliveries("s1", 1, LEASE)
        await ledger.record_attempt(delivery_id, "s1", attempt(delivery_id, 1, clock.now, 410),
                                    state=final)
        d = await ledger.get_delivery(delivery_id)
        assert (d.state, d.finished_at, d.lease_owner) == (final, clock.now, None)
        assert await ledger.claim_deliveries("s1", 1, LEASE) == []

    async def test_stale_sender_only_adds_history(self, ledger: Ledger, clock: FakeClock):
        [delivery_id] = await self.pending(ledger, clock.now)
        await ledger.claim_deliveries("s1", 1, LEASE)
        clock.advance(LEASE + 1)
        await ledger.claim_deliveries("s2", 1, LEASE)
        await ledger.record_attempt(delivery_id, "s2", attempt(delivery_id, 1, clock.now, 200),
                                    state=DeliveryState.DELIVERED)
        await ledger.record_attempt(delivery_id, "s1", attempt(delivery_id, 1, clock.now, 500),
                                    state=DeliveryState.PENDING, next_attempt_at=clock.now)
        assert (await ledger.get_delivery(delivery_id)).state is DeliveryState.DELIVERED
        assert len(await ledger.list_attempts(delivery_id)) == 2


class TestDurability:
    """What was acknowledged survives closing and reopening."""

    async def test_reopen_sees_everything(self, backend: LedgerBackend, clock: FakeClock):
        first = backend.make()
        await first.open()
        batch = await first.create_batch(new_batch(listing_done=True))
        [(job, _)] = await first.create_jobs([new_job(batch_id=batch.id, input_data=b"img")])
        await first.claim_jobs("w1", 1, LEASE)
        await first.complete_job(job.id, "w1", JobResult(model="m1"), [new_delivery(id="d1")])
        await first.claim_deliveries("s1", 1, LEASE)
        await first.record_attempt("d1", "s1", attempt("d1", 1, clock.now),
                                   state=DeliveryState.PENDING, next_attempt_at=clock.now + 5)
        await first.close()
        reopened = backend.make()
        await reopened.open()
        try:
            stored = await reopened.get_job(job.id)
            # (the inline image is dropped on completion; see test_ledger_drops)
            assert (stored.state, stored.result) == (JobState.COMPLETED, JobResult(model="m1"))
            assert await reopened.get_batch(batch.id) == batch
            assert (await reopened.get_delivery("d1")).attempts == 1
            assert len(await reopened.list_attempts("d1")) == 1
        finally:
            await reopened.close()


class TestModes:
    """How a body runs: a "single" one is one statement, on every database."""

    async def test_a_single_body_is_refused_a_second_statement(self, ledger: Ledger):
        from imagedrop.ledger.sql import run

        def two(d: object, now: float):  # type: ignore[no-untyped-def]
            yield run("UPDATE jobs SET seq = seq + 1")
            yield run("UPDATE jobs SET seq = seq + 1")

        await ledger.create_jobs([new_job()])
        with pytest.raises(RuntimeError, match="second"):
            await ledger._run("single", two)
        await ledger._run("write", two)
        [job] = await ledger.list_jobs()
        assert job.seq in (2, 3)  # 3 where the refused body's first statement stood alone


class TestWaitForWork:
    """The wake-up hint: early on new work of the kind waited for, otherwise at the timeout."""

    async def test_wakes_every_waiter_on_create(self, ledger: Ledger):
        waiters = [ledger.wait_for_work(600, "jobs") for _ in range(2)]
        await asyncio.sleep(0)  # parked before the work appears
        await ledger.create_jobs([new_job()])
        await asyncio.wait_for(asyncio.gather(*waiters), timeout=10)

    async def test_wakes_on_a_retry_scheduled_delivery(self, ledger: Ledger, clock: FakeClock):
        [delivery_id] = await TestDeliveries().pending(ledger, clock.now)
        await ledger.claim_deliveries("s1", 1, LEASE)
        waiter = ledger.wait_for_work(600, "deliveries")
        await asyncio.sleep(0)
        await ledger.record_attempt(delivery_id, "s1", attempt(delivery_id, 1, clock.now),
                                    state=DeliveryState.PENDING, next_attempt_at=clock.now)
        await asyncio.wait_for(waiter, timeout=10)

    async def test_wakes_only_the_kind_of_work_made(self, ledger: Ledger, clock: FakeClock):
        # A new job is no news to the callback sender or the lister: each woken for nothing
        # would query the ledger for nothing, on every replica, for every notification.
        others = {kind: ledger.wait_for_work(600, kind)
                  for kind in ("deliveries", "listings")}
        jobs = ledger.wait_for_work(600, "jobs")
        await asyncio.sleep(0)
        await ledger.create_jobs([new_job()])
        await asyncio.wait_for(jobs, timeout=10)
        await ledger.create_batch(new_batch())  # a folder to list: the lister's
        await asyncio.wait_for(others["listings"], timeout=10)
        [job] = await ledger.claim_jobs("w1", 1, LEASE)
        await asyncio.sleep(0.05)
        assert not others["deliveries"].done()
        await ledger.complete_job(job.id, "w1", JobResult(), [new_delivery()])
        await asyncio.wait_for(others["deliveries"], timeout=10)

    async def test_times_out_without_work(self, ledger: Ledger):
        await asyncio.wait_for(ledger.wait_for_work(0.01, "jobs"), timeout=10)


class TestSqliteSpecifics:
    """SqliteLedger's URL forms, pragmas and migrations (not part of the contract)."""

    @pytest.mark.parametrize("url", ["sqlite://:memory:", "sqlite:///:memory:"])
    async def test_memory_urls(self, url: str):
        ledger = open_ledger(url)
        assert isinstance(ledger, SqliteLedger) and isinstance(ledger, Ledger)
        await ledger.open()
        try:
            assert ledger.path == ":memory:"
            [(job, created)] = await ledger.create_jobs([new_job()])
            assert created and await ledger.get_job(job.id) == job
        finally:
            await ledger.close()

    async def test_relative_and_absolute_paths(self, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch):
        monkeypatch.chdir(tmp_path)
        relative = SqliteLedger.from_url("sqlite:///data/sub/ledger.db?synchronous=normal")
        assert (relative.path, relative.synchronous) == ("data/sub/ledger.db", "normal")
        absolute = SqliteLedger.from_url(f"sqlite:///{tmp_path}/abs/ledger.db")
        assert absolute.path == f"{tmp_path}/abs/ledger.db" and absolute.synchronous == "full"
        for ledger in (relative, absolute):
            await ledger.open()
            await ledger.close()
        assert (tmp_path / "data/sub/ledger.db").is_file()
        assert (tmp_path / "abs/ledger.db").is_file()

    @pytest.mark.parametrize("url", ["sqlite:", "sqlite:///", "sqlite:x.db",
                                     "sqlite:///x.db?synchronous=sometimes",
                                     "sqlite:///x.db?password=hunter2"])
    def test_bad_urls(self, url: str):
        with pytest.raises(ConfigError) as caught:
            SqliteLedger.from_url(url)
        assert "hunter2" not in str(caught.value)

    async def test_durable_pragmas_and_migrations_once(self, tmp_path: Path):
        path = tmp_path / "ledger.db"
        for _ in range(2):  # the second open finds the schema current
            ledger = SqliteLedger(path)
            await ledger.open()
            await ledger.close()
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            assert conn.execute("SELECT version FROM schema_version").fetchall() == [
                (v,) for v in range(1, len(MIGRATIONS) + 1)]  # each applied once, in order
        conn.close()

    async def test_refuses_a_newer_schema(self, tmp_path: Path):
        path = tmp_path / "ledger.db"
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY,"
                         " applied_at REAL NOT NULL)")
            conn.execute("INSERT INTO schema_version VALUES (999, 0)")
        conn.close()
        ledger = SqliteLedger(path)
        with pytest.raises(ConfigError, match="newer"):
            await ledger.open()
        await ledger.close()

    def test_split_statements(self):
        script = "CREATE TABLE a (\n  x TEXT DEFAULT ';'\n); -- c\nCREATE INDEX i ON a (x);\n"
        assert split_statements(script) == ["CREATE TABLE a (\n  x TEXT DEFAULT ';'\n); -- c",
                                            "CREATE INDEX i ON a (x);"]
        with pytest.raises(ValueError):
            split_statements("CREATE TABLE b (x")


class TestSqliteUpgrade:
    """A ledger written by an earlier schema opens and keeps its data."""

    async def test_version_1_file_upgrades(self, tmp_path: Path):
        path = tmp_path / "old.db"
        with sqlite3.connect(path, isolation_level=None) as conn:
            conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY,"
                         " applied_at REAL NOT NULL)")
            for statement in split_statements(MIGRATIONS[0]):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version VALUES (1, 0)")
            conn.execute("INSERT INTO jobs (id, kind, state, filename, recipe, max_attempts,"
                         " created_at) VALUES ('old', 'b64', 'queued', 'a.png', '{}', 5, 1)")
        conn.close()
        ledger = SqliteLedger(path)
        await ledger.open()
        try:
            job = await ledger.get_job("old")
            assert job is not None and job.version_key is None and job.generation == 0
        finally:
            await ledger.close()


class TestReleaseListings:
    """A lister that stops hands its unfinished listings back at once."""

    async def test_released_listing_is_claimed_by_another(self, ledger: Ledger):
        batch = await ledger.create_batch(new_batch())
        claimed = await ledger.claim_listing("l1", 600)
        assert claimed is not None and claimed.id == batch.id
        assert await ledger.claim_listing("l2", 600) is None
        assert await ledger.release_listings("l1") == 1
        again = await ledger.claim_listing("l2", 600)
        assert again is not None and again.id == batch.id
        assert await ledger.release_listings("l1") == 0
