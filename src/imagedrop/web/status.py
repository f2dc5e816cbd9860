"""Status views for GET /jobs/{id}: the public shape of a ledger job or folder batch.

Pure mapping from `imagedrop.ledger` records; no I/O.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Literal

from pydantic import Field

from imagedrop.ledger import Batch, BatchProgress, Delivery, DeliveryState, Job, JobKind, JobState
from imagedrop.payloads import BatchSummary, JsonBody
from imagedrop.prices import Usage


class SourceRef(JsonBody):
    """The stored object a job edits."""

    bucket: str = Field(description="Bucket of the input.")
    key: str = Field(description="Key of the input.")
    etag: str | None = Field(description="Version (ETag) of the input that was recorded.")


class ResultInfo(JsonBody):
    """Where a completed job's result is and who made it."""

    bucket: str | None = Field(description="Bucket of the result; null if not stored.")
    key: str | None = Field(description="Key of the result; null if not stored.")
    url: str | None = Field(None, description="Download URL of the result, when known.")
    provider: str | None = Field(description="Provider that edited it (openai or local).")
    model: str | None = Field(description="Model that edited it.")
    mime_type: str | None = Field(None, description="MIME type of the result.")
    fallback_local: bool = Field(False, description="True if the local provider stood in.")
    usage: Usage | None = Field(None, description="Tokens the provider reported for the edit.")
    cost_usd: float | None = Field(
        None, description="What the edit cost in US dollars (usage × the price table; 0 for "
        "a local edit; null when unknown).")


class DeliveryInfo(JsonBody):
    """One callback delivery of a job."""

    id: str = Field(description="Delivery id (also the webhook-id header).")
    kind: str = Field(description="callback (callbackUrl) or webhook (subscriber).")
    event_type: str | None = Field(description="image.completed, image.failed, ... or null.")
    state: DeliveryState = Field(description="Where the delivery is.")
    attempts: int = Field(description="Attempts made so far.")
    last_status: int | None = Field(description="HTTP status of the last attempt, if any.")
    last_error: str | None = Field(description="Error of the last attempt, if any.")


class JobStatus(JsonBody):
    """GET /jobs/{id} for a job: its state, attempts, timings, result and deliveries."""

    id: str = Field(description="Job id.")
    kind: JobKind = Field(description="Which door the job came in by.")
    state: JobState = Field(description="queued, running, held (by a spend budget: "
                            "last_error says which and until when), completed or failed.")
    filename: str = Field(description="Name of the image.")
    batch_id: str | None = Field(description="The batch the job belongs to, if any.")
    attempts: int = Field(description="Attempts started so far.")
    max_attempts: int = Field(description="Attempts allowed before a transient failure is final.")
    created_at: str | None = Field(description="ISO 8601 UTC time the job was recorded.")
    started_at: str | None = Field(description="ISO 8601 UTC time of the latest attempt.")
    finished_at: str | None = Field(description="ISO 8601 UTC time the job ended.")
    duration_seconds: float | None = Field(description="Run time so far (or in total).")
    source: SourceRef | None = Field(description="The stored input, if the job has one.")
    result: ResultInfo | None = Field(description="The result, once completed.")
    error: str | None = Field(description="Why the job failed (final).")
    last_error: str | None = Field(None, description="Error of the latest failed attempt.")
    deliveries: list[DeliveryInfo] = Field(description="Callbacks recorded for the job.")

    @classmethod
    def from_job(cls, job: Job, deliveries: list[Delivery], *, now: float | None = None,
                 result_url: str | None = None) -> JobStatus:
        """The public view of a ledger job; `now` measures a running job's duration."""
        end = job.finished_at or ((time.time() if now is None else now) if job.started_at else None)
        r = job.result
        return cls(
            id=job.id, kind=job.kind, state=job.state, filename=job.filename,
            batch_id=job.batch_id, attempts=job.attempts, max_attempts=job.max_attempts,
            created_at=iso(job.created_at), started_at=iso(job.started_at),
            finished_at=iso(job.finished_at),
            duration_seconds=round(end - job.started_at, 3) if end and job.started_at else None,
            source=SourceRef(bucket=job.source_bucket or "", key=job.source_key,
                             etag=job.source_etag) if job.source_key else None,
            result=ResultInfo(
                bucket=r.bucket or job.output_bucket, key=r.key or job.output_key,
                url=result_url, provider=r.provider, model=r.model, mime_type=r.mime_type,
                fallback_local=r.fallback_local, usage=r.usage, cost_usd=r.cost_usd,
            ) if r is not None else None,
            error=job.error, last_error=job.last_error,
            deliveries=[DeliveryInfo(
                id=d.id, kind=d.kind, event_type=d.event_type, state=d.state,
                attempts=d.attempts, last_status=d.last_status, last_error=d.last_error,
            ) for d in deliveries],
        )


class BatchCounts(JsonBody):
    """How many of a batch's jobs are where."""

    total: int = Field(description="Jobs recorded so far.")
    queued: int = Field(description="Waiting to run.")
    running: int = Field(description="Being edited.")
    completed: int = Field(description="Done (fallback_local included).")
    failed: int = Field(description="Failed for good.")
    fallback_local: int = Field(description="Completed by the local provider.")
    held: int = Field(0, description="Held by a spend budget until its next UTC day.")
    cost_usd: float = Field(0.0, description="What the completed edits cost, US dollars.")


class BatchStatus(JsonBody):
    """GET /jobs/{id} for a batch id: where the folder batch is."""

    id: str = Field(description="Batch id.")
    kind: Literal["batch"] = Field("batch", description="Always batch.")
    state: Literal["listing", "running", "finished"] = Field(description="Where the batch is.")
    bucket: str = Field(description="Bucket read.")
    prefix: str = Field(description="Folder read.")
    output_bucket: str = Field(description="Bucket results go to.")
    output_prefix: str = Field(description="Folder results go to.")
    created_at: str | None = Field(description="ISO 8601 UTC time the batch was recorded.")
    finished_at: str | None = Field(description="ISO 8601 UTC time the batch ended.")
    progress: BatchCounts = Field(description="Counts over the batch's jobs.")
    summary: BatchSummary | None = Field(description="The summary sent, once finished.")

    @classmethod
    def from_batch(cls, batch: Batch, progress: BatchProgress) -> BatchStatus:
        """The public view of a ledger batch."""
        state: Literal["listing", "running", "finished"] = (
            "finished" if batch.finished_at else "running" if batch.listing_done else "listing")
        return cls(
            id=batch.id, state=state, bucket=batch.bucket, prefix=batch.prefix,
            output_bucket=batch.output_bucket, output_prefix=batch.output_prefix,
            created_at=iso(batch.created_at), finished_at=iso(batch.finished_at),
            progress=BatchCounts(
                total=progress.total, queued=progress.queued, running=progress.running,
                completed=progress.completed, failed=progress.failed,
                fallback_local=progress.fallback_local, held=progress.held,
                cost_usd=progress.cost_usd),
            summary=batch.summary,
        )


def iso(ts: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC with milliseconds (`2026-01-02T03:04:05.678Z`)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")
