"""Delivery retry timing: answer classification, Retry-After parsing, the schedule."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from imagedrop.delivery.backoff import (
    MAX_RETRY_AFTER,
    Verdict,
    classify,
    next_attempt_at,
    parse_retry_after,
)

NOW = 1_700_000_000.0


class TestClassify:
    """classify() maps an answer to delivered, disabled, failed or retry."""

    @pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
    def test_2xx_delivered(self, status: int) -> None:
        """Every 2xx is a delivery."""
        assert classify(status) is Verdict.DELIVERED

    def test_410_disables(self) -> None:
        """410 Gone disables the subscriber."""
        assert classify(410) is Verdict.DISABLED

    @pytest.mark.parametrize("status", [None, 500, 502, 503, 504, 599])
    def test_5xx_and_no_answer_retry(self, status: int | None) -> None:
        """Server errors, timeouts and connection errors are retried."""
        assert classify(status) is Verdict.RETRY

    @pytest.mark.parametrize("status", [408, 409, 425, 429])
    def test_not_now_4xx_retry(self, status: int) -> None:
        """Timeout, conflict, too early and rate limited mean "later", not "never"."""
        assert classify(status) is Verdict.RETRY

    @pytest.mark.parametrize("status", [301, 302, 304, 307, 308])
    def test_redirects_retry(self, status: int) -> None:
        """Redirects are failures that are retried, never followed."""
        assert classify(status) is Verdict.RETRY

    @pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 413, 415, 422, 451, 499])
    def test_other_4xx_fail(self, status: int) -> None:
        """Any other 4xx is the receiver refusing the payload: failed without retrying."""
        assert classify(status) is Verdict.FAILED

    @pytest.mark.parametrize("status", [100, 600])
    def test_odd_statuses_retry(self, status: int) -> None:
        """Statuses outside 2xx-5xx are treated as a failed attempt and retried."""
        assert classify(status) is Verdict.RETRY


class TestParseRetryAfter:
    """parse_retry_after() reads delta-seconds and HTTP-dates."""

    @pytest.mark.parametrize(("value", "expected"), [("0", 0.0), ("2", 2.0), (" 120 ", 120.0)])
    def test_delta_seconds(self, value: str, expected: float) -> None:
        """Integers are seconds from now."""
        assert parse_retry_after(value, now=NOW) == expected

    def test_negative_is_zero(self) -> None:
        """A negative delay means now."""
        assert parse_retry_after("-5", now=NOW) == 0.0

    def test_http_date(self) -> None:
        """An IMF-fixdate is converted to seconds from now."""
        when = datetime.fromtimestamp(NOW + 90, tz=UTC)
        assert parse_retry_after(format_datetime(when, usegmt=True), now=NOW) == 90.0

    def test_past_http_date_is_zero(self) -> None:
        """A date already passed means now."""
        when = datetime.fromtimestamp(NOW - 90, tz=UTC)
        assert parse_retry_after(format_datetime(when, usegmt=True), now=NOW) == 0.0

    def test_minus_zero_zone_is_gmt(self) -> None:
        """A date with a -0000 zone parses as GMT too."""
        when = datetime.fromtimestamp(NOW + 30, tz=UTC)
        text = format_datetime(when).replace("+0000", "-0000")
        assert parse_retry_after(text, now=NOW) == 30.0

    @pytest.mark.parametrize("value", [None, "", "soon", "nan", "inf", "Mon, 99 Foo 2024"])
    def test_garbage_is_none(self, value: str | None) -> None:
        """Anything unusable is ignored."""
        assert parse_retry_after(value, now=NOW) is None


class TestNextAttemptAt:
    """next_attempt_at() follows the schedule and honours Retry-After upwards only."""

    SCHEDULE = (0, 5, 300, 1800)

    def test_schedule_index_is_attempts_made(self) -> None:
        """After n attempts, attempt n is due schedule[n] seconds from now."""
        assert next_attempt_at(self.SCHEDULE, 0, now=NOW) == NOW
        assert next_attempt_at(self.SCHEDULE, 1, now=NOW) == NOW + 5
        assert next_attempt_at(self.SCHEDULE, 3, now=NOW) == NOW + 1800

    def test_exhausted(self) -> None:
        """Once every scheduled attempt was made there is no next one."""
        assert next_attempt_at(self.SCHEDULE, 4, now=NOW) is None
        assert next_attempt_at((), 0, now=NOW) is None

    def test_retry_after_raises_delay(self) -> None:
        """A longer Retry-After wins over the schedule."""
        assert next_attempt_at(self.SCHEDULE, 1, now=NOW, retry_after=60) == NOW + 60

    def test_retry_after_never_lowers_delay(self) -> None:
        """A shorter Retry-After does not hurry the schedule."""
        assert next_attempt_at(self.SCHEDULE, 2, now=NOW, retry_after=1) == NOW + 300

    def test_retry_after_is_capped(self) -> None:
        """A receiver cannot park a delivery for more than a day."""
        due = next_attempt_at(self.SCHEDULE, 1, now=NOW, retry_after=10 * MAX_RETRY_AFTER)
        assert due == NOW + MAX_RETRY_AFTER

    def test_retry_after_does_not_extend_exhausted_schedule(self) -> None:
        """Retry-After changes when, not whether, another attempt is made."""
        assert next_attempt_at(self.SCHEDULE, 4, now=NOW, retry_after=5) is None
