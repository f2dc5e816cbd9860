"""Self-healing folders: images that failed because their folder's manifest was broken are
queued again, once, when a new version of that manifest arrives.

Only those: an image that failed for any other reason stays failed (replay is for that).
"""

from __future__ import annotations

from dataclasses import replace

import structlog

from imagedrop.drops import DropPlanner, Skip
from imagedrop.ledger import DropItem, Ledger

log = structlog.get_logger(__name__)


class Healer:
    """Requeues what a broken manifest skipped, under the manifest's new version."""

    def __init__(self, planner: DropPlanner, ledger: Ledger, *, page_size: int = 200) -> None:
        self.planner = planner
        self.ledger = ledger
        self.page_size = page_size

    async def manifest_written(self, bucket: str, key: str, etag: str) -> int:
        """The manifest `bucket/key` is now version `etag`: queue again the images an earlier,
        broken version of it failed; returns how many new jobs were recorded."""
        healed = 0
        while blocked := await self.ledger.blocked_jobs(bucket, key, etag, self.page_size):
            items: list[DropItem] = []
            for job in blocked:
                plan = await self.planner.plan(bucket, job.source_key or "",
                                               job.source_etag or "", None)
                if not isinstance(plan, Skip) and plan.job.blocked_by is not None:
                    return healed  # this version is broken too: its own failures will say so
                if isinstance(plan, Skip):
                    continue  # the new version does not take it: nothing to heal
                # Once per manifest revision: its own job next to the failed one, which stays.
                revision = plan.job.version_key.rsplit("\x1f", 1)[-1] if (
                    plan.job.version_key) else etag
                items.append(replace(plan, job=replace(
                    plan.job, dedupe_key=f"{plan.job.dedupe_key}\x1fheal\x1f{revision}")))
            recorded = await self.ledger.record_drops(items)
            await self.ledger.unblock([job.id for job in blocked])
            fresh = sum(1 for _, new in recorded if new)
            healed += fresh
            log.info("folder_healed", bucket=bucket, manifest=key, requeued=fresh)
        return healed
