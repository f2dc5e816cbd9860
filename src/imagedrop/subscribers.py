"""Subscriber events (SPEC §4.4): the `{type, timestamp, data}` bodies and their deliveries.

The bodies are the `payloads` models, the one definition /openapi.json documents. This module
performs no I/O: the pipeline gives it a job's outcome and the subscribers the manifest listed,
and records the deliveries it returns in the same transaction as the outcome.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime

from imagedrop.errors import BudgetReached as BudgetReachedError
from imagedrop.ledger import Batch, Job, NewDelivery
from imagedrop.manifests import Subscriber
from imagedrop.payloads import (
    BatchCompletedEvent,
    BatchEventData,
    BatchSummary,
    BudgetEventData,
    BudgetReachedEvent,
    ImageCompletedEvent,
    ImageEventData,
    ImageEventResult,
    ImageEventSource,
    ImageFailedEvent,
)
from imagedrop.prices import utc_day
from imagedrop.recipes import EVENT_TYPES, JobResult, SubscriberRef

IMAGE_COMPLETED, IMAGE_FAILED, BATCH_COMPLETED, BUDGET_REACHED = EVENT_TYPES
Event = ImageCompletedEvent | ImageFailedEvent | BatchCompletedEvent | BudgetReachedEvent


def subscriber_refs(subscribers: Iterable[Subscriber]) -> tuple[SubscriberRef, ...]:
    """What a job's recipe keeps of its manifest's subscribers: url, events, secret env name."""
    return tuple(SubscriberRef(url=str(sub.url), events=tuple(sub.events or EVENT_TYPES),
                               secret_ref=sub.secret_env) for sub in subscribers)


def timestamp(now: float) -> str:
    """An event's time: ISO 8601 UTC, ending Z."""
    return datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z")


def image_data(job: Job, *, result: JobResult | None = None, error: str | None = None,
               result_url: str | None = None) -> ImageEventData:
    """The `data` of image.completed (with `result`) or image.failed (with `error`)."""
    return ImageEventData(
        job_id=job.id, batch_id=job.batch_id, filename=job.filename,
        source=ImageEventSource(bucket=job.source_bucket, key=job.source_key,
                                etag=job.source_etag),
        prompt=job.recipe.prompt or None, manifest=job.recipe.manifest,
        result=None if result is None else ImageEventResult(
            bucket=result.bucket, key=result.key, url=result_url, mime_type=result.mime_type,
            provider=result.provider, model=result.model,
            fallback_local=result.fallback_local, reused=result.reused),
        error=error,
    )


def image_event(data: ImageEventData, *, now: float) -> Event:
    """image.completed when `data` carries a result, else image.failed."""
    if data.result is not None:
        return ImageCompletedEvent(timestamp=timestamp(now), data=data)
    return ImageFailedEvent(timestamp=timestamp(now), data=data)


def batch_event(batch: Batch, summary: BatchSummary, *, now: float) -> BatchCompletedEvent:
    """batch.completed: the WXO-shaped summary plus where the batch looked."""
    data = BatchEventData(**{**summary.model_dump(), "batch_id": batch.id, "kind": batch.kind,
                             "bucket": batch.bucket, "prefix": batch.prefix})
    return BatchCompletedEvent(timestamp=timestamp(now), data=data)


def budget_event(job: Job, exc: BudgetReachedError, *, now: float) -> BudgetReachedEvent:
    """budget.reached: the budget that kept `job` from the provider."""
    return BudgetReachedEvent(timestamp=timestamp(now), data=BudgetEventData(
        scope=exc.scope, day=utc_day(now), reason=str(exc),
        over="fail" if exc.over == "fail" else "hold",
        resumes_at=timestamp(exc.until) if exc.over == "hold" else None,
        manifest=job.recipe.manifest if exc.scope.startswith("folder:") else None))


def deliveries_for(
    event: Event, subscribers: Sequence[SubscriberRef], *,
    disabled: Mapping[str, str] | None = None, job_id: str | None = None,
    batch_id: str | None = None, request_id: str | None = None, traceparent: str | None = None,
) -> list[NewDelivery]:
    """One signed delivery per subscriber that wants this event and is not disabled."""
    body = event.to_body()
    disabled = disabled or {}
    return [
        NewDelivery(kind="webhook", url=sub.url, body=body, event_type=event.type,
                    job_id=job_id, batch_id=batch_id, secret_ref=sub.secret_ref,
                    request_id=request_id, traceparent=traceparent)
        for sub in subscribers
        if event.type in sub.events and sub.url not in disabled
    ]
