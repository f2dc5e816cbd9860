"""Standard Webhooks signing: published vectors, the reference library, tolerance, rotation."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from imagedrop.delivery.signing import (
    SignatureError,
    generate_secret,
    sign,
    signature_headers,
    verify,
)
from imagedrop.errors import InputError

# Published vector from standard-webhooks/standard-webhooks,
# libraries/python/tests/test_webhooks.py (test_sign_function and DEFAULT_* constants).
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
# The same file's "invalid signature" example: the vector with its last character changed.
VECTOR_BAD_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="


class TestRotation:
    """Two secrets during a rotation: one signature each, so either secret verifies."""

    def test_both_signatures_verify(self) -> None:
        new, old = generate_secret(), generate_secret()
        headers = signature_headers([new, old], VECTOR_ID, int(time.time()), VECTOR_BODY)
        assert headers["webhook-signature"].count("v1,") == 2
        for secret in (new, old):
            Webhook(secret).verify(VECTOR_BODY, headers)  # the reference library accepts it
        with pytest.raises(WebhookVerificationError):
            Webhook(generate_secret()).verify(VECTOR_BODY, headers)


class TestSign:
    """sign() and signature_headers() produce Standard Webhooks v1 values."""

    def test_matches_published_vector(self) -> None:
        """The spec library's test vector signs to the published signature."""
        assert sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIG

    def test_unprefixed_and_unpadded_secrets_work(self) -> None:
        """The whsec_ prefix is optional, and missing base64 padding is tolerated."""
        bare = VECTOR_SECRET.removeprefix("whsec_")
        assert sign(bare, VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIG
        padded = "whsec_" + base64.b64encode(b"k" * 25).decode()
        assert padded.endswith("=")
        unpadded = padded.rstrip("=")
        assert sign(unpadded, "id", 1, b"x") == sign(padded, "id", 1, b"x")

    def test_headers_carry_id_timestamp_signature(self) -> None:
        """The three headers hold the id, the integer timestamp and the signature."""
        headers = signature_headers(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY)
        assert headers == {
            "webhook-id": VECTOR_ID,
            "webhook-timestamp": str(VECTOR_TS),
            "webhook-signature": VECTOR_SIG,
        }

    def test_bad_secret_is_a_value_error(self) -> None:
        """A secret that is not base64 is refused clearly."""
        with pytest.raises(ValueError, match="whsec_"):
            sign("whsec_not*base64!", "id", 1, b"x")


class TestGenerateSecret:
    """generate_secret() makes usable, distinct secrets."""

    def test_shape(self) -> None:
        """whsec_ followed by base64 of 24..64 bytes, and never twice the same."""
        secret = generate_secret()
        assert secret.startswith("whsec_")
        assert 24 <= len(base64.b64decode(secret.removeprefix("whsec_"))) <= 64
        assert generate_secret() != secret

    def test_size_bounds(self) -> None:
        """Sizes outside the spec's 24..64 bytes are refused."""
        with pytest.raises(ValueError):
            generate_secret(16)


class TestReferenceLibrary:
    """Our signatures and the reference library's agree both ways."""

    def test_reference_verifies_ours(self) -> None:
        """standardwebhooks.Webhook.verify accepts headers we made."""
        secret = generate_secret()
        body = b'{"type":"image.completed","timestamp":"2026-01-01T00:00:00Z","data":{}}'
        headers = signature_headers(secret, "msg_1", int(time.time()), body)
        assert Webhook(secret).verify(body, headers)["type"] == "image.completed"

    def test_reference_rejects_ours_when_tampered(self) -> None:
        """A changed body fails the reference library's check."""
        secret = generate_secret()
        headers = signature_headers(secret, "msg_1", int(time.time()), b'{"a":1}')
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(b'{"a":2}', headers)

    def test_we_verify_the_reference(self) -> None:
        """verify() accepts what the reference library signs."""
        secret = generate_secret()
        now = int(time.time())
        body = b'{"x": 1}'
        sig = Webhook(secret).sign("msg_2", datetime.fromtimestamp(now, tz=UTC), body.decode())
        headers = {"webhook-id": "msg_2", "webhook-timestamp": str(now), "webhook-signature": sig}
        verify(secret, headers, body, now=now)

    def test_reference_signs_the_vector_like_us(self) -> None:
        """Both implementations give the published signature."""
        ref = Webhook(VECTOR_SECRET).sign(
            VECTOR_ID, datetime.fromtimestamp(VECTOR_TS, tz=UTC), VECTOR_BODY.decode()
        )
        assert ref == VECTOR_SIG == sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY)


def _headers(sig: str = VECTOR_SIG, ts: int = VECTOR_TS) -> dict[str, str]:
    return {"webhook-id": VECTOR_ID, "webhook-timestamp": str(ts), "webhook-signature": sig}


class TestVerify:
    """verify() accepts exactly the valid, fresh messages."""

    def test_valid_vector(self) -> None:
        """The published vector verifies at its own time."""
        verify(VECTOR_SECRET, _headers(), VECTOR_BODY, now=VECTOR_TS)

    def test_header_names_are_case_insensitive(self) -> None:
        """Receivers see header names in any case."""
        headers = {k.title(): v for k, v in _headers().items()}
        verify(VECTOR_SECRET, headers, VECTOR_BODY, now=VECTOR_TS)

    @pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
    def test_missing_header(self, missing: str) -> None:
        """Each of the three headers is required."""
        headers = _headers()
        del headers[missing]
        with pytest.raises(SignatureError, match="missing"):
            verify(VECTOR_SECRET, headers, VECTOR_BODY, now=VECTOR_TS)

    def test_non_integer_timestamp(self) -> None:
        """A timestamp that is not an integer is refused."""
        headers = _headers() | {"webhook-timestamp": "hello"}
        with pytest.raises(SignatureError):
            verify(VECTOR_SECRET, headers, VECTOR_BODY, now=VECTOR_TS)

    def test_wrong_signature(self) -> None:
        """The spec's invalid-signature example is refused."""
        with pytest.raises(SignatureError, match="no matching"):
            verify(VECTOR_SECRET, _headers(VECTOR_BAD_SIG), VECTOR_BODY, now=VECTOR_TS)

    def test_tampered_body(self) -> None:
        """One changed byte of body breaks the signature."""
        with pytest.raises(SignatureError):
            verify(VECTOR_SECRET, _headers(), VECTOR_BODY.replace(b"2", b"3"), now=VECTOR_TS)

    def test_other_version_is_ignored(self) -> None:
        """A v1a/v2 entry with the right bytes does not count as v1."""
        sig = VECTOR_SIG.replace("v1,", "v2,")
        with pytest.raises(SignatureError):
            verify(VECTOR_SECRET, _headers(sig), VECTOR_BODY, now=VECTOR_TS)

    def test_rotation_second_signature_valid(self) -> None:
        """During key rotation any one of several space-separated signatures may match."""
        old = sign(generate_secret(), VECTOR_ID, VECTOR_TS, VECTOR_BODY)
        verify(VECTOR_SECRET, _headers(f"{old} {VECTOR_SIG}"), VECTOR_BODY, now=VECTOR_TS)

    def test_rotation_with_junk_entries(self) -> None:
        """Malformed entries next to a valid one do not break verification."""
        sigs = f"v1,!!notbase64 garbage v2,{VECTOR_SIG[3:]} {VECTOR_SIG}"
        verify(VECTOR_SECRET, _headers(sigs), VECTOR_BODY, now=VECTOR_TS)

    @pytest.mark.parametrize("offset", [-300, 300])
    def test_tolerance_edges_accepted(self, offset: int) -> None:
        """A timestamp exactly `tolerance` seconds away is still accepted."""
        verify(VECTOR_SECRET, _headers(), VECTOR_BODY, now=VECTOR_TS - offset)

    def test_too_old(self) -> None:
        """A timestamp older than the tolerance is refused."""
        with pytest.raises(SignatureError, match="too old"):
            verify(VECTOR_SECRET, _headers(), VECTOR_BODY, now=VECTOR_TS + 301)

    def test_too_new(self) -> None:
        """A timestamp further ahead than the tolerance is refused."""
        with pytest.raises(SignatureError, match="too new"):
            verify(VECTOR_SECRET, _headers(), VECTOR_BODY, now=VECTOR_TS - 301)

    def test_custom_tolerance(self) -> None:
        """The tolerance is a parameter."""
        with pytest.raises(SignatureError):
            verify(VECTOR_SECRET, _headers(), VECTOR_BODY, now=VECTOR_TS + 11, tolerance=10)

    def test_signature_error_is_an_input_error(self) -> None:
        """A bad signature is the caller's fault (a 4xx), not ours."""
        assert issubclass(SignatureError, InputError)
