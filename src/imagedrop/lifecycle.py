"""Job state decisions as pure functions: what to do after an error, how long to wait, the summary.

This module performs no I/O: the worker feeds it facts and writes its decisions to the ledger.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from imagedrop.errors import InputError, PermanentError, TransientError


@dataclass(frozen=True, slots=True)
class Retry:
    """Run the job again, not before `delay` seconds from now."""

    delay: float
    reason: str


@dataclass(frozen=True, slots=True)
class Fail:
    """The job is final: failed, with a reason the user can act on."""

    reason: str


def compute_backoff(
    attempt: int, *, base: float, cap: float, retry_after: float | None = None,
    jitter: float = 0.1, rng: random.Random | None = None,
) -> float:
    """Delay before attempt `attempt + 1`: base·2^(attempt-1) capped, ± jitter, ≥ Retry-After."""
    delay = min(cap, base * (2 ** max(0, attempt - 1)))
    if jitter:
        delay *= 1 + (rng or random).uniform(-jitter, jitter)
    if retry_after is not None:
        # The server knows its own recovery time better than our schedule does.
        delay = max(delay, retry_after)
    return max(0.0, float(delay))


def after_error(
    error: BaseException, *, attempts: int, max_attempts: int, base: float, cap: float,
) -> Retry | Fail:
    """Decide a job's fate after `error` on its `attempts`-th attempt."""
    reason = describe(error)
    if isinstance(error, TransientError):
        if attempts >= max_attempts:
            return Fail(f"{reason} (gave up after {attempts} attempts)")
        delay = compute_backoff(attempts, base=base, cap=cap, retry_after=error.retry_after)
        return Retry(delay, reason)
    if isinstance(error, InputError | PermanentError):
        return Fail(reason)
    # An unexpected exception is a bug or an unknown failure: retry a bounded number of times
    # so a passing glitch does not lose the job, then fail with the type for the operator.
    if attempts >= max_attempts:
        return Fail(f"internal error: {reason} (gave up after {attempts} attempts)")
    return Retry(compute_backoff(attempts, base=base, cap=cap), f"internal error: {reason}")


def describe(error: BaseException) -> str:
    """A one-line reason: the message of our own errors, type and message of others."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if isinstance(error, InputError | PermanentError | TransientError):
        return text or type(error).__name__
    return f"{type(error).__name__}: {text}" if text else type(error).__name__

