"""Signed, expiring download links for local-folder mode (what a COS presigned URL is for COS).

Pure functions: this module performs no I/O and reads no clock; callers pass `now`.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote, urlencode

#: Bumped if the signed message layout ever changes, so old links stop verifying.
_VERSION = b"imagedrop-download-v1"


def _message(bucket: str, key: str, expires_at: int) -> bytes:
    # Length-prefixed fields: no choice of bucket/key characters can make two different
    # (bucket, key, expiry) triples produce the same message.
    parts = [_VERSION, bucket.encode("utf-8"), key.encode("utf-8"), str(expires_at).encode()]
    return b"".join(b"%d:%s" % (len(part), part) for part in parts)


def sign_download(signing_key: bytes, bucket: str, key: str, expires_at: int) -> str:
    """Hex HMAC-SHA256 that authorises GETting `bucket/key` until unix time `expires_at`."""
    return hmac.new(signing_key, _message(bucket, key, expires_at), hashlib.sha256).hexdigest()


def download_url(base_url: str, signing_key: bytes, bucket: str, key: str, expires_at: int) -> str:
    """`{base_url}/files/{bucket}/{key}?expires=…&sig=…`, the key percent-encoded but for '/'."""
    query = urlencode({"expires": expires_at, "sig": sign_download(signing_key, bucket, key,
                                                                   expires_at)})
    path = f"/files/{quote(bucket, safe='')}/{quote(key, safe='/')}"
    return f"{base_url.rstrip('/')}{path}?{query}"


def verify_download(
    signing_key: bytes, bucket: str, key: str, expires: str, sig: str, *, now: float
) -> bool:
    """True when `sig` signs (bucket, key, expires) and `now` is before the expiry.

    `expires` and `sig` come straight from the query string; anything malformed is False.
    """
    if not expires.isascii() or not expires.isdigit() or len(expires) > 20:
        return False
    expires_at = int(expires)
    if now >= expires_at:
        return False
    if not sig.isascii():
        # compare_digest refuses non-ASCII str; such a signature cannot be ours anyway.
        return False
    expected = sign_download(signing_key, bucket, key, expires_at)
    return hmac.compare_digest(expected, sig)  # exactly: the signature is lower-case hex


__all__ = ["download_url", "sign_download", "verify_download"]
