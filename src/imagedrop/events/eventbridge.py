"""Amazon EventBridge events from S3 (`source: aws.s3`, `detail-type: Object Created`, ...).

This module performs no I/O. Keys here are NOT URL-decoded: unlike `Records[]`, the
EventBridge format carries the key as is. Sources: the AWS userguide page "EventBridge event
message structure" (ev-events) never mentions encoding (contrast notification-content-structure,
which says the key "is URL encoded"); a captured real event (gist vincentclaes/7a5eb53a…,
2023-08-09) shows `"key": "raw/health-check/2023-08-08T14:03:40.532432.zip"` with a literal
`:`, which a `Records[]` key would carry as `%3A`; moto's `_send_event_bridge_message` sends
`key.name` raw while its Records path applies quote_plus.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from imagedrop.events._common import classify, dig, opt_str, parse_size, require_str
from imagedrop.events.model import EventError, ObjectEvent, ParsedNotification
from imagedrop.storage import normalise_etag


def is_event(doc: Mapping[str, Any]) -> bool:
    """Whether a JSON object is an EventBridge event envelope."""
    return "detail-type" in doc and "source" in doc


def is_detail(doc: Mapping[str, Any]) -> bool:
    """Whether a JSON object is a bare S3 EventBridge `detail` (bucket and object objects)."""
    return isinstance(doc.get("bucket"), Mapping) and isinstance(doc.get("object"), Mapping)


def parse_event(doc: Mapping[str, Any], *, producer: str = "eventbridge") -> ParsedNotification:
    """An EventBridge event; events from other sources are ignored, not refused."""
    detail_type = require_str(doc, "detail-type", "EventBridge event")
    source = opt_str(doc.get("source")) or "?"
    if source != "aws.s3":
        return ParsedNotification(ignored=[(
            f"EventBridge {detail_type} from {source}", "not an S3 event (source is not aws.s3)",
        )])
    detail = doc.get("detail")
    if not isinstance(detail, Mapping):
        raise EventError("EventBridge event has no detail object")
    event = parse_detail(detail, raw_type=detail_type, producer=producer,
                         event_id=opt_str(doc.get("id")), event_time=opt_str(doc.get("time")))
    return ParsedNotification(events=[event])


def parse_detail(
    detail: Mapping[str, Any],
    *,
    raw_type: str,
    producer: str,
    event_id: str | None = None,
    event_time: str | None = None,
) -> ObjectEvent:
    """The object an S3 EventBridge `detail` describes; `raw_type` decides the kind."""
    where = "EventBridge detail"
    bucket = require_str(detail, "bucket.name", where)
    key = require_str(detail, "object.key", where)
    obj = dig(detail, "object")
    return ObjectEvent(
        bucket=bucket,
        key=key,  # not URL-encoded in this format: see the module docstring
        # AWS spells it "etag"; moto's EventBridge messages say "eTag".
        etag=normalise_etag(opt_str(obj.get("etag")) or opt_str(obj.get("eTag"))),
        size=parse_size(obj.get("size")),
        kind=classify(raw_type),
        producer=producer,
        raw_type=raw_type,
        event_id=event_id,
        version_id=opt_str(obj.get("version-id")),
        sequencer=opt_str(obj.get("sequencer")),
        event_time=event_time,
    )
