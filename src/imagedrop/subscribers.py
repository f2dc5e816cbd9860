"""Subscriber events (SPEC §4.4): the `{type, timestamp, data}` bodies and their deliveries.

This module performs no I/O: the pipeline gives it a job's outcome and the subscribers the
manifest listed, and records the deliveries it returns in the same transaction as the outcome.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from imagedrop.ledger import Batch, Job, NewDelivery

IMAGE_COMPLETED = "image.completed"
IMAGE_FAILED = "image.failed"
BATCH_COMPLETED = "batch.completed"
EVENT_TYPES = (IMAGE_COMPLETED, IMAGE_FAILED, BATCH_COMPLETED)


def subscriber_refs(subscribers: Sequence[Any]) -> list[dict[str, Any]]:
    """What a job's recipe keeps of its manifest's subscribers: url, events, secret env name."""
    refs = []
    for sub in subscribers:
        events = list(getattr(sub, "events", None) or EVENT_TYPES)
        secret = getattr(sub, "secret_env", None)
        refs.append({"url": str(sub.url), "events": events, "secret_ref": secret})
    return refs


def event_body(event_type: str, data: dict[str, Any], *, now: float) -> bytes:
    """A Standard Webhooks payload: `{type, timestamp, data}`."""
    stamp = datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z")
    return json.dumps({"type": event_type, "timestamp": stamp, "data": data},
                      separators=(",", ":"), ensure_ascii=False).encode()


def image_data(job: Job, *, result: Mapping[str, Any] | None = None, error: str | None = None,
               result_url: str | None = None) -> dict[str, Any]:
    """The `data` of image.completed / image.failed."""
    data: dict[str, Any] = {
        "job_id": job.id, "batch_id": job.batch_id, "filename": job.filename,
        "source": {"bucket": job.source_bucket, "key": job.source_key, "etag": job.source_etag},
        "prompt": job.recipe.get("prompt"),
    }
    if job.recipe.get("manifest"):
        data["manifest"] = job.recipe["manifest"]
    if result is not None:
        data["result"] = {
            "bucket": result.get("bucket"), "key": result.get("key"), "url": result_url,
            "mime_type": result.get("mime_type"), "provider": result.get("provider"),
            "model": result.get("model"), "fallback_local": bool(result.get("fallback_local")),
            "reused": bool(result.get("reused")),
        }
    if error is not None:
        data["error"] = error
    return data


def batch_data(batch: Batch, summary: Mapping[str, Any]) -> dict[str, Any]:
    """The `data` of batch.completed: the WXO-shaped summary plus where the batch looked."""
    return {**summary, "batch_id": batch.id, "kind": batch.kind, "bucket": batch.bucket,
            "prefix": batch.prefix}


def deliveries_for(
    event_type: str, data: dict[str, Any], subscribers: Sequence[Mapping[str, Any]], *,
    now: float, disabled: Mapping[str, str] | None = None, job_id: str | None = None,
    batch_id: str | None = None,
) -> list[NewDelivery]:
    """One signed delivery per subscriber that wants this event and is not disabled."""
    body = event_body(event_type, data, now=now)
    disabled = disabled or {}
    return [
        NewDelivery(kind="webhook", url=sub["url"], body=body, event_type=event_type,
                    job_id=job_id, batch_id=batch_id, secret_ref=sub.get("secret_ref"))
        for sub in subscribers
        if event_type in sub.get("events", EVENT_TYPES) and sub["url"] not in disabled
    ]
