"""PostgreSQL replicas racing over drops: a batch closed while a drop joins it, and drops
recorded in different orders by two replicas (which must wait, not deadlock)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from imagedrop.batches import BatchCloser
from imagedrop.ledger import DropItem, JobKind, NewBatch, NewJob
from imagedrop.recipes import JobResult, Recipe
from tests.contracts.ledger_backends import POSTGRES_URL, FakeClock, PostgresBackend

asyncpg = pytest.importorskip("asyncpg")
from imagedrop.ledger import tx_drops  # noqa: E402
from imagedrop.ledger.dialect import POSTGRES  # noqa: E402
from imagedrop.ledger.postgres import PostgresLedger, answers  # noqa: E402 - needs the driver
from imagedrop.ledger.sql import drive  # noqa: E402

T0 = 1_700_000_000.0
GROUP = "b\x1ff/\x1fr1"


def item(key: str, *, batch: bool = True) -> DropItem:
    job = NewJob(kind=JobKind.DROP, filename=key, recipe=Recipe(prompt="p"),
                 dedupe_key=f"drop:{key}", source_bucket="b", source_key=key, source_etag="e")
    if not batch:
        return DropItem(job=job)
    template = NewBatch(kind="drop", bucket="b", prefix="f/", output_bucket="b",
                        output_prefix="o/", recipe=Recipe(prompt="p"), group_key=GROUP)
    return DropItem(job=job, batch=template, settle_seconds=5, max_settle_seconds=300)


@pytest.fixture(name="backend")
async def backend_fixture(tmp_path: Path, clock: FakeClock) -> AsyncIterator[PostgresBackend]:
    backend = PostgresBackend(tmp_path, clock)
    await backend.start()
    yield backend
    await backend.drop()


@pytest.fixture(name="replicas")
async def replicas_fixture(backend: PostgresBackend
                           ) -> AsyncIterator[tuple[PostgresLedger, PostgresLedger, FakeClock]]:
    """A joining replica (on the test clock) and a housekeeping one whose clock runs ahead."""
    ahead = FakeClock(T0 + 100)
    joiner = PostgresLedger(POSTGRES_URL, clock=backend.clock, schema=backend.schema,
                            pool_max=4)
    house = PostgresLedger(POSTGRES_URL, clock=ahead, schema=backend.schema, pool_max=4)
    await joiner.open()
    await house.open()
    yield joiner, house, ahead
    await joiner.close()
    await house.close()


class Hooked:
    """A connection that runs `hook` once, right after the first statement `when` picks."""

    def __init__(self, conn: Any, when: Callable[[str], bool],
                 hook: Callable[[], Awaitable[None]]) -> None:
        self.conn, self.when, self.hook, self.fired = conn, when, hook, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)

    async def _after(self, sql: str) -> None:
        if not self.fired and self.when(sql):
            self.fired = True
            # Bounded: a close that waited on our row lock would otherwise hang the test.
            await asyncio.wait_for(self.hook(), timeout=20)

    async def execute(self, sql: str, *args: Any) -> Any:
        result = await self.conn.execute(sql, *args)
        await self._after(sql)
        return result

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        row = await self.conn.fetchrow(sql, *args)
        await self._after(sql)
        return row

    async def fetch(self, sql: str, *args: Any) -> Any:
        rows = await self.conn.fetch(sql, *args)
        await self._after(sql)
        return rows


def _after_locks(sql: str) -> bool:
    return "pg_advisory_xact_lock" in sql


def _after_batch_select(sql: str) -> bool:
    # The read of the groups' open batches, which locks them.
    return "FROM batches WHERE group_key = ANY" in sql and sql.endswith("FOR UPDATE")


class TestCloseWhileJoining:
    """Housekeeping on another replica closes the settling batch mid-record: the dropped job
    lands in a batch whose summary counts it, never in a finished one."""

    @pytest.mark.parametrize("when", [_after_locks, _after_batch_select],
                             ids=["after-locks", "after-select"])
    async def test_joined_job_is_always_summarised(self, replicas, backend, clock, when):
        joiner, house, ahead = replicas
        clock.now = T0
        [(first, _)] = await joiner.record_drops([item("f/1.jpg")])
        [claimed] = await joiner.claim_jobs("w", 1, 60)
        await joiner.complete_job(claimed.id, "w", JobResult(model="m1"), [])
        closer = BatchCloser(house, clock=ahead)

        async def housekeeping() -> None:
            for batch_id in await house.close_settled_batches():
                await closer.maybe_finish(batch_id)

        clock.now = T0 + 4.9  # inside the first batch's settle window, for the joiner
        conn = await asyncpg.connect(POSTGRES_URL, server_settings={"search_path": backend.schema})
        try:
            hooked = Hooked(conn, when, housekeeping)
            async with conn.transaction():
                [(second, new)] = await drive(
                    tx_drops.record_drops(POSTGRES, clock(), [item("f/2.jpg")]),
                    answers(hooked, clock))
        finally:
            await conn.close()
        assert hooked.fired and new
        batch = await joiner.get_batch(second.batch_id)
        assert batch is not None and batch.finished_at is None  # it will report the job
        # The job completes; every batch then closes with a summary that counts its jobs.
        [claimed] = await joiner.claim_jobs("w", 1, 60)
        await joiner.complete_job(claimed.id, "w", JobResult(model="m1"), [])
        ahead.now = T0 + 1000
        await housekeeping()
        for batch_id in {first.batch_id, second.batch_id}:
            done = await joiner.get_batch(batch_id)
            assert done is not None and done.summary is not None
            jobs = await joiner.list_jobs(batch_id=batch_id)
            assert done.summary.total_files == len(jobs)

    async def test_close_skips_a_batch_being_joined(self, replicas, backend, clock):
        """While a drop holds the batch, closing it is put off, not waited for."""
        joiner, house, ahead = replicas
        clock.now = T0
        [(first, _)] = await joiner.record_drops([item("f/1.jpg")])
        closed: list[str] = []

        async def close() -> None:
            closed.extend(await house.close_settled_batches())

        clock.now = T0 + 4.9
        conn = await asyncpg.connect(POSTGRES_URL, server_settings={"search_path": backend.schema})
        try:
            hooked = Hooked(conn, _after_batch_select, close)
            async with conn.transaction():
                await drive(tx_drops.record_drops(POSTGRES, clock(), [item("f/2.jpg")]),
                            answers(hooked, clock))
        finally:
            await conn.close()
        assert hooked.fired and closed == []
        ahead.now = T0 + 1000
        assert await house.close_settled_batches() == [first.batch_id]


class TestDuplicateMeanwhile:
    """The same object recorded outside the folder's lock (a trigger) between the look for
    duplicates and the insert: the drop answers the recorded job and leaves no empty batch."""

    async def test_no_batch_is_left_for_it(self, replicas, backend, clock):
        joiner, _, _ = replicas
        clock.now = T0
        late = item("f/late.jpg")

        async def trigger() -> None:
            await joiner.create_jobs([late.job])

        conn = await asyncpg.connect(POSTGRES_URL, server_settings={"search_path": backend.schema})
        try:
            hooked = Hooked(conn, _after_locks, trigger)
            async with conn.transaction():
                [(job, new)] = await drive(
                    tx_drops.record_drops(POSTGRES, clock(), [late]), answers(hooked, clock))
        finally:
            await conn.close()
        assert hooked.fired and not new and job.batch_id is None
        assert await joiner.close_settled_batches() == []
        left = await asyncpg.connect(POSTGRES_URL, server_settings={"search_path": backend.schema})
        try:
            assert await left.fetchval("SELECT count(*) FROM batches") == 0
        finally:
            await left.close()


class TestNoDeadlock:
    """Two replicas recording the same batch-less drops in opposite orders both succeed."""

    async def test_opposite_orders(self, backend: PostgresBackend):
        a, b = backend.make(), backend.make()
        await a.open()
        await b.open()
        try:
            for r in range(20):
                keys = [f"r{r}-{i:02d}" for i in range(30)]
                forward, backward = await asyncio.gather(
                    a.record_drops([item(k, batch=False) for k in keys]),
                    b.record_drops([item(k, batch=False) for k in reversed(keys)]))
                # Results in each caller's own order; each object recorded once.
                assert [job.source_key for job, _ in forward] == keys
                assert [job.source_key for job, _ in backward] == keys[::-1]
                new = [job.id for job, fresh in forward + backward if fresh]
                assert len(new) == len(set(new)) == len(keys)
        finally:
            await a.close()
            await b.close()

    async def test_mixed_groups_and_batchless(self, backend: PostgresBackend):
        """Grouped and batch-less items interleaved, opposite orders: no deadlock either."""
        a, b = backend.make(), backend.make()
        await a.open()
        await b.open()
        try:
            for r in range(10):
                items = [item(f"r{r}-{i:02d}", batch=bool(i % 2)) for i in range(20)]
                again = [item(f"r{r}-{i:02d}", batch=bool(i % 2)) for i in range(20)][::-1]
                first, second = await asyncio.gather(a.record_drops(items),
                                                     b.record_drops(again))
                assert sum(fresh for _, fresh in first + second) == 20
        finally:
            await a.close()
            await b.close()
