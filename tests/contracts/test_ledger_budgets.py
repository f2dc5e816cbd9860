"""The Ledger contract for spend budgets (every backend): exact counts at the edge under
concurrency, all-or-none across scopes, the first refusal of a day told once, settling, held
jobs going on when their day begins."""

from __future__ import annotations

import asyncio

import pytest

from imagedrop.ledger import BudgetLimit, JobKind, JobState, Ledger, NewJob
from imagedrop.prices import next_day, utc_day
from imagedrop.recipes import Recipe
from tests.contracts.ledger_backends import FakeClock

FOLDER = "folder:b/photos/imagedrop.yaml"


class TestTakeBudget:
    async def test_exactly_the_limit_under_concurrency(self, ledger: Ledger, clock: FakeClock):
        limits = [BudgetLimit(FOLDER, edits_per_day=5)]
        verdicts = [t.refused for t in await asyncio.gather(
            *(ledger.take_budget(limits, 0.01) for _ in range(16)))]
        assert sum(v is None for v in verdicts) == 5
        refusals = [v for v in verdicts if v is not None]
        assert sum(r.first for r in refusals) == 1  # told once
        assert all("5 edits per day" in r.reason for r in refusals)
        assert await ledger.budget_usage(FOLDER, utc_day(clock.now)) == (5, pytest.approx(0.05))

    async def test_dollars_estimated_then_settled(self, ledger: Ledger, clock: FakeClock):
        limits = [BudgetLimit("service", usd_per_day=0.10)]
        assert (await ledger.take_budget(limits, 0.04)).refused is None
        assert (await ledger.take_budget(limits, 0.04)).refused is None
        refused = (await ledger.take_budget(limits, 0.04)).refused
        assert refused is not None and "US$0.1 per day" in refused.reason
        assert not refused.never  # tomorrow it fits
        day = utc_day(clock.now)
        # The real cost came in lower: the room is there again.
        await ledger.settle_budget(["service"], day, -0.05)
        assert (await ledger.take_budget(limits, 0.04)).refused is None
        assert await ledger.budget_usage("service", day) == (3, pytest.approx(0.07))

    async def test_all_or_none_across_scopes(self, ledger: Ledger, clock: FakeClock):
        both = [BudgetLimit(FOLDER, edits_per_day=10), BudgetLimit("service", edits_per_day=1)]
        assert (await ledger.take_budget(both, 0.0)).refused is None
        refused = (await ledger.take_budget(both, 0.0)).refused
        assert refused is not None and refused.scope == "service"
        day = utc_day(clock.now)
        assert await ledger.budget_usage(FOLDER, day) == (1, 0.0)  # not counted either

    async def test_a_new_day_is_a_new_window(self, ledger: Ledger, clock: FakeClock):
        limits = [BudgetLimit(FOLDER, edits_per_day=1)]
        assert (await ledger.take_budget(limits, 0.0)).refused is None
        refused = (await ledger.take_budget(limits, 0.0)).refused
        assert refused is not None and refused.first and refused.until == next_day(clock.now)
        clock.now = next_day(clock.now)
        taken = await ledger.take_budget(limits, 0.0)
        assert taken.refused is None and taken.day == utc_day(clock.now)
        refused = (await ledger.take_budget(limits, 0.0)).refused
        assert refused is not None and refused.first  # told again: a new day

    async def test_the_service_budget_is_told_once_per_folder(self, ledger: Ledger,
                                                              clock: FakeClock):
        service = [BudgetLimit("service", edits_per_day=1)]
        assert (await ledger.take_budget(service, 0.0, folder="folder:b/a.yaml")).refused is None
        firsts = [(await ledger.take_budget(service, 0.0, folder=f)).refused.first
                  for f in ("folder:b/a.yaml", "folder:b/b.yaml", "folder:b/a.yaml",
                            "folder:b/b.yaml", None)]
        assert firsts == [True, True, False, False, True]
        # The markers are not budgets: /metrics' listing leaves them out.
        assert [scope for scope, _, _ in await ledger.budget_day(utc_day(clock.now))] == [
            "service"]

    async def test_looking_counts_nothing(self, ledger: Ledger, clock: FakeClock):
        limits = [BudgetLimit(FOLDER, edits_per_day=1)]
        for _ in range(3):
            assert (await ledger.take_budget(limits, 0.5, count=False)).refused is None
        assert await ledger.budget_usage(FOLDER, utc_day(clock.now)) == (0, 0.0)
        assert (await ledger.take_budget(limits, 0.5)).refused is None
        looked = (await ledger.take_budget(limits, 0.5, count=False)).refused
        assert looked is not None and looked.first  # a look that finds it reached tells

    async def test_an_edit_bigger_than_the_day_never_fits(self, ledger: Ledger,
                                                           clock: FakeClock):
        refused = (await ledger.take_budget([BudgetLimit(FOLDER, usd_per_day=0.01)],
                                            0.04)).refused
        assert refused is not None and refused.never and "can never run" in refused.reason


class TestHeld:
    async def test_held_until_the_day_begins(self, ledger: Ledger, clock: FakeClock):
        [(job, _)] = await ledger.create_jobs([NewJob(kind=JobKind.B64, filename="a.png",
                                                      recipe=Recipe(prompt="p"),
                                                      input_data=b"x", max_attempts=3)])
        [claimed] = await ledger.claim_jobs("w", 1, 60)
        until = next_day(clock.now)
        assert await ledger.hold_job(job.id, "w", until, "budget reached: 5 edits per day")
        held = await ledger.get_job(job.id)
        assert held.state is JobState.HELD and held.last_error.startswith("budget")
        assert held.attempts == claimed.attempts - 1  # not a failed try
        assert await ledger.claim_jobs("w", 1, 60) == []
        assert await ledger.release_held() == 0
        clock.now = until
        assert await ledger.release_held() == 1
        [again] = await ledger.claim_jobs("w", 1, 60)
        assert again.id == job.id


class TestTwoReplicas:
    """Two PostgreSQL ledgers (two replicas) counting against one budget at once."""

    async def test_exactly_the_limit_across_replicas(self, tmp_path, clock: FakeClock):
        pytest.importorskip("asyncpg")
        from tests.contracts.ledger_backends import PostgresBackend

        backend = PostgresBackend(tmp_path, clock)
        await backend.start()
        a, b = backend.make(), backend.make()
        try:
            await a.open()
            await b.open()
            limits = [BudgetLimit(FOLDER, edits_per_day=5), BudgetLimit("service",
                                                                        usd_per_day=1.0)]
            verdicts = [t.refused for t in await asyncio.gather(*(
                (a if i % 2 else b).take_budget(limits, 0.01) for i in range(16)))]
            assert sum(v is None for v in verdicts) == 5
            assert sum(v.first for v in verdicts if v is not None) == 1
            assert await a.budget_usage(FOLDER, utc_day(clock.now)) == (5, pytest.approx(0.05))
            assert await b.budget_usage("service", utc_day(clock.now)) == (
                5, pytest.approx(0.05))
        finally:
            await a.close()
            await b.close()
            await backend.drop()
