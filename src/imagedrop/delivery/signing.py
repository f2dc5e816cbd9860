"""Standard Webhooks v1 signing and verification (HMAC-SHA256 over "id.timestamp.body").

This module performs no I/O of its own: it turns secrets, ids, timestamps and bytes into
headers and back, so senders, receivers and tests share one implementation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence

from imagedrop.errors import InputError

SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE = 300  # seconds either way, as the reference library allows


class SignatureError(InputError):
    """Raised when a webhook's headers are missing, stale or carry no matching signature."""

    status = 401


def generate_secret(nbytes: int = 32) -> str:
    """A fresh `whsec_` secret holding `nbytes` (24..64) random bytes."""
    if not 24 <= nbytes <= 64:
        raise ValueError("a Standard Webhooks secret holds 24 to 64 bytes")
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(nbytes)).decode("ascii")


def _key(secret: str) -> bytes:
    raw = secret.removeprefix(SECRET_PREFIX)
    try:
        # Tolerate unpadded base64 the way the reference library does.
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("webhook secret is not whsec_ followed by base64") from exc
    if not key:
        raise ValueError("webhook secret is empty")
    return key


def _digest(key: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return hmac.new(key, signed, hashlib.sha256).digest()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `v1,<base64>` signature of one message."""
    digest = _digest(_key(secret), msg_id, int(timestamp), body)
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_headers(secret: str | Sequence[str], msg_id: str, timestamp: int, body: bytes
                      ) -> dict[str, str]:
    """The three headers a signed delivery carries. With several secrets (a rotation: the new
    one and the old one), one signature each, space-separated, as Standard Webhooks allows:
    a receiver holding either secret verifies the message."""
    secrets = [secret] if isinstance(secret, str) else list(secret)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": " ".join(sign(s, msg_id, timestamp, body) for s in secrets),
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    tolerance: int = DEFAULT_TOLERANCE,
) -> None:
    """Check a received message; raise `SignatureError` unless one v1 signature matches."""
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = lowered.get("webhook-id")
    raw_ts = lowered.get("webhook-timestamp")
    raw_sigs = lowered.get("webhook-signature")
    if not (msg_id and raw_ts and raw_sigs):
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(raw_ts)
    except ValueError:
        raise SignatureError("webhook-timestamp is not an integer") from None
    if timestamp < now - tolerance:
        raise SignatureError("webhook-timestamp is too old")
    if timestamp > now + tolerance:
        raise SignatureError("webhook-timestamp is too new")

    expected = _digest(_key(secret), msg_id, timestamp, body)
    found = False
    # Several signatures are sent during key rotation; any one v1 match is enough, but every
    # candidate is compared so timing does not reveal which one matched.
    for candidate in raw_sigs.split():
        version, sep, value = candidate.partition(",")
        if version != "v1" or not sep:
            continue
        try:
            given = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
        found |= hmac.compare_digest(expected, given)
    if not found:
        raise SignatureError("no matching webhook signature")
