"""Every recorded sample parses to the object events its producer meant (pure, synchronous)."""

from __future__ import annotations

from imagedrop.events import ObjectEvent, SubscriptionConfirmation
from tests.unit.events.samples import parse_sample


class TestIbmCos:
    """Code Engine COS subscriptions: CloudEvents binary mode, COS body."""

    def test_captured_write(self) -> None:
        """A captured write names bucket, plain key, etag, string length and ce-id."""
        result = parse_sample("ibm-cos", "write-captured")
        assert result.events == [ObjectEvent(
            bucket="bucket-7q9bwndejrlvwc1", key="1016445.pdf",
            etag="3cf3a49dfe06b198da72560cb3456ada", size=128618, kind="created",
            producer="ibm-cos-code-engine", raw_type="com.ibm.cloud.cos.document.write",
            event_id="1c7249c8-0eca-4cfc-8392-ac7d416bc257",
            event_time="2026-08-13T11:56:31.032Z",
        )]
        assert result.ignored == [] and result.token is None

    def test_docs_delete(self) -> None:
        """The documented delete is a deleted event with the ce-id as its id."""
        (event,) = parse_sample("ibm-cos", "delete-docs").events
        assert (event.bucket, event.key, event.kind) == ("mybucket", "object-69-144", "deleted")
        assert event.event_id == "3fb2c04e-a660-4640-8899-b82efb8169b6"
        assert event.size == 1064391

    def test_docs_write_prefers_key_over_object_name(self) -> None:
        """`key` wins over notification.object_name (the docs example misspells the latter)."""
        (event,) = parse_sample("ibm-cos", "write-docs").events
        assert event.key == "Notes.rtf" and event.kind == "created" and event.size == 4642

    def test_plain_key_quoted_etag_and_token(self) -> None:
        """COS keys are not decoded; quotes leave the etag; ce-token is the intake token."""
        result = parse_sample("ibm-cos", "write-token-odd-key")
        (event,) = result.events
        assert event.key == "photos/food/red burger+fries é.jpg"
        assert event.etag == "9b2cf535f27731c974343645a3985328"
        assert result.token == "ce-intake-token"


class TestAwsS3:
    """S3 Records[] as AWS sends them."""

    def test_docs_put(self) -> None:
        """The documented PUT record becomes one created event with every field."""
        assert parse_sample("aws-s3", "put-docs").events == [ObjectEvent(
            bucket="mybucket", key="HappyFace.jpg", etag="d41d8cd98f00b204e9800998ecf8427e",
            size=1024, kind="created", producer="aws-s3", raw_type="ObjectCreated:Put",
            event_id="C3D13FE58DE4C810", version_id="096fKKXTRTtl3on89fVO.nfljtsv6qko",
            sequencer="0055AED6DCD90281E5", event_time="1970-01-01T00:00:00.000Z",
        )]

    def test_test_event_is_ignored(self) -> None:
        """s3:TestEvent yields no events and says why it was ignored."""
        result = parse_sample("aws-s3", "test-event-docs")
        assert result.events == []
        ((what, why),) = result.ignored
        assert "s3:TestEvent" in what and "bucketname" in what and "test message" in why

    def test_multiple_records(self) -> None:
        """Every record is returned, in order, decoded, with its own kind."""
        events = parse_sample("aws-s3", "multi-records").events
        assert [(e.key, e.kind) for e in events] == [
            ("photos/food/red flower.jpg", "created"),
            ("photos/food/café au lait+1.png", "created"),
            ("photos/food/old.jpg", "deleted"),
            ("photos/food/red flower.jpg", "other"),
        ]
        assert events[0].etag == "b1946ac92492d2347c6235b4d2611184"
        assert events[1].etag == "4af981f98d22a0b9979da24b259e5e42-12"
        assert (events[2].etag, events[2].size) == ("", None)


class TestMinio:
    """MinIO webhook target."""

    def test_put(self) -> None:
        """s3:-prefixed names, QueryEscape'd keys and the Bearer auth token."""
        result = parse_sample("minio", "put")
        (event,) = result.events
        assert (event.bucket, event.key) == ("images", "food/burger deluxe.jpg")
        assert (event.kind, event.producer, event.size) == ("created", "minio", 84452)
        assert event.raw_type == "s3:ObjectCreated:Put"
        assert result.token == "minio-intake-token"

    def test_delete_and_verbatim_authorization(self) -> None:
        """A delete carries no size or etag; a two-word auth_token arrives verbatim."""
        result = parse_sample("minio", "delete")
        (event,) = result.events
        assert (event.kind, event.size, event.etag) == ("deleted", None, "")
        assert result.token == "Token minio-two-word-token"


class TestCeph:
    """Ceph RGW HTTP push."""

    def test_docs_put(self) -> None:
        """String size, empty versionId/eventId become int and None."""
        (event,) = parse_sample("ceph", "put-docs").events
        assert (event.bucket, event.key, event.size) == ("mybucket1", "myimage1.jpg", 1024)
        assert (event.producer, event.kind) == ("ceph", "created")
        assert event.version_id is None
        assert event.event_id == "503a4c37-85eb-47cd-8681-2817e80b4281.5330.903595"

    def test_cloudevents_headers_and_raw_key(self) -> None:
        """With cloudevents=true the body still decides; Ceph keys are not URL-decoded."""
        (event,) = parse_sample("ceph", "expiration-cloudevents").events
        assert event.key == "old/my image+1.jpg"
        assert (event.kind, event.producer) == ("deleted", "ceph")


class TestSns:
    """SNS envelopes, including ones captured from moto's S3 → SNS → HTTP chain."""

    def test_captured_put(self) -> None:
        """The S3 record inside Message is parsed; the query token is picked up."""
        result = parse_sample("sns", "notification-put-1")
        (event,) = result.events
        assert (event.bucket, event.key) == ("imagedrop-photos", "photos/food/burger.jpg")
        assert (event.producer, event.kind, event.size) == ("sns", "created", 19)
        assert event.etag == "64abff84bffe7247ac094b42267b20f0"
        assert result.token == "sample-intake-token"

    def test_captured_odd_key(self) -> None:
        """moto's quote_plus'd key with a space, a plus and é decodes to the real key."""
        (event,) = parse_sample("sns", "notification-put-2").events
        assert event.key == "photos/food/red burger+fries é.jpg"

    def test_captured_test_event(self) -> None:
        """The s3:TestEvent moto posts through SNS is ignored with its reason."""
        result = parse_sample("sns", "s3-test-event")
        assert result.events == []
        assert result.ignored[0][0] == "s3:TestEvent for bucket imagedrop-photos"

    def test_docs_notification(self) -> None:
        """A documented envelope around the documented S3 record."""
        (event,) = parse_sample("sns", "notification-docs").events
        assert (event.key, event.producer) == ("HappyFace.jpg", "sns")

    def test_subscription_confirmation(self) -> None:
        """SubscriptionConfirmation sets the handshake and nothing else."""
        result = parse_sample("sns", "subscription-confirmation-docs")
        assert result.events == [] and result.ignored == []
        confirmation = result.subscription_confirmation
        assert isinstance(confirmation, SubscriptionConfirmation)
        assert confirmation.topic_arn == "arn:aws:sns:us-west-2:123456789012:MyTopic"
        assert confirmation.subscribe_url.startswith(
            "https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription")
        assert confirmation.token.startswith("2336412f37fb687f")
        assert confirmation.token not in repr(confirmation)

    def test_unsubscribe_confirmation_is_ignored(self) -> None:
        """UnsubscribeConfirmation is acknowledged and ignored."""
        result = parse_sample("sns", "unsubscribe-confirmation-docs")
        assert result.events == [] and result.subscription_confirmation is None
        assert "UnsubscribeConfirmation" in result.ignored[0][0]


class TestEventBridge:
    """EventBridge events from aws.s3."""

    def test_docs_object_created(self) -> None:
        """Object Created maps bucket, key, etag, size, version-id, sequencer, id and time."""
        assert parse_sample("eventbridge", "object-created-docs").events == [ObjectEvent(
            bucket="DOC-EXAMPLE-BUCKET1", key="example-key",
            etag="b1946ac92492d2347c6235b4d2611184", size=5, kind="created",
            producer="eventbridge", raw_type="Object Created",
            event_id="17793124-05d4-b198-2fde-7ededc63b103",
            version_id="IYV3p45BT0ac8hjHg1houSdS1a.Mro8e", sequencer="617f08299329d189",
            event_time="2021-11-12T00:00:00Z",
        )]

    def test_docs_object_deleted(self) -> None:
        """Object Deleted is a deleted event."""
        (event,) = parse_sample("eventbridge", "object-deleted-docs").events
        assert event.kind == "deleted" and event.size is None

    def test_restore_completed_is_other(self) -> None:
        """Other S3 detail-types describe an object but are neither created nor deleted."""
        (event,) = parse_sample("eventbridge", "restore-completed-docs").events
        assert event.kind == "other" and event.raw_type == "Object Restore Completed"

    def test_captured_key_is_not_decoded(self) -> None:
        """A real key with ':' arrives as is and stays as is."""
        (event,) = parse_sample("eventbridge", "object-created-captured").events
        assert event.key == "raw/health-check/2023-08-08T14:03:40.532432.zip"


class TestCloudEventsStructured:
    """Structured-mode envelopes and batches."""

    def test_cos_data_and_envelope_token(self) -> None:
        """COS data in an envelope; the `token` extension attribute is the intake token."""
        result = parse_sample("cloudevents", "structured-cos")
        (event,) = result.events
        assert (event.key, event.producer, event.kind) == (
            "photos/food/burger.jpg", "cloudevents", "created")
        assert event.event_id == "0f4e5a8c-7d1b-4c0e-9a51-3c2d8b7e6f11"
        assert result.token == "structured-intake-token"

    def test_s3_adapter_record(self) -> None:
        """One S3 record as data (CloudEvents S3 adapter)."""
        (event,) = parse_sample("cloudevents", "structured-s3-record").events
        assert (event.key, event.kind, event.producer) == (
            "HappyFace.jpg", "created", "cloudevents")

    def test_data_base64(self) -> None:
        """data_base64 is decoded and parsed like data."""
        (event,) = parse_sample("cloudevents", "structured-data-base64").events
        assert event.key == "HappyFace.jpg"

    def test_batch(self) -> None:
        """A batch yields each member's events; an unrelated type is ignored."""
        result = parse_sample("cloudevents", "batch")
        assert [(e.key, e.kind) for e in result.events] == [
            ("photos/food/burger.jpg", "created"), ("photos/food/old.jpg", "deleted")]
        assert [e.key for e in result.created] == ["photos/food/burger.jpg"]
        ((what, why),) = result.ignored
        assert "com.github.push" in what and "unknown event type" in why
