"""When to try a delivery again: outcome of an answer, Retry-After, the retry schedule.

This module performs no I/O: every function takes the clock reading it needs.
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Sequence
from datetime import UTC
from enum import StrEnum

MAX_RETRY_AFTER = 24 * 3600.0  # a receiver cannot park a delivery longer than a day


class Verdict(StrEnum):
    """What an attempt's answer means for the delivery."""

    DELIVERED = "delivered"
    DISABLED = "disabled"
    RETRY = "retry"
    FAILED = "failed"  # the receiver refused the payload for good; POST /replay sends it again


# 4xx answers that say "not now" rather than "never": timeout, conflict, too early, rate limit.
_RETRYABLE_4XX = frozenset({408, 409, 425, 429})


def classify(status: int | None) -> Verdict:
    """2xx delivered; 410 Gone disables; other 4xx fail for good, but for the "not now" ones.

    5xx, the "not now" 4xx (408, 409, 425, 429) and no answer at all (timeouts, connection
    errors) are retried. Redirects are retried too, as failures (Standard Webhooks): following
    them would let a receiver bounce signed payloads to another host.
    """
    if status is None:
        return Verdict.RETRY
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status == 410:
        return Verdict.DISABLED
    if 400 <= status < 500 and status not in _RETRYABLE_4XX:
        return Verdict.FAILED
    return Verdict.RETRY


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if unusable."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # "-0000" parses naive; HTTP dates are GMT either way
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def next_attempt_at(
    schedule: Sequence[float],
    attempts_made: int,
    *,
    now: float,
    retry_after: float | None = None,
) -> float | None:
    """When attempt number `attempts_made` (0-based) is due, or None when the schedule is spent.

    `schedule[n]` is the delay before attempt n; `schedule[0]` is the first try (normally 0).
    Retry-After can only lengthen the delay, and is capped at a day.
    """
    if attempts_made < 0 or attempts_made >= len(schedule):
        return None
    delay = max(0.0, float(schedule[attempts_made]))
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return now + delay
