"""The intake token a producer can carry, found without judging it, and a constant-time check.

This module performs no I/O. Where each producer can put a shared secret:
MinIO `auth_token` → `Authorization: Bearer X` (sent verbatim when already two words);
Code Engine `--extension token=X` → header `ce-token`; SNS and Ceph → `?token=X` on the
subscribed URL.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping

QUERY_PARAMETER = "token"
CE_HEADER = "ce-token"


def extract_token(
    headers: Mapping[str, str],
    query: Mapping[str, str],
    *,
    envelope_token: str | None = None,
) -> str | None:
    """The first token found: Authorization, ce-token, a structured CloudEvent's `token`
    attribute (`envelope_token`), then the `token` query parameter. Empty values count as none.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    for candidate in (
        _from_authorization(lowered.get("authorization")),
        lowered.get(CE_HEADER),
        envelope_token,
        query.get(QUERY_PARAMETER),
    ):
        if candidate and candidate.strip():
            return candidate.strip()
    return None


def _from_authorization(value: str | None) -> str | None:
    """`Bearer X` → X; any other value (MinIO's verbatim two-word form) is the token as is."""
    if not value:
        return None
    scheme, _, credential = value.strip().partition(" ")
    if scheme.lower() == "bearer":
        return credential.strip() or None
    return value.strip()


def matches_any(presented: str | None, expected: Iterable[str]) -> bool:
    """Whether `presented` equals one of `expected`, comparing against every key so the time
    taken does not reveal which one matched. No token presented never matches."""
    given = (presented or "").encode()
    return bool(presented) and any(
        [hmac.compare_digest(given, key.encode()) for key in expected])


def check_token(expected: str | None, presented: str | None) -> bool:
    """Whether `presented` matches `expected`, in constant time; no expected token → True."""
    if not expected:
        return True
    if presented is None:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())
