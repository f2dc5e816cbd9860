"""Periodic duties: close drop batches that have settled, close any batch whose closer died
between its last job's outcome and its summary (so every summary is sent exactly once), and
queue again the jobs a budget held once its next day has begun; delete upload files that a
crash left without their job."""

from __future__ import annotations

import time

import structlog

from imagedrop.batches import BatchCloser
from imagedrop.ledger import Ledger
from imagedrop.periodic import Periodic

log = structlog.get_logger(__name__)
_TIDY_EVERY = 600.0  # upload files a crash left without their job (see `Ledger.tidy_spool`)


class Housekeeper(Periodic):
    """Closes settled and orphaned batches; cheap enough to run every poll interval."""

    name = "housekeeping"

    def __init__(self, ledger: Ledger, closer: BatchCloser, *, interval: float,
                 reconcile_every: float = 30.0) -> None:
        super().__init__(interval)
        self.ledger = ledger
        self.closer = closer
        self.reconcile_every = reconcile_every
        self._last_reconcile = float("-inf")
        self._last_tidy = float("-inf")

    async def tick(self) -> int:
        """One round; returns how many batches it closed."""
        closed = 0
        for batch_id in await self.ledger.close_settled_batches():
            closed += await self._finish(batch_id)
        now = time.monotonic()
        if now - self._last_reconcile >= self.reconcile_every:
            self._last_reconcile = now
            released = await self.ledger.release_held()
            if released:
                log.info("held_jobs_released", jobs=released)
            for batch_id in await self.ledger.finishable_batches():
                if await self._finish(batch_id):
                    closed += 1
                    log.info("batch_closed_late", batch_id=batch_id)
        if now - self._last_tidy >= _TIDY_EVERY:
            self._last_tidy = now
            removed = await self.ledger.tidy_spool()
            if removed:
                log.info("upload_files_removed", files=removed)
        return closed

    async def _finish(self, batch_id: str) -> bool:
        """One batch; its failure is logged and does not hold up the others."""
        try:
            return await self.closer.maybe_finish(batch_id)
        except Exception:
            log.exception("batch_close_failed", batch_id=batch_id)
            return False
