"""Taking over a dead process's work as soon as its death shows, and never a live one's.

Each process registers as a lease owner and holds a liveness lock for its lifetime (see
`ledger.tx_owners`); the reaper looks for registered owners whose lock is gone and expires
their leases, so their jobs, callbacks and listings are claimed at once instead of when the
leases run out.
"""

from __future__ import annotations

import structlog

from imagedrop.ledger import Ledger
from imagedrop.periodic import Periodic

log = structlog.get_logger(__name__)


class Reaper(Periodic):
    """Takes over the work of owners seen dead. Where liveness locks can lapse for a moment (a
    PostgreSQL session reconnecting), only of owners seen dead on two looks in a row
    (`interval` apart); a lock file held by a process lapses only with it."""

    name = "reaper"

    def __init__(self, ledger: Ledger, owner: str, *, interval: float) -> None:
        super().__init__(interval)
        self.ledger = ledger
        self.owner = owner
        self._suspects: set[str] = set()

    async def tick(self) -> int:
        """One look; returns how many leases it freed."""
        dead = set(await self.ledger.dead_owners(self.owner))
        confirmed = sorted(dead if self.ledger.steady_liveness else dead & self._suspects)
        self._suspects = dead - set(confirmed)
        if not confirmed:
            return 0
        freed = await self.ledger.take_over(confirmed)
        log.warning("owners_taken_over", owners=confirmed, leases=freed)
        return freed
