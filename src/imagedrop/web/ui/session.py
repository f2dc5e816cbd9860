"""The dashboard's session and CSRF tokens (pure): a signed, expiring cookie value naming which
API key logged in (by fingerprint, so removing the key ends its sessions), and a CSRF token
bound to it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterable

#: How long a dashboard login lasts.
SESSION_SECONDS = 8 * 3600
COOKIE = "imagedrop_ui"
CSRF_HEADER = "X-CSRF-Token"


def secret_for(api_keys: Iterable[str]) -> bytes:
    """The key that signs sessions, derived from the API keys every replica shares (so a
    session is good on any replica and across restarts, and changing the keys ends them)."""
    joined = "\x1f".join(sorted(api_keys)).encode()
    return hmac.new(b"imagedrop-ui-session", joined, hashlib.sha256).digest()


def fingerprint(api_key: str) -> str:
    """Which key signed in, without the key (a keyed hash: a leaked cookie reveals nothing)."""
    return hmac.new(b"imagedrop-ui-key", api_key.encode(), hashlib.sha256).hexdigest()[:24]


def _same(a: str, b: str) -> bool:
    """A constant-time comparison that refuses non-ASCII instead of raising."""
    return a.isascii() and b.isascii() and hmac.compare_digest(a.encode(), b.encode())


def _mac(secret: bytes, text: str) -> str:
    digest = hmac.new(secret, text.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def make_session(secret: bytes, api_key: str, now: float) -> str:
    """A cookie value for a login with `api_key`, valid for SESSION_SECONDS."""
    body = base64.urlsafe_b64encode(json.dumps(
        {"k": fingerprint(api_key), "exp": int(now + SESSION_SECONDS)},
        separators=(",", ":")).encode()).decode().rstrip("=")
    return f"{body}.{_mac(secret, 'session:' + body)}"


def valid_session(secret: bytes, value: str | None, api_keys: Iterable[str], now: float) -> bool:
    """Whether `value` is a session this service signed, not expired, for a key it still has."""
    if not value or len(value) > 512 or not value.isascii() or value.count(".") != 1:
        return False
    body, mac = value.split(".")
    if not _same(mac, _mac(secret, "session:" + body)):
        return False
    try:
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        expires, key = float(claims["exp"]), str(claims["k"])
    except (ValueError, KeyError, TypeError):
        return False
    return now < expires and any(_same(key, fingerprint(k)) for k in api_keys)


def csrf_token(secret: bytes, session: str) -> str:
    """The token a page of this session sends back with each action."""
    return _mac(secret, "csrf:" + session)[:32]


def valid_csrf(secret: bytes, session: str, token: str | None) -> bool:
    return bool(token) and _same(csrf_token(secret, session), token or "")
