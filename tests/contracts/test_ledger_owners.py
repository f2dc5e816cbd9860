"""Lease owners and their liveness, on every ledger backend: a dead owner's work is taken over
at once, a live owner's never, however stale its leases; and one sweeper per bucket.

"Dying" here is closing the second ledger: its lock file goes (SQLite) or its session and with
it the advisory lock (PostgreSQL), as when a process is killed. `tests/e2e/test_recovery.py`
kills real processes.
"""

from __future__ import annotations

from imagedrop.ledger import DeliveryState, JobKind, JobState, Ledger, NewBatch, NewJob
from imagedrop.recipes import JobResult, Recipe
from tests.contracts.ledger_backends import FakeClock, LedgerBackend
from tests.contracts.test_ledger import new_delivery

VERSION = "b\x1fa.png\x1fe\x1fr"
LISTING = NewBatch(kind="trigger", bucket="b", prefix="p/", output_bucket="b",
                   output_prefix="o/", recipe=Recipe(prompt="p"))


def job(name: str) -> NewJob:
    return NewJob(kind=JobKind.B64, filename=name, recipe=Recipe(prompt="p"), version_key=VERSION)


async def one_running(ledger: Ledger, owner: str) -> str:
    [(created, _)] = await ledger.create_jobs([job("a.png")])
    [claimed] = await ledger.claim_jobs(owner, 1, 10)
    assert claimed.id == created.id
    assert await ledger.claim_version(VERSION, created.id, 10) is None
    return created.id


class TestLiveOwners:
    """An owner whose process lives keeps its work, even with every lease long expired."""

    async def test_stale_leases_of_a_live_owner_are_never_taken(
        self, ledger: Ledger, second: Ledger, clock: FakeClock,
    ):
        await second.register_owner("alive")
        job_id = await one_running(second, "alive")
        await second.create_batch(LISTING)
        assert await second.claim_listing("alive", 10) is not None
        await second.create_jobs([NewJob(kind=JobKind.B64, filename="c", recipe=Recipe(), id="c")])
        [done] = await second.claim_jobs("alive", 1, 10)
        await second.complete_job(done.id, "alive", JobResult(), [new_delivery()])
        assert len(await second.claim_deliveries("alive", 1, 10)) == 1
        assert await second.claim_sweep("bucket", "alive", 10)
        clock.advance(3600)  # an hour without renewing: its event loop is stalled, say
        assert await ledger.claim_jobs("other", 5, 10) == []
        assert await ledger.claim_deliveries("other", 5, 10) == []
        assert await ledger.claim_listing("other", 10) is None
        assert not await ledger.claim_sweep("bucket", "other", 10)
        [(waiting, _)] = await ledger.create_jobs([job("b.png")])
        [claimed] = await ledger.claim_jobs("other", 1, 10)
        assert claimed.id == waiting.id
        assert await ledger.claim_version(VERSION, waiting.id, 10) == job_id
        assert await ledger.dead_owners("other") == []
        assert await ledger.take_over(["alive"]) == 0  # alive after all: keeps its work
        assert (await ledger.get_job(job_id)).lease_owner == "alive"  # type: ignore[union-attr]

    async def test_an_owner_that_never_registered_falls_back_to_leases(
        self, ledger: Ledger, clock: FakeClock,
    ):
        job_id = await one_running(ledger, "unregistered")
        assert await ledger.claim_jobs("other", 1, 10) == []
        clock.advance(11)
        [claimed] = await ledger.claim_jobs("other", 1, 10)
        assert claimed.id == job_id and claimed.attempts == 2


class TestDeadOwners:
    """A dead owner's leases are taken over as soon as its death is seen, not after them."""

    async def test_its_jobs_deliveries_listings_and_versions_are_taken_at_once(
        self, ledger: Ledger, backend: LedgerBackend, clock: FakeClock,
    ):
        doomed = backend.make()
        await doomed.open()
        await ledger.register_owner("survivor")
        await doomed.register_owner("doomed")
        job_id = await one_running(doomed, "doomed")
        await doomed.create_jobs([NewJob(kind=JobKind.B64, filename="d", recipe=Recipe(), id="jd"),
                                  NewJob(kind=JobKind.B64, filename="c", recipe=Recipe(), id="jc")])
        batch = await doomed.create_batch(LISTING)
        assert (await doomed.claim_listing("doomed", 60)) is not None
        [d2, dc] = await doomed.claim_jobs("doomed", 2, 60)
        await doomed.complete_job(dc.id, "doomed", JobResult(), [new_delivery()])
        [delivery] = await doomed.claim_deliveries("doomed", 1, 60)
        assert await doomed.claim_sweep("bucket", "doomed", 60)
        assert await ledger.dead_owners("survivor") == []

        await doomed.close()  # the process dies: its lock goes with it
        assert await ledger.dead_owners("survivor") == ["doomed"]
        assert await ledger.take_over(["doomed"]) == 5  # 2 jobs, 1 delivery, 1 listing, 1 sweep
        # No clock advance: everything is claimable now.
        claimed = await ledger.claim_jobs("survivor", 5, 60)
        assert {j.id for j in claimed} == {job_id, d2.id}
        assert all(j.state is JobState.RUNNING and j.lease_owner == "survivor" for j in claimed)
        [redelivery] = await ledger.claim_deliveries("survivor", 5, 60)
        assert redelivery.id == delivery.id and redelivery.state is DeliveryState.PENDING
        relisted = await ledger.claim_listing("survivor", 60)
        assert relisted is not None and relisted.id == batch.id
        assert await ledger.claim_version(VERSION, job_id, 60) is None  # the same job resumes
        assert await ledger.claim_sweep("bucket", "survivor", 60)
        assert await ledger.dead_owners("survivor") == []  # forgotten
        assert await ledger.take_over(["doomed"]) == 0

    async def test_an_owner_that_stops_cleanly_is_forgotten(self, ledger: Ledger,
                                                             second: Ledger):
        await second.register_owner("leaving")
        await second.unregister_owner("leaving")
        assert await ledger.dead_owners("me") == []
        await second.register_owner("leaving")  # the name may be used again
        assert await ledger.dead_owners("me") == []


class TestSweepLeadership:
    """One replica sweeps a bucket; another takes over only from a dead or lapsed sweeper."""

    async def test_one_sweeper_per_bucket(self, ledger: Ledger, second: Ledger,
                                          clock: FakeClock):
        await ledger.register_owner("a")
        await second.register_owner("b")
        assert await ledger.claim_sweep("photos", "a", 10)
        assert not await second.claim_sweep("photos", "b", 10)
        assert await second.claim_sweep("other", "b", 10)
        clock.advance(60)  # a live sweeper keeps its bucket, renewed or not
        assert not await second.claim_sweep("photos", "b", 10)
        assert await ledger.claim_sweep("photos", "a", 10)
        assert await ledger.release_sweeps("a") == 1
        assert await second.claim_sweep("photos", "b", 10)

    async def test_an_unregistered_sweeper_lapses(self, ledger: Ledger, clock: FakeClock):
        assert await ledger.claim_sweep("photos", "x", 10)
        assert not await ledger.claim_sweep("photos", "y", 10)
        clock.advance(11)
        assert await ledger.claim_sweep("photos", "y", 10)
