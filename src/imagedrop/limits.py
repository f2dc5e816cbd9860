"""Provider limits shared by every replica: a global edit rate and the provider pause.

`gcra.take_slot` is the pure rule the ledger applies in its own transaction;
`EditLimiter` and `PauseGate` are what the editor calls, each keeping ledger traffic small.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from imagedrop.ledger import Ledger

log = structlog.get_logger(__name__)

BILLING = "billing_hard_limit_reached"
QUOTA = "insufficient_quota"


def pause_code(reason: str) -> str:
    """The provider error code a pause reason starts with (`code: message`)."""
    return reason.split(":", 1)[0].strip()


class EditLimiter:
    """Waits for a slot of the global edit rate before each provider call.

    One coroutine per process asks the ledger at a time (the others queue on a local lock),
    so replicas × 1, not replicas × concurrency, askers poll the shared row.
    """

    def __init__(self, ledger: Ledger | None, key: str, per_minute: int, *,
                 max_sleep: float = 5.0) -> None:
        self.ledger = ledger
        self.key = key
        self.per_minute = per_minute
        self.max_sleep = max_sleep  # re-ask at least this often: a sleep is never unbounded
        self._lock = asyncio.Lock()

    @property
    def enabled(self) -> bool:
        return self.ledger is not None and self.per_minute > 0

    async def acquire(self) -> float:
        """Return once a slot is taken; the seconds spent waiting. Cancellable while asleep."""
        if not self.enabled:
            return 0.0
        assert self.ledger is not None
        waited = 0.0
        async with self._lock:
            while True:
                wait = await self.ledger.take_edit_slot(self.key, self.per_minute)
                if wait <= 0:
                    return waited
                nap = min(wait, self.max_sleep)
                await asyncio.sleep(nap)
                waited += nap


class PauseGate:
    """The provider pause as every replica sees it: read from the ledger at most once per
    `ttl` seconds (not on every edit), written through at once by the replica that hit it."""

    def __init__(self, ledger: Ledger | None, key: str, *, ttl: float = 1.5,
                 clock: Callable[[], float] = time.time) -> None:
        self.ledger = ledger
        self.key = key
        self.ttl = ttl
        self._clock = clock
        self._known: tuple[float, str] | None = None
        self._checked_at = float("-inf")
        self._lock = asyncio.Lock()

    def cached(self) -> tuple[float, str] | None:
        """The pause this process knows to be in force, without asking the ledger."""
        if self._known is not None and self._known[0] > self._clock():
            return self._known
        return None

    async def current(self) -> tuple[float, str] | None:
        """The pause in force (until, reason), or None."""
        if self.ledger is None or self._clock() - self._checked_at < self.ttl:
            return self.cached()
        async with self._lock:  # concurrent edits share one read
            if self._clock() - self._checked_at >= self.ttl:
                self._known = await self.ledger.provider_pause(self.key)
                self._checked_at = self._clock()
        return self.cached()

    async def pause(self, seconds: float, reason: str) -> None:
        """Pause the provider for every replica; this process knows at once."""
        until = self._clock() + seconds
        if self._known is None or until > self._known[0]:
            self._known = (until, reason)
        self._checked_at = self._clock()
        if self.ledger is None:
            return
        try:
            await self.ledger.pause_provider(self.key, until, reason)
        except Exception:  # the edit's own outcome matters more: other replicas find out later
            log.warning("provider_pause_not_shared", exc_info=True)
