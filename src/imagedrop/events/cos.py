"""IBM COS notification bodies, as a Code Engine COS subscription delivers them.

This module performs no I/O. Body `{bucket, endpoint, key, operation, notification{bucket_name,
object_name, object_etag, object_length (a string), event_type, request_id, request_time, ...}}`
with CloudEvents attributes beside it (ibm-cloud-docs/codeengine subscription-cos.md). The key
is the plain object name, not URL-encoded: the docs call `key` "the name of the object in the
bucket", and a captured delivery has `key` == `notification.object_name` == `ce-subject`. So
it is never decoded here (decoding would corrupt names containing `+` or `%`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from imagedrop.events._common import classify, json_type, opt_str, parse_size
from imagedrop.events.model import EventError, ObjectEvent, ParsedNotification
from imagedrop.storage import normalise_etag

#: `ce-source` is https://cloud.ibm.com/catalog/services/cloud-object-storage/<bucket>.
_SOURCE_PREFIX = "cloud-object-storage/"


def is_cos_type(ce_type: str | None) -> bool:
    """Whether a CloudEvents type is a COS document event (write or delete)."""
    return bool(ce_type and ce_type.startswith("com.ibm.cloud.cos."))


def is_body(doc: Mapping[str, Any]) -> bool:
    """Whether a JSON object looks like a COS notification body."""
    return isinstance(doc.get("notification"), Mapping) and isinstance(doc.get("bucket"), str)


def parse_body(
    doc: Any,
    attributes: Mapping[str, Any],
    *,
    producer: str,
) -> ParsedNotification:
    """The object a COS notification names; `attributes` are the CloudEvent's (type, id, ...).

    Bucket, key and type are each read from the body first and the CloudEvent attributes
    second, so a delivery missing one of them still works.
    """
    if doc is None:
        doc = {}
    if not isinstance(doc, Mapping):
        raise EventError(f"COS notification body is {json_type(doc)}, not an object")
    note = doc.get("notification")
    if not isinstance(note, Mapping):
        note = {}
    bucket = (opt_str(doc.get("bucket")) or opt_str(note.get("bucket_name"))
              or _bucket_from_source(opt_str(attributes.get("source"))))
    if not bucket:
        raise EventError("COS notification has no bucket: expected bucket, "
                         "notification.bucket_name or a ce-source naming the bucket")
    key = (opt_str(doc.get("key")) or opt_str(note.get("object_name"))
           or opt_str(attributes.get("subject")))
    if not key:
        raise EventError("COS notification has no key: expected key, "
                         "notification.object_name or ce-subject")
    ce_type = opt_str(attributes.get("type"))
    operation = opt_str(doc.get("operation")) or opt_str(note.get("event_type"))
    raw_type = ce_type or operation or ""
    kind = classify(raw_type)
    if kind == "other" and operation:
        kind = classify(operation)
    return ParsedNotification(events=[ObjectEvent(
        bucket=bucket,
        key=key,  # plain name: see the module docstring
        etag=normalise_etag(opt_str(note.get("object_etag"))),  # absent on deletes
        size=parse_size(note.get("object_length")),
        kind=kind,
        producer=producer,
        raw_type=raw_type,
        # ce-id stays the same when an event is replayed: the better dedupe hint.
        event_id=opt_str(attributes.get("id")) or opt_str(note.get("request_id")),
        event_time=opt_str(note.get("request_time")) or opt_str(attributes.get("time")),
    )])


def _bucket_from_source(source: str | None) -> str | None:
    if not source or _SOURCE_PREFIX not in source:
        return None
    return opt_str(source.rsplit(_SOURCE_PREFIX, 1)[1].strip("/"))
