"""One entry point for every producer: detect the notification's shape and dispatch.

This module performs no I/O: `parse_notification(headers, body, query)` is a pure function
of what arrived at `POST /events`. Detection order: CloudEvents binary mode (`ce-type`
header), a CloudEvents batch or structured envelope, then the JSON body's own shape
(SNS envelope, `Records[]`, S3 test event, EventBridge event, bare COS body).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from imagedrop.events import cloudevents, cos, eventbridge, s3, sns
from imagedrop.events._common import json_type, load_json, opt_str
from imagedrop.events.cloudevents import CloudEvent
from imagedrop.events.model import EventError, ParsedNotification, merge
from imagedrop.events.tokens import extract_token

UNRECOGNISED = ("unrecognised notification: expected CloudEvents headers, a Records array, "
                "an SNS envelope or an EventBridge event")


def parse_notification(
    headers: Mapping[str, str],
    body: bytes,
    query: Mapping[str, str],
) -> ParsedNotification:
    """Everything a notification says, with the intake token it carried (not yet checked).

    Raises EventError (HTTP 400) when the body is malformed; unknown event types and test
    messages are not errors but land in `ignored` with a reason.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    envelope_token: str | None = None
    if cloudevents.is_binary(lowered):
        result = _from_cloudevent(cloudevents.from_headers(lowered, body), structured=False)
    else:
        doc = load_json(body)
        content = cloudevents.media_type(lowered.get("content-type"))
        if content == cloudevents.BATCH or _is_batch(doc):
            result, envelope_token = _from_batch(doc)
        elif not isinstance(doc, Mapping):
            raise EventError(f"body is {json_type(doc)}, not a JSON object")
        elif content == cloudevents.STRUCTURED or cloudevents.is_envelope(doc):
            event = cloudevents.from_envelope(doc)
            envelope_token = event.token
            result = _from_cloudevent(event, structured=True)
        else:
            result = _from_document(doc, lowered)
    token = extract_token(lowered, query, envelope_token=envelope_token)
    return replace(result, token=token)


def _is_batch(doc: Any) -> bool:
    return isinstance(doc, list) and bool(doc) and all(map(cloudevents.is_envelope, doc))


def _from_batch(doc: Any) -> tuple[ParsedNotification, str | None]:
    if not isinstance(doc, list):
        raise EventError(f"CloudEvents batch is {json_type(doc)}, not an array")
    parts: list[ParsedNotification] = []
    token: str | None = None
    for number, item in enumerate(doc, start=1):
        where = f"CloudEvent {number} of the batch"
        event = cloudevents.from_envelope(item, where)
        token = token or event.token
        try:
            parts.append(_from_cloudevent(event, structured=True))
        except EventError as exc:
            raise EventError(f"{where}: {exc}") from None
    return merge(parts), token


def _from_cloudevent(event: CloudEvent, *, structured: bool) -> ParsedNotification:
    # Binary mode is how Code Engine (COS) and Ceph (`cloudevents=true`) deliver: keep their
    # producer names. A structured envelope hides who produced the data, so say so.
    via = "cloudevents" if structured else None
    if cos.is_cos_type(event.type):
        return cos.parse_body(event.data, event.attributes,
                              producer=via or "ibm-cos-code-engine")
    what = f"CloudEvent {event.type}"
    if not event.data_is_json:
        return ParsedNotification(ignored=[(what, "its data is not JSON")])
    if isinstance(event.data, Mapping):
        parsed = _from_data(event.data, via=via, event=event)
        if parsed is not None:
            return parsed
    return ParsedNotification(ignored=[(what, "unknown event type: its data names no object")])


def _from_document(doc: Mapping[str, Any], headers: Mapping[str, str]) -> ParsedNotification:
    if sns.is_envelope(doc, headers):
        inner, result = sns.unwrap(doc)
        if inner is None:
            return result
        if not isinstance(inner, Mapping):
            raise EventError(f"SNS Message is {json_type(inner)} in JSON, not an object")
        parsed = _from_data(inner, via="sns")
        if parsed is None:
            message_id = opt_str(doc.get("MessageId")) or "?"
            return ParsedNotification(ignored=[(
                f"SNS message {message_id}", "its Message holds no S3 or EventBridge event",
            )])
        return parsed
    parsed = _from_data(doc, via=None)
    if parsed is None:
        raise EventError(UNRECOGNISED)
    return parsed


def _from_data(
    doc: Mapping[str, Any],
    *,
    via: str | None,
    event: CloudEvent | None = None,
) -> ParsedNotification | None:
    """Parse a JSON object by its shape; None when no known shape matches."""
    if s3.is_records(doc):
        return s3.parse_records(doc, producer=via)
    if s3.is_test_event(doc):
        return s3.test_event(doc)
    if eventbridge.is_event(doc):
        return eventbridge.parse_event(doc, producer=via or "eventbridge")
    attributes = event.attributes if event else {}
    if cos.is_body(doc):
        return cos.parse_body(doc, attributes, producer=via or "ibm-cos-code-engine")
    if s3.is_record(doc):  # the CloudEvents S3 adapter sends one record as data
        return ParsedNotification(events=[s3.parse_record(doc, producer=via)])
    if event is not None and eventbridge.is_detail(doc):
        # An EventBridge detail re-wrapped as a CloudEvent: its type says what happened.
        return ParsedNotification(events=[eventbridge.parse_detail(
            doc, raw_type=event.type, producer=via or "cloudevents",
            event_id=opt_str(attributes.get("id")), event_time=opt_str(attributes.get("time")),
        )])
    return None
