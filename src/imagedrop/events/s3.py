"""S3-family `Records[]` notifications: AWS S3, MinIO and Ceph RGW, plus the S3 test event.

This module performs no I/O. Key encoding differs by `eventSource`:
- aws:s3 form-URL-encodes keys ("red flower.jpg" arrives as "red+flower.jpg"; AWS userguide
  notification-content-structure); MinIO escapes them with Go's url.QueryEscape (its webhook
  target, internal/event/target/webhook.go, QueryUnescapes `S3.Object.Key`); moto uses
  quote_plus. `unquote_plus` undoes all three.
- ceph:s3 sends the raw object name: rgw_notify.cc sets `object_key = obj->get_name()` with
  no encoding (ceph/ceph src/rgw), and suitenumerique/meet PR #1455 reports raw `/` from
  Ceph RGW. Decoding it would turn a real `+` into a space, so Ceph keys are kept as sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_plus

from imagedrop.events._common import (
    classify,
    dig,
    json_type,
    opt_str,
    parse_size,
    require_str,
)
from imagedrop.events.model import EventError, ObjectEvent, ParsedNotification
from imagedrop.storage import normalise_etag

_SOURCES = {"aws:s3": "aws-s3", "minio:s3": "minio", "ceph:s3": "ceph"}
#: Producers whose record keys are the plain object name (see the module docstring).
_RAW_KEY_SOURCES = frozenset({"ceph:s3"})


def is_records(doc: Mapping[str, Any]) -> bool:
    """Whether a JSON object is an S3-style notification (it has a `Records` member)."""
    return "Records" in doc


def is_record(doc: Mapping[str, Any]) -> bool:
    """Whether a JSON object is one S3 event record (as the CloudEvents S3 adapter sends)."""
    return "eventName" in doc and isinstance(doc.get("s3"), Mapping)


def is_test_event(doc: Mapping[str, Any]) -> bool:
    """Whether a JSON object is the `s3:TestEvent` S3 posts when notifications are configured."""
    return doc.get("Event") == "s3:TestEvent"


def test_event(doc: Mapping[str, Any]) -> ParsedNotification:
    """The S3 test event, acknowledged and ignored."""
    bucket = opt_str(doc.get("Bucket")) or "?"
    return ParsedNotification(ignored=[(
        f"s3:TestEvent for bucket {bucket}",
        "S3 sends this test message when a notification configuration is saved; nothing to do",
    )])


def parse_records(doc: Mapping[str, Any], *, producer: str | None = None) -> ParsedNotification:
    """Every record of a `{"Records": [...]}` document; `producer` overrides `eventSource`.

    An empty `Records` list is valid (nothing to do). Records are numbered from 1 in errors.
    """
    records = doc.get("Records")
    if not isinstance(records, list):
        raise EventError(f"Records is {json_type(records)}, not an array")
    return ParsedNotification(
        events=[parse_record(record, number, producer=producer)
                for number, record in enumerate(records, start=1)],
    )


def parse_record(record: Any, number: int = 1, *, producer: str | None = None) -> ObjectEvent:
    """One S3 event record; raises EventError naming the record and the missing field."""
    where = f"S3 record {number}"
    if not isinstance(record, Mapping):
        raise EventError(f"{where} is {json_type(record)}, not an object")
    event_name = require_str(record, "eventName", where)
    bucket = require_str(record, "s3.bucket.name", where)
    raw_key = require_str(record, "s3.object.key", where)
    source = opt_str(record.get("eventSource"))
    obj = dig(record, "s3.object")
    return ObjectEvent(
        bucket=bucket,
        key=raw_key if source in _RAW_KEY_SOURCES else unquote_plus(raw_key),
        # "eTag" per AWS; some Ceph releases write "etag".
        etag=normalise_etag(opt_str(obj.get("eTag")) or opt_str(obj.get("etag"))),
        size=parse_size(obj.get("size")),  # Ceph sends a string; deletes send none
        kind=classify(event_name),
        producer=producer or _SOURCES.get(source or "", "s3-compatible"),
        raw_type=event_name,
        # Ceph has its own eventId (often ""); AWS and MinIO only have the request id.
        event_id=opt_str(record.get("eventId"))
        or opt_str(dig(record, "responseElements.x-amz-request-id")),
        version_id=opt_str(obj.get("versionId")),
        sequencer=opt_str(obj.get("sequencer")),
        event_time=opt_str(record.get("eventTime")),
    )
