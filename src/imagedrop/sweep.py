"""The sweep: find object versions in manifest folders that have no job (missed notifications)
and record them, page by page, never holding a folder's listing in memory.

On the embedded local folder the sweep runs about every second, so dropping a file is enough.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from imagedrop.drops import DropPlanner, Skip
from imagedrop.healing import Healer
from imagedrop.ledger import DropItem, Ledger
from imagedrop.periodic import Periodic
from imagedrop.storage import ObjectStore

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class SweepStats:
    """What one sweep saw."""

    listed: int = 0
    recorded: int = 0  # new jobs


class Sweeper(Periodic):
    """Lists the watched buckets and records a job for every unseen matching object version."""

    name = "sweep"

    def __init__(self, storage: ObjectStore, planner: DropPlanner, ledger: Ledger, *,
                 buckets: Sequence[str], interval: float, page_size: int = 1000,
                 remember: int = 200_000, quiet: float | None = None,
                 clock: Callable[[], float] = time.time, owner: str | None = None,
                 healer: Healer | None = None) -> None:
        super().__init__(interval)
        # With an owner, a bucket is swept only by the replica holding its sweep lease; a
        # sweeper that dies hands it on at once (the reaper), one that stalls never.
        self.owner = owner
        self.lease_seconds = max(60.0, 5 * interval)
        # Manifest versions seen: a new one (or the first after a start) may heal its folder.
        self.healer = healer
        self._manifests: dict[tuple[str, str], str] = {}
        self.storage = storage
        self.planner = planner
        self.ledger = ledger
        self.buckets = list(buckets)
        self.page_size = page_size
        # Versions already planned: the next sweep skips them without asking the ledger.
        self._seen: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        self._remember_max = remember
        # A file still being copied into a local folder is not an object yet: wait until it has
        # not changed for a moment. Object stores publish objects whole, so no wait there.
        self.quiet = (1.0 if storage.name == "local" else 0.0) if quiet is None else quiet
        self.clock = clock

    async def tick(self) -> SweepStats:
        return await self.sweep_once()

    async def sweep_once(self) -> SweepStats:
        """One pass over every watched bucket."""
        stats = SweepStats()
        for bucket in self.buckets:
            if self.owner is not None and not await self.ledger.claim_sweep(
                    bucket, self.owner, self.lease_seconds):
                continue  # another replica sweeps it
            async for page in self.storage.list(bucket, "", page_size=self.page_size):
                stats.listed += len(page)
                settled_before = self.clock() - self.quiet
                fresh = [info for info in page if not info.is_output
                         and (info.bucket, info.key, info.etag) not in self._seen
                         and (not self.quiet or (info.last_modified or 0) <= settled_before)]
                # A version with any job (even of an older manifest revision) is not "missed":
                # re-editing existing images under a new recipe is what /trigger is for.
                known = await self.ledger.versions_with_jobs(
                    bucket, [(info.key, info.etag) for info in fresh])
                items: list[DropItem] = []
                for info in fresh:
                    if (info.key, info.etag) in known:
                        self._remember(info.bucket, info.key, info.etag)
                        continue
                    plan = await self.planner.plan(info.bucket, info.key, info.etag, info.size)
                    if not isinstance(plan, Skip):
                        items.append(plan)
                    elif plan.manifest_etag:
                        await self._manifest_seen(bucket, info.key, plan.manifest_etag)
                if items:
                    recorded = await self.ledger.record_drops(items)
                    stats.recorded += sum(1 for _, new in recorded if new)
                    for item in items:
                        job = item.job
                        self._remember(bucket, job.source_key or "", job.source_etag or "")
        if stats.recorded:
            log.info("sweep_recorded", jobs=stats.recorded, listed=stats.listed)
        return stats

    async def _manifest_seen(self, bucket: str, key: str, etag: str) -> None:
        if self.healer is None or self._manifests.get((bucket, key)) == etag:
            return
        await self.healer.manifest_written(bucket, key, etag)
        self._manifests[(bucket, key)] = etag  # after healing: a failed heal is tried again

    async def stop(self) -> None:
        await super().stop()
        if self.owner is not None:  # another replica sweeps from its next tick on
            await self.ledger.release_sweeps(self.owner)

    def _remember(self, bucket: str, key: str, etag: str) -> None:
        """Skip this version from now on (skips are not remembered: a manifest may appear)."""
        version = (bucket, key, etag)
        self._seen[version] = None
        self._seen.move_to_end(version)
        if len(self._seen) > self._remember_max:
            self._seen.popitem(last=False)
