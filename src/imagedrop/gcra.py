"""The generic cell rate algorithm (GCRA) behind the shared edit rate: one pure step (no I/O).

Each ledger applies `take_slot` in its own transaction over the stored theoretical arrival time.
"""

from __future__ import annotations

# Times near 1.7e9 s carry about 2e-7 s of float rounding: a wait shorter than this is none.
_EPSILON = 1e-4


def burst(per_minute: int) -> int:
    """Slots that may be taken at once after a quiet spell: one second's worth, at least one."""
    return max(1, per_minute // 60)


def take_slot(tat: float, now: float, per_minute: int) -> tuple[float, float]:
    """One GCRA step over the stored theoretical arrival time `tat` (pure).

    Returns `(0.0, new_tat)` when a slot is free now, else `(seconds to wait, tat)`. In any
    window of w seconds at most `burst + w · per_minute / 60` slots are given out.
    """
    interval = 60.0 / per_minute
    tolerance = (burst(per_minute) - 1) * interval
    start = max(tat, now)
    wait = start - tolerance - now
    if wait > _EPSILON:
        return wait, tat
    return 0.0, start + interval
