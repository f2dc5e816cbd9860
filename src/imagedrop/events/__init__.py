"""Notification intake parsing for `POST /events`: every producer, as pure functions.

This package performs no I/O: `parse_notification(headers, body, query)` turns what a store
or relay POSTed (IBM Code Engine COS subscription, CloudEvents, AWS S3 / MinIO / Ceph
`Records[]`, SNS, EventBridge) into `ObjectEvent`s; `check_token` compares intake tokens.
"""

from __future__ import annotations

from imagedrop.events.detect import UNRECOGNISED, parse_notification
from imagedrop.events.model import (
    PRODUCERS,
    EventError,
    Kind,
    ObjectEvent,
    ParsedNotification,
    SubscriptionConfirmation,
)
from imagedrop.events.tokens import check_token, extract_token, matches_any

__all__ = [
    "PRODUCERS",
    "UNRECOGNISED",
    "EventError",
    "Kind",
    "ObjectEvent",
    "ParsedNotification",
    "SubscriptionConfirmation",
    "check_token",
    "extract_token",
    "matches_any",
    "parse_notification",
]
