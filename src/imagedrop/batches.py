"""Closing a batch: once every job is final, one summary to its callback and its subscribers."""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from imagedrop import subscribers
from imagedrop.ledger import Batch, JobState, Ledger, NewDelivery
from imagedrop.payloads import MAX_SUMMARY_ERRORS, BatchSummary

log = structlog.get_logger(__name__)


class BatchCloser:
    """Builds summaries and closes batches exactly once (the ledger arbitrates races)."""

    def __init__(self, ledger: Ledger, *, clock: Callable[[], float] = time.time) -> None:
        self.ledger = ledger
        self.clock = clock

    async def maybe_finish(self, batch_id: str, *, error: str | None = None) -> bool:
        """Close the batch and send its one summary when every job is final."""
        progress = await self.ledger.batch_progress(batch_id)
        if not progress.all_final or progress.finished:
            return False
        batch = await self.ledger.get_batch(batch_id)
        if batch is None:
            return False
        summary = await self.summary(batch, error=error)
        closed = await self.ledger.finish_batch(batch_id, summary,
                                                await self._deliveries(batch, summary))
        if closed:
            log.info("batch_finished", batch_id=batch_id, kind=batch.kind,
                     status=summary.status, total=summary.total_files, failed=summary.failed)
        return closed

    async def summary(self, batch: Batch, *, error: str | None = None) -> BatchSummary:
        """The WXO batch summary (SPEC §4.1) plus the batch id."""
        progress = await self.ledger.batch_progress(batch.id)
        errors = [f"{job.source_key or job.filename}: {job.error}"
                  for job in await self.ledger.list_jobs(
                      batch_id=batch.id, state=JobState.FAILED, limit=MAX_SUMMARY_ERRORS)]
        if error is None and progress.total == 0:
            error = f"no images found in bucket {batch.bucket!r} under {batch.prefix!r}"
        return BatchSummary(
            job_id=batch.id, batch_id=batch.id, total_files=progress.total,
            processed=progress.completed - progress.fallback_local, failed=progress.failed,
            fallback_local=progress.fallback_local,
            duration_seconds=round(max(0.0, self.clock() - batch.created_at), 3),
            output_bucket=batch.output_bucket, output_prefix=batch.output_prefix,
            errors=errors, error=error, estimated_cost_usd=progress.cost_usd,
            budget_failed=progress.budget_failed,
        )

    async def _deliveries(self, batch: Batch, summary: BatchSummary) -> list[NewDelivery]:
        out = []
        if batch.callback_url:
            out.append(NewDelivery(kind="callback", url=batch.callback_url, batch_id=batch.id,
                                   body=summary.to_body(), request_id=batch.request_id,
                                   traceparent=batch.traceparent))
        subs = batch.recipe.subscribers
        if subs:
            disabled = await self.ledger.disabled_endpoints([s.url for s in subs])
            out += subscribers.deliveries_for(
                subscribers.batch_event(batch, summary, now=self.clock()), subs,
                disabled=disabled, batch_id=batch.id, request_id=batch.request_id,
                traceparent=batch.traceparent)
        return out
