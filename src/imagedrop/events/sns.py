"""Amazon SNS HTTP(S) envelopes: Notification, SubscriptionConfirmation, UnsubscribeConfirmation.

This module performs no I/O: it unwraps the envelope (awsdocs amazon-sns-developer-guide,
sns-message-and-json-formats.md) and leaves the message inside to the caller. It does not
verify SNS signatures. With raw message delivery SNS posts the message itself, not an
envelope; that body is then an ordinary S3 document.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from imagedrop.events._common import json_type, load_json, opt_str, require_str
from imagedrop.events.model import EventError, ParsedNotification, SubscriptionConfirmation

MESSAGE_TYPE_HEADER = "x-amz-sns-message-type"
TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")


def is_envelope(doc: Mapping[str, Any], headers: Mapping[str, str]) -> bool:
    """Whether a JSON object is an SNS envelope (`Type` plus `TopicArn`, or SNS's header)."""
    if not isinstance(doc.get("Type"), str):
        return False
    return "TopicArn" in doc or MESSAGE_TYPE_HEADER in headers


def unwrap(doc: Mapping[str, Any]) -> tuple[Any, ParsedNotification]:
    """(the decoded `Message` of a Notification, or None; what the envelope itself says).

    Raises EventError when a Notification's Message is not JSON or a confirmation lacks the
    fields needed to act on it.
    """
    kind = doc["Type"]
    topic = opt_str(doc.get("TopicArn")) or "?"
    if kind == "Notification":
        message = doc.get("Message")
        if not isinstance(message, str):
            raise EventError(f"SNS Message is {json_type(message)}, not a string")
        return load_json(message, "SNS Message"), ParsedNotification()
    if kind == "SubscriptionConfirmation":
        where = "SNS SubscriptionConfirmation"
        confirmation = SubscriptionConfirmation(
            topic_arn=require_str(doc, "TopicArn", where),
            subscribe_url=require_str(doc, "SubscribeURL", where),
            token=require_str(doc, "Token", where),
        )
        return None, ParsedNotification(subscription_confirmation=confirmation)
    if kind == "UnsubscribeConfirmation":
        return None, ParsedNotification(ignored=[(
            f"SNS UnsubscribeConfirmation for {topic}",
            "the subscription was removed; nothing to do",
        )])
    return None, ParsedNotification(ignored=[(
        f"SNS {kind} message for {topic}", "unknown SNS message type",
    )])
