"""Intake tokens: where each producer puts one, which wins, and the constant-time check."""

from __future__ import annotations

import json

import pytest

from imagedrop.events import check_token, extract_token, parse_notification

RECORDS = json.dumps({"Records": []}).encode()


class TestExtractToken:
    """extract_token finds the producer's token without judging it."""

    @pytest.mark.parametrize(("headers", "query", "token"), [
        ({"Authorization": "Bearer abc"}, {}, "abc"),
        ({"authorization": "bearer abc"}, {}, "abc"),
        ({"Authorization": "Token abc"}, {}, "Token abc"),
        ({"Authorization": "abc"}, {}, "abc"),
        ({"Ce-Token": "from-ce"}, {}, "from-ce"),
        ({}, {"token": "from-query"}, "from-query"),
        ({"Authorization": "Bearer a", "ce-token": "b"}, {"token": "c"}, "a"),
        ({"ce-token": "b"}, {"token": "c"}, "b"),
        ({"Authorization": "Bearer "}, {"token": "c"}, "c"),
        ({"ce-token": "  "}, {}, None),
        ({}, {}, None),
    ])
    def test_precedence(self, headers: dict[str, str], query: dict[str, str],
                        token: str | None) -> None:
        """Authorization, then ce-token, then ?token=; blanks count as absent."""
        assert extract_token(headers, query) == token

    def test_envelope_token_before_query(self) -> None:
        """A structured CloudEvent's token attribute beats the query parameter."""
        assert extract_token({}, {"token": "q"}, envelope_token="env") == "env"

    def test_parse_notification_carries_it(self) -> None:
        """parse_notification reports the token, and keeps it out of repr."""
        result = parse_notification({"Authorization": "Bearer t0ken"}, RECORDS, {})
        assert result.token == "t0ken"
        assert "t0ken" not in repr(result)

    def test_query_token_for_sns(self) -> None:
        """SNS and Ceph can only carry a token in the subscribed URL."""
        body = json.dumps({"Type": "UnsubscribeConfirmation", "TopicArn": "arn:t"}).encode()
        assert parse_notification({}, body, {"token": "q"}).token == "q"


class TestCheckToken:
    """check_token compares in constant time and allows all when nothing is expected."""

    @pytest.mark.parametrize(("expected", "presented", "ok"), [
        (None, None, True), (None, "x", True), ("", None, True),
        ("s3cret", "s3cret", True), ("s3cret", "S3CRET", False), ("s3cret", None, False),
        ("s3cret", "", False), ("s3cret", "s3cret ", False), ("é", "é", True),
    ])
    def test_check(self, expected: str | None, presented: str | None, ok: bool) -> None:
        """Only an exact match passes when a token is expected."""
        assert check_token(expected, presented) is ok
