"""The pure edit-rate rule (GCRA) and the limiter's wait loop."""

from __future__ import annotations

import pytest

from imagedrop.gcra import burst, take_slot
from imagedrop.limits import EditLimiter, pause_code


class TestTakeSlot:
    """One step of the rule: a slot now, or how long until one is free."""

    def test_burst_is_one_seconds_worth_at_least_one(self):
        assert [burst(n) for n in (1, 59, 60, 119, 120, 600)] == [1, 1, 1, 1, 2, 10]

    def test_a_quiet_bucket_gives_a_slot_and_books_the_next(self):
        assert take_slot(0.0, 100.0, 60) == (0.0, 101.0)

    def test_a_full_bucket_says_how_long_to_wait_and_changes_nothing(self):
        wait, tat = take_slot(101.0, 100.25, 60)
        assert wait == pytest.approx(0.75) and tat == 101.0

    def test_never_more_than_burst_plus_rate(self):
        tat, now, granted = 0.0, 1_700_000_000.0, []
        for _ in range(1000):  # asking every 10 ms for 10 s at 300/min (burst 5)
            wait, tat = take_slot(tat, now, 300)
            if wait == 0.0:
                granted.append(now)
            now += 0.01
        assert len(granted) == 5 + 49
        for i in range(len(granted)):
            for j in range(i + 1, len(granted)):
                assert j - i <= 5 + (granted[j] - granted[i]) * 5 + 1e-6

    def test_pause_code(self):
        assert pause_code("insufficient_quota: OpenAI quota exhausted: x") == "insufficient_quota"


class _Ledger:
    """Answers take_edit_slot from a script (only that method is used)."""

    def __init__(self, waits: list[float]) -> None:
        self.waits = waits
        self.asks = 0

    async def take_edit_slot(self, key: str, per_minute: int) -> float:
        self.asks += 1
        return self.waits.pop(0)


class TestEditLimiter:
    """Waits the ledger's answer (each nap bounded), then asks again."""

    async def test_waits_then_takes(self):
        ledger = _Ledger([0.02, 0.5, 0.0])
        limiter = EditLimiter(ledger, "k", 60, max_sleep=0.03)  # type: ignore[arg-type]
        waited = await limiter.acquire()
        assert ledger.asks == 3 and waited == pytest.approx(0.05)

    async def test_off_without_a_rate(self):
        ledger = _Ledger([])
        assert await EditLimiter(ledger, "k", 0).acquire() == 0.0  # type: ignore[arg-type]
        assert ledger.asks == 0
