"""What a parsed notification says: object events, what was ignored and why, SNS handshakes.

This module performs no I/O: it only defines the results every parser returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from imagedrop.errors import InputError

Kind = Literal["created", "deleted", "other"]

#: `ObjectEvent.producer` names the envelope that reached imagedrop, not the store behind it:
#: S3 records inside an SNS envelope are "sns", anything in a structured CloudEvent is
#: "cloudevents", and S3 records POSTed directly are named by their `eventSource`.
PRODUCERS = (
    "ibm-cos-code-engine",  # COS notification body (Code Engine: CloudEvents binary mode)
    "cloudevents",          # structured-mode CloudEvent or a CloudEvents batch
    "aws-s3",               # Records[] with eventSource aws:s3
    "minio",                # Records[] with eventSource minio:s3 (MinIO webhook target)
    "ceph",                 # Records[] with eventSource ceph:s3 (Ceph RGW HTTP push)
    "s3-compatible",        # Records[] from another S3-compatible store
    "sns",                  # SNS HTTP(S) envelope carrying S3 records
    "eventbridge",          # EventBridge event from source aws.s3
)


class EventError(InputError):
    """Raised when a notification is malformed; the message says exactly what is wrong."""

    status = 400


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjectEvent:
    """One object-level change a producer reported."""

    bucket: str
    key: str  # the real object key: URL-decoding already done where the format needs it
    etag: str  # normalised (no quotes, no W/); "" when the producer sent none (deletes)
    size: int | None
    kind: Kind
    producer: str  # one of PRODUCERS
    raw_type: str  # the producer's own event type, e.g. "ObjectCreated:Put"
    event_id: str | None = None
    version_id: str | None = None
    sequencer: str | None = None
    event_time: str | None = None  # as sent (ISO 8601 in every known producer)


@dataclass(frozen=True, slots=True)
class SubscriptionConfirmation:
    """An SNS subscription handshake: the endpoint confirms by GETting `subscribe_url`.

    `token` is SNS's confirmation token, unrelated to the intake token. Check that
    `subscribe_url` points at an SNS host before fetching it: the body is caller-supplied.
    """

    topic_arn: str
    subscribe_url: str = field(repr=False)  # carries the SNS token in its query string
    token: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class ParsedNotification:
    """Everything one POST said: object events, things ignored (what, why), an SNS handshake."""

    events: list[ObjectEvent] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)
    subscription_confirmation: SubscriptionConfirmation | None = None
    # The intake token the producer carried (not yet checked): kept out of repr and logs.
    token: str | None = field(default=None, repr=False)

    @property
    def created(self) -> list[ObjectEvent]:
        """Only the events that announce a new or overwritten object."""
        return [event for event in self.events if event.kind == "created"]


def merge(parts: list[ParsedNotification]) -> ParsedNotification:
    """One result from several (CloudEvents batches): lists concatenated, first handshake kept."""
    confirmation = next((p.subscription_confirmation for p in parts
                         if p.subscription_confirmation), None)
    return ParsedNotification(
        events=[event for part in parts for event in part.events],
        ignored=[item for part in parts for item in part.ignored],
        subscription_confirmation=confirmation,
        token=next((p.token for p in parts if p.token), None),
    )
