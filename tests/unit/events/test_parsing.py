"""Keys, etags, sizes, kinds and malformed input, over small hand-made bodies (pure)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from imagedrop.errors import InputError
from imagedrop.events import UNRECOGNISED, EventError, parse_notification
from imagedrop.events._common import classify, parse_size


def records(*objects: dict[str, Any], name: str = "ObjectCreated:Put",
            source: str = "aws:s3") -> bytes:
    return json.dumps({"Records": [
        {"eventSource": source, "eventName": name,
         "s3": {"bucket": {"name": "b"}, "object": obj}} for obj in objects
    ]}).encode()


def parse(body: bytes | str, headers: dict[str, str] | None = None,
          query: dict[str, str] | None = None):
    data = body.encode() if isinstance(body, str) else body
    return parse_notification(headers or {}, data, query or {})


class TestKeys:
    """Each producer's key encoding is undone exactly once."""

    @pytest.mark.parametrize(("raw", "key"), [
        ("red+flower.jpg", "red flower.jpg"),
        ("a%2Fb%2Fc.png", "a/b/c.png"),
        ("a/b/c.png", "a/b/c.png"),
        ("caf%C3%A9.jpg", "café.jpg"),
        ("c%2B%2B.png", "c++.png"),
        ("100%25+real.png", "100% real.png"),
    ])
    def test_s3_records_are_unquote_plus_decoded(self, raw: str, key: str) -> None:
        """AWS/MinIO keys are form-URL-encoded: '+' is a space, %XX a byte."""
        (event,) = parse(records({"key": raw})).events
        assert event.key == key

    def test_ceph_keys_are_kept(self) -> None:
        """Ceph sends the raw object name, so '+' and '%' are literal."""
        (event,) = parse(records({"key": "a+b%2F.png"}, source="ceph:s3")).events
        assert event.key == "a+b%2F.png"

    def test_cos_keys_are_kept(self) -> None:
        """Code Engine COS keys are plain names: never decoded (no double decoding)."""
        body = {"bucket": "b", "key": "a+b%2Fc.png", "notification": {"object_length": "1"}}
        headers = {"ce-type": "com.ibm.cloud.cos.document.write"}
        (event,) = parse(json.dumps(body), headers).events
        assert event.key == "a+b%2Fc.png"

    def test_eventbridge_keys_are_kept(self) -> None:
        """EventBridge keys are not URL-encoded."""
        body = {"detail-type": "Object Created", "source": "aws.s3",
                "detail": {"bucket": {"name": "b"}, "object": {"key": "a+b.png"}}}
        (event,) = parse(json.dumps(body)).events
        assert event.key == "a+b.png"


class TestFields:
    """Etags, sizes and kinds are normalised the same way for every producer."""

    @pytest.mark.parametrize("etag", ['"abc"', "abc", 'W/"abc"'])
    def test_etag_normalised(self, etag: str) -> None:
        """Quotes and weak markers are removed."""
        (event,) = parse(records({"key": "k", "eTag": etag})).events
        assert event.etag == "abc"

    def test_lower_case_etag_field(self) -> None:
        """Some Ceph releases write `etag`; it is read too."""
        (event,) = parse(records({"key": "k", "etag": "abc"}, source="ceph:s3")).events
        assert event.etag == "abc"

    @pytest.mark.parametrize(("value", "size"), [
        (1024, 1024), ("1024", 1024), (" 7 ", 7), (0, 0), (12.0, 12),
        ("12.5", None), ("", None), ("-1", None), (-1, None), (True, None), (None, None),
        ("x", None), ([], None), ("١٢", None), (float("inf"), None), ("9" * 5000, None),
    ])
    def test_parse_size(self, value: Any, size: int | None) -> None:
        """Ints and decimal strings are sizes; anything else is None, never a crash."""
        assert parse_size(value) == size

    def test_invalid_size_in_a_record_is_none(self) -> None:
        """A record with a nonsense size still parses."""
        (event,) = parse(records({"key": "k", "size": "lots"})).events
        assert event.size is None

    @pytest.mark.parametrize(("raw", "kind"), [
        ("com.ibm.cloud.cos.document.write", "created"),
        ("com.ibm.cloud.cos.document.delete", "deleted"),
        ("Object:Write", "created"), ("Object:Delete", "deleted"),
        ("ObjectCreated:Put", "created"), ("s3:ObjectCreated:CompleteMultipartUpload", "created"),
        ("ObjectRemoved:DeleteMarkerCreated", "deleted"), ("s3:ObjectRemoved:Delete", "deleted"),
        ("com.amazonaws.s3.ObjectCreated:Copy", "created"),
        ("com.amazonaws.ObjectRemoved:Delete", "deleted"),
        ("ObjectLifecycle:Expiration:Current", "deleted"),
        ("ObjectLifecycle:Expiration:AbortMultipartUpload", "other"),
        ("Object Created", "created"), ("Object Deleted", "deleted"),
        ("Object Restore Completed", "other"), ("ObjectTagging:Put", "other"),
        ("s3:ObjectAccessed:Get", "other"), ("", "other"),
    ])
    def test_classify(self, raw: str, kind: str) -> None:
        """Writes are created, deletes deleted, everything else other."""
        assert classify(raw) == kind

    def test_empty_records_is_nothing_to_do(self) -> None:
        """`Records: []` is valid and yields nothing."""
        result = parse('{"Records": []}')
        assert result.events == [] and result.ignored == []

    def test_cos_headers_alone_name_the_object(self) -> None:
        """A COS event with an empty body still works from ce-source and ce-subject."""
        headers = {"Ce-Type": "com.ibm.cloud.cos.document.write", "Ce-Subject": "a/b.png",
                   "Ce-Source": "https://cloud.ibm.com/catalog/services/cloud-object-storage/bk"}
        (event,) = parse(b"", headers).events
        assert (event.bucket, event.key, event.etag, event.size) == ("bk", "a/b.png", "", None)


class TestIgnored:
    """Unknown types and foreign events are acknowledged with a reason, not refused."""

    def test_unknown_binary_cloudevent(self) -> None:
        """A CloudEvent of another type with unrelated data is ignored."""
        result = parse('{"hello": "world"}', {"ce-type": "com.example.ping", "ce-id": "1"})
        assert result.events == []
        assert result.ignored == [("CloudEvent com.example.ping",
                                   "unknown event type: its data names no object")]

    def test_binary_cloudevent_with_text_data(self) -> None:
        """Non-JSON data of an unknown type is ignored, not an error."""
        result = parse("plain text", {"ce-type": "com.example.text",
                                      "content-type": "text/plain"})
        assert result.ignored == [("CloudEvent com.example.text", "its data is not JSON")]

    def test_eventbridge_from_another_source(self) -> None:
        """EventBridge events not from aws.s3 are ignored."""
        body = {"detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2",
                "detail": {}}
        (ignored,) = parse(json.dumps(body)).ignored
        assert "aws.ec2" in ignored[0] and "not an S3 event" in ignored[1]

    def test_sns_message_without_s3_event(self) -> None:
        """An SNS message whose JSON is no S3 event is ignored."""
        body = {"Type": "Notification", "TopicArn": "arn:t", "MessageId": "m1",
                "Message": json.dumps({"greeting": "hi"})}
        assert parse(json.dumps(body)).ignored == [
            ("SNS message m1", "its Message holds no S3 or EventBridge event")]

    def test_sns_raw_message_delivery(self) -> None:
        """With raw delivery the body is the S3 document itself, SNS header or not."""
        result = parse(records({"key": "k"}), {"x-amz-sns-message-type": "Notification"})
        assert [e.key for e in result.events] == ["k"]


class TestMalformed:
    """Malformed bodies raise EventError (an InputError, HTTP 400) saying what is wrong."""

    def test_is_an_input_error(self) -> None:
        """EventError belongs to the caller's-fault branch with status 400."""
        assert issubclass(EventError, InputError) and EventError.status == 400

    @pytest.mark.parametrize(("body", "message"), [
        (b"", "body is empty"),
        (b"{not json", "body is not JSON: Expecting property name"),
        (b"\xff\xfe\x00", "body is not JSON"),
        (b"[" * 100_000, "body is not JSON"),
        (b'"just a string"', "body is a string, not a JSON object"),
        (b"42", "body is a number, not a JSON object"),
        (b"[1, 2]", "body is an array, not a JSON object"),
        (b'{"what": "ever"}', UNRECOGNISED),
        (b'{"Records": {}}', "Records is an object, not an array"),
        (b'{"Records": [1]}', "S3 record 1 is a number, not an object"),
    ])
    def test_body_errors(self, body: bytes, message: str) -> None:
        """Each malformed body is refused with a message naming the problem."""
        with pytest.raises(EventError) as info:
            parse(body)
        assert message in str(info.value)

    def test_record_missing_key_is_named(self) -> None:
        """The record number (from 1) and the missing field are named."""
        body = json.loads(records({"key": "ok"}, {"size": 1}))
        with pytest.raises(EventError, match=r"^S3 record 2 has no s3\.object\.key$"):
            parse(json.dumps(body))

    @pytest.mark.parametrize(("record", "message"), [
        ({"s3": {"bucket": {"name": "b"}, "object": {"key": "k"}}}, "S3 record 1 has no eventName"),
        ({"eventName": "ObjectCreated:Put", "s3": {"object": {"key": "k"}}},
         "S3 record 1 has no s3.bucket.name"),
        ({"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {"key": 5}}},
         "S3 record 1 has s3.object.key that is a number, not a string"),
        ({"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {"key": ""}}},
         "S3 record 1 has an empty s3.object.key"),
    ])
    def test_record_field_errors(self, record: dict[str, Any], message: str) -> None:
        """Missing or mistyped record fields are reported precisely."""
        with pytest.raises(EventError) as info:
            parse(json.dumps({"Records": [record]}))
        assert str(info.value) == message

    def test_sns_message_not_json(self) -> None:
        """An SNS Notification whose Message is not JSON is refused."""
        body = {"Type": "Notification", "TopicArn": "arn:t", "Message": "Hello world!"}
        with pytest.raises(EventError, match=r"^SNS Message is not JSON: "):
            parse(json.dumps(body))

    def test_sns_confirmation_without_url(self) -> None:
        """A SubscriptionConfirmation without SubscribeURL cannot be acted on."""
        body = {"Type": "SubscriptionConfirmation", "TopicArn": "arn:t", "Token": "t"}
        with pytest.raises(EventError, match="SubscriptionConfirmation has no SubscribeURL"):
            parse(json.dumps(body))

    def test_cos_without_key(self) -> None:
        """A COS event naming no key anywhere is refused."""
        with pytest.raises(EventError, match="COS notification has no key"):
            parse('{"bucket": "b", "notification": {}}',
                  {"ce-type": "com.ibm.cloud.cos.document.write"})

    def test_eventbridge_without_object_key(self) -> None:
        """An S3 EventBridge event must name the object."""
        body = {"detail-type": "Object Created", "source": "aws.s3",
                "detail": {"bucket": {"name": "b"}, "object": {}}}
        with pytest.raises(EventError, match=r"EventBridge detail has no object\.key"):
            parse(json.dumps(body))

    def test_structured_without_type(self) -> None:
        """A structured CloudEvent needs a type."""
        with pytest.raises(EventError, match="CloudEvent has no type"):
            parse('{"specversion": "1.0", "id": "1"}',
                  {"Content-Type": "application/cloudevents+json"})

    def test_structured_bad_base64(self) -> None:
        """data_base64 that is not base64 is refused."""
        body = {"specversion": "1.0", "type": "t", "id": "1", "data_base64": "%%%"}
        with pytest.raises(EventError, match="data_base64 that is not base64"):
            parse(json.dumps(body))

    def test_batch_member_error_names_the_member(self) -> None:
        """An error inside a batch says which member."""
        bad = {"specversion": "1.0", "type": "com.ibm.cloud.cos.document.write", "id": "2",
               "data": {"bucket": "b", "notification": {}}}
        good = {"specversion": "1.0", "type": "x", "id": "1"}
        with pytest.raises(EventError, match=r"^CloudEvent 2 of the batch: COS notification"):
            parse(json.dumps([good, bad]),
                  {"content-type": "application/cloudevents-batch+json"})

    def test_errors_never_quote_the_body(self) -> None:
        """Messages name fields, not values: a secret in the body never reaches the log."""
        body = {"Type": "Notification", "TopicArn": "arn:t", "Message": "s3cr3t-value{"}
        with pytest.raises(EventError) as info:
            parse(json.dumps(body), query={"token": "s3cr3t-query"})
        assert "s3cr3t" not in str(info.value)
