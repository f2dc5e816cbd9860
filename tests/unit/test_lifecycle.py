"""Retry decisions and backoff are pure functions."""

from __future__ import annotations

import random

from imagedrop import lifecycle
from imagedrop.errors import (
    BillingLimitReached,
    ImageRejected,
    ProviderPermanent,
    ProviderTransient,
    StorageUnavailable,
)


class TestComputeBackoff:
    """Exponential, capped, never sooner than Retry-After."""

    def test_grows_and_caps(self):
        delays = [lifecycle.compute_backoff(n, base=1, cap=10, jitter=0) for n in range(1, 7)]
        assert delays == [1, 2, 4, 8, 10, 10]

    def test_retry_after_wins_when_longer(self):
        assert lifecycle.compute_backoff(1, base=1, cap=10, retry_after=30, jitter=0) == 30
        assert lifecycle.compute_backoff(4, base=1, cap=10, retry_after=2, jitter=0) == 8

    def test_jitter_stays_in_band(self):
        rng = random.Random(7)
        for _ in range(100):
            d = lifecycle.compute_backoff(3, base=1, cap=100, jitter=0.1, rng=rng)
            assert 3.6 <= d <= 4.4


class TestAfterError:
    """Transient errors retry until attempts run out; the rest fail with the reason."""

    def test_transient_retries(self):
        d = lifecycle.after_error(ProviderTransient("429 rate limited", retry_after=3),
                                  attempts=1, max_attempts=5, base=0.1, cap=1)
        assert isinstance(d, lifecycle.Retry) and d.delay >= 3 and "429" in d.reason

    def test_transient_gives_up(self):
        d = lifecycle.after_error(StorageUnavailable("COS 503"), attempts=5, max_attempts=5,
                                  base=0.1, cap=1)
        assert isinstance(d, lifecycle.Fail) and "gave up after 5 attempts" in d.reason

    def test_permanent_fails_at_once(self):
        d = lifecycle.after_error(ProviderPermanent("moderation_blocked: sexual",
                                                    code="moderation_blocked"),
                                  attempts=1, max_attempts=5, base=1, cap=1)
        assert d == lifecycle.Fail("moderation_blocked: sexual")

    def test_caller_fault_fails(self):
        d = lifecycle.after_error(ImageRejected("not an image: a PDF document"), attempts=1,
                                  max_attempts=5, base=1, cap=1)
        assert isinstance(d, lifecycle.Fail) and "PDF" in d.reason

    def test_billing_is_permanent_if_it_reaches_here(self):
        d = lifecycle.after_error(BillingLimitReached("billing"), attempts=1, max_attempts=5,
                                  base=1, cap=1)
        assert isinstance(d, lifecycle.Fail)

    def test_unexpected_errors_retry_boundedly(self):
        first = lifecycle.after_error(KeyError("x"), attempts=1, max_attempts=2, base=0, cap=0)
        last = lifecycle.after_error(KeyError("x"), attempts=2, max_attempts=2, base=0, cap=0)
        assert isinstance(first, lifecycle.Retry) and "KeyError" in first.reason
        assert isinstance(last, lifecycle.Fail) and "internal error" in last.reason
