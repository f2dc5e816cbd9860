"""Folder batches: list a bucket prefix page by page into jobs, resumably, under a lease.

The cursor (last key listed) is stored with each page's jobs in one transaction, so a lister
that dies is replaced by one that continues where it stopped; a folder is never held in memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import posixpath
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog

from imagedrop.errors import InputError, PermanentError, TransientError
from imagedrop.ledger import Batch, JobKind, Ledger, NewJob
from imagedrop.manifests import MANIFEST_NAMES
from imagedrop.manifests.naming import result_key
from imagedrop.pipeline import Pipeline
from imagedrop.storage import ObjectInfo, ObjectStore

log = structlog.get_logger(__name__)

#: Names we try to edit; the bytes are still sniffed before any edit.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})


def is_candidate(info: ObjectInfo, *, outputs: Sequence[tuple[str, str]]) -> bool:
    """Whether a listed object should become a job (pure). `outputs` are (bucket, prefix)
    locations imagedrop writes to: nothing there is ever an input."""
    name = posixpath.basename(info.key)
    if not name or info.key.endswith("/") or name in MANIFEST_NAMES or name.startswith("."):
        return False
    if posixpath.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
        return False
    for bucket, prefix in outputs:
        if info.bucket == bucket and prefix and info.key.startswith(prefix):
            return False  # our own results (COS listings carry no metadata marker)
    return not info.is_output


def jobs_for_page(batch: Batch, page: list[ObjectInfo], *, first_seq: int,
                  max_attempts: int, outputs: Sequence[tuple[str, str]] = ()) -> list[NewJob]:
    """The jobs one listed page contributes to a WXO folder batch (pure)."""
    jobs: list[NewJob] = []
    fmt = batch.recipe.output_format or "png"
    recipe_hash = hashlib.sha256(json.dumps(batch.recipe.to_dict(), sort_keys=True).encode()
                                 ).hexdigest()
    where = [(batch.output_bucket, batch.output_prefix), *outputs]
    for info in page:
        if not is_candidate(info, outputs=where):
            continue
        relative = info.key[len(batch.prefix):] if info.key.startswith(batch.prefix) else info.key
        jobs.append(NewJob(
            kind=JobKind.BATCH, filename=posixpath.basename(info.key), recipe=batch.recipe,
            dedupe_key=f"batch:{batch.id}:{info.key}", batch_id=batch.id,
            version_key=f"wxo\x1f{info.bucket}\x1f{info.key}\x1f{info.etag}\x1f{recipe_hash}",
            seq=first_seq + len(jobs), source_bucket=info.bucket, source_key=info.key,
            source_etag=info.etag, output_bucket=batch.output_bucket,
            output_key=result_key(batch.output_prefix, relative.lstrip("/"), fmt),
            max_attempts=max_attempts, request_id=batch.request_id,
            traceparent=batch.traceparent,
        ))
    return jobs


#: Turns a listed page into a batch's jobs: (batch, page, first seq) → jobs.
PagePlanner = Callable[[Batch, list[ObjectInfo], int], Awaitable[list[NewJob]]]


class Lister:
    """Claims unlisted batches and turns their folders into jobs."""

    name = "lister"

    def __init__(self, ledger: Ledger, storage: ObjectStore, pipeline: Pipeline, *, owner: str,
                 lease_seconds: float, poll_interval: float, max_attempts: int,
                 outputs: Sequence[tuple[str, str]] = (),
                 planners: dict[str, PagePlanner] | None = None, page_size: int = 1000) -> None:
        self.outputs = list(outputs)
        self.planners = dict(planners or {})
        self.ledger = ledger
        self.storage = storage
        self.pipeline = pipeline
        self.owner = owner
        self.lease = lease_seconds
        self.poll = poll_interval
        self.max_attempts = max_attempts
        self.page_size = page_size
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        """List batches until `stop()`; then hand back what is unfinished."""
        try:
            await self._run()
        finally:
            try:
                await self.ledger.release_listings(self.owner)
            except Exception:  # the leases lapse on their own
                log.exception("listing_release_failed")

    async def _run(self) -> None:
        while not self._stopping.is_set():
            # Listen for the hint before looking: a batch recorded between an empty claim and
            # the wait still wakes us (the hint is edge-triggered).
            hint = self.ledger.wait_for_work(self.poll, "listings")
            try:
                batch = await self.ledger.claim_listing(self.owner, self.lease)
            except Exception:
                log.exception("listing_claim_failed")
                batch = None
            except BaseException:  # cancelled: the hint goes with us
                hint.cancel()
                raise
            if batch is None:
                await self._wait(self.poll, hint=hint)
                continue
            hint.cancel()
            try:
                await self.list_batch(batch)
            except Exception:  # the lease lapses and the listing resumes from its cursor
                log.exception("listing_crashed", batch_id=batch.id)
                await self._wait(self.poll)

    async def list_batch(self, batch: Batch) -> None:
        """List one batch from its cursor to the end, then close it if nothing is left to do."""
        with structlog.contextvars.bound_contextvars(batch_id=batch.id, bucket=batch.bucket,
                                                     prefix=batch.prefix):
            cursor = batch.listing_cursor
            seq = (await self.ledger.batch_progress(batch.id)).total
            try:
                async for page in self.storage.list(batch.bucket, batch.prefix,
                                                    page_size=self.page_size, start_after=cursor):
                    if self._stopping.is_set():
                        return  # the lease lapses; whoever lists next resumes at the cursor
                    jobs = await self._plan(batch, page, seq)
                    seq += len(jobs)
                    cursor = page[-1].key if page else cursor
                    await self.ledger.add_batch_jobs(batch.id, self.owner, jobs, cursor, False)
            except TransientError as exc:
                log.warning("listing_interrupted", error=str(exc))
                await self._wait(min(self.lease, 5.0))
                return  # lease expires; listing resumes from the cursor
            except (PermanentError, InputError) as exc:  # e.g. no such bucket: the batch
                log.warning("listing_failed", error=str(exc))  # fails with the reason
                await self.ledger.add_batch_jobs(batch.id, self.owner, [], cursor, True)
                await self.pipeline.batches.maybe_finish(
                    batch.id, error=f"could not list the folder: {exc}")
                return
            await self.ledger.add_batch_jobs(batch.id, self.owner, [], cursor, True)
            log.info("listing_done", jobs=seq)
            await self.pipeline.batches.maybe_finish(batch.id)

    async def _plan(self, batch: Batch, page: list[ObjectInfo], seq: int) -> list[NewJob]:
        planner = self.planners.get(batch.kind)
        if planner is not None:
            return await planner(batch, page, seq)
        return jobs_for_page(batch, page, first_seq=seq, max_attempts=self.max_attempts,
                             outputs=self.outputs)

    async def _wait(self, timeout: float, *, hint: asyncio.Future[None] | None = None) -> None:
        waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._stopping.wait())]
        if hint is not None:
            waiters.append(hint)
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def stop(self) -> None:
        """Stop after the current page."""
        self._stopping.set()
