"""Object-version leases and deferred jobs, on every ledger backend.

A running job holds its object version (+ recipe) so that a second job for it waits instead of
paying for the same edit; the lease lives and ends with the job's own lease and outcome.
"""

from __future__ import annotations

import asyncio

import pytest

from imagedrop.ledger import JobKind, JobState, Ledger, NewJob
from imagedrop.recipes import JobResult, Recipe
from tests.contracts.ledger_backends import FakeClock

VERSION = "b\x1fphotos/a.png\x1fetag1\x1frev1"


async def running(ledger: Ledger, n: int, owner: str = "w") -> list[str]:
    """Record `n` jobs and claim them for `owner`: their ids, in order."""
    created = await ledger.create_jobs([
        NewJob(kind=JobKind.DROP, filename=f"{i}.png", recipe=Recipe(prompt="p"),
               version_key=VERSION) for i in range(n)])
    claimed = await ledger.claim_jobs(owner, n, 10)
    assert len(claimed) == n
    return [job.id for job, _ in created]


class TestClaimVersion:
    """One running job holds a version; others learn who holds it."""

    async def test_first_claim_holds_and_others_see_the_holder(self, ledger: Ledger):
        a, b = await running(ledger, 2)
        assert await ledger.claim_version(VERSION, a, 10) is None
        assert await ledger.claim_version(VERSION, b, 10) == a
        assert await ledger.claim_version(VERSION, a, 10) is None  # its own claim again
        assert await ledger.claim_version("another version", b, 10) is None

    async def test_a_lapsed_lease_is_taken_over(self, ledger: Ledger, clock: FakeClock):
        a, b = await running(ledger, 2)
        await ledger.claim_version(VERSION, a, 10)
        clock.advance(11)  # a's process died: nothing renewed its leases
        assert await ledger.claim_version(VERSION, b, 10) is None
        assert await ledger.claim_version(VERSION, a, 10) == b

    async def test_renewed_with_the_job(self, ledger: Ledger, clock: FakeClock):
        a, b = await running(ledger, 2)
        await ledger.claim_version(VERSION, a, 10)
        for _ in range(3):
            clock.advance(8)
            await ledger.renew_leases("w", [a], 10)
        assert await ledger.claim_version(VERSION, b, 10) == a

    async def test_not_renewed_for_another_owner(self, ledger: Ledger, clock: FakeClock):
        a, b = await running(ledger, 2)
        await ledger.claim_version(VERSION, a, 10)
        clock.advance(8)
        await ledger.renew_leases("someone else", [a], 10)
        clock.advance(3)
        assert await ledger.claim_version(VERSION, b, 10) is None

    @pytest.mark.parametrize("outcome", ["complete", "fail", "retry", "defer", "release"])
    async def test_released_with_the_outcome(self, ledger: Ledger, clock: FakeClock,
                                             outcome: str):
        a, b = await running(ledger, 2)
        await ledger.claim_version(VERSION, a, 10)
        done = {
            "complete": lambda: ledger.complete_job(a, "w", JobResult(model="m1"), []),
            "fail": lambda: ledger.fail_job(a, "w", "bad", []),
            "retry": lambda: ledger.retry_job(a, "w", "busy", clock() + 60),
            "defer": lambda: ledger.defer_job(a, "w", clock() + 60, "waiting"),
            "release": lambda: ledger.release_jobs("w"),
        }[outcome]
        assert await done()
        assert await ledger.claim_version(VERSION, b, 10) is None

    async def test_an_outcome_by_a_stranger_releases_nothing(self, ledger: Ledger):
        a, b = await running(ledger, 2)
        await ledger.claim_version(VERSION, a, 10)
        assert not await ledger.complete_job(a, "stranger", JobResult(model="m1"), [])
        assert await ledger.claim_version(VERSION, b, 10) == a

    async def test_a_holder_no_longer_running_is_replaced(self, ledger: Ledger):
        """A lease left behind by a job that is not running (however that came about)."""
        [a] = await running(ledger, 1)
        [(queued, _)] = await ledger.create_jobs([
            NewJob(kind=JobKind.DROP, filename="q.png", recipe=Recipe(prompt="p"))])
        assert await ledger.claim_version(VERSION, queued.id, 10) is None
        assert await ledger.claim_version(VERSION, a, 10) is None
        assert await ledger.claim_version(VERSION, queued.id, 10) == a

    async def test_release_version(self, ledger: Ledger):
        a, b = await running(ledger, 2)
        await ledger.claim_version(VERSION, a, 10)
        await ledger.release_version(VERSION, b)  # not b's: nothing happens
        assert await ledger.claim_version(VERSION, b, 10) == a
        await ledger.release_version(VERSION, a)
        assert await ledger.claim_version(VERSION, b, 10) is None

    async def test_concurrent_claims_from_two_processes(self, ledger: Ledger, second: Ledger):
        """Jobs claiming one version at once through two connections: exactly one holds it."""
        ids = await running(ledger, 12)
        answers = await asyncio.gather(*[
            (ledger if i % 2 else second).claim_version(VERSION, job_id, 10)
            for i, job_id in enumerate(ids)])
        holders = [job_id for job_id, answer in zip(ids, answers, strict=True) if answer is None]
        assert len(holders) == 1
        assert set(answers) == {None, holders[0]}


class TestDeferJob:
    """A job that waits for another goes back to the queue without using an attempt."""

    async def test_defer_gives_the_attempt_back(self, ledger: Ledger, clock: FakeClock):
        [a] = await running(ledger, 1)
        assert await ledger.defer_job(a, "w", clock() + 5, "waiting for job x")
        job = await ledger.get_job(a)
        assert job is not None and job.state is JobState.QUEUED
        assert (job.attempts, job.run_after, job.last_error) == (0, clock() + 5,
                                                                  "waiting for job x")
        assert job.lease_owner is None
        assert await ledger.claim_jobs("w", 1, 10) == []  # not due yet
        clock.advance(5)
        [again] = await ledger.claim_jobs("w", 1, 10)
        assert again.id == a and again.attempts == 1

    async def test_only_the_owner_defers(self, ledger: Ledger, clock: FakeClock):
        [a] = await running(ledger, 1)
        assert not await ledger.defer_job(a, "stranger", clock() + 5, "x")
        job = await ledger.get_job(a)
        assert job is not None and job.state is JobState.RUNNING
