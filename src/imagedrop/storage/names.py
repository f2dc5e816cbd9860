"""The one check of bucket names, object keys and prefixes, for both stores.

A name that breaks a rule raises `InvalidObjectName` (a caller error: 400 at request time, a
failed job with the reason later). Messages quote the name escaped, never a server path.
"""

from __future__ import annotations

import re

from imagedrop.errors import InputError

#: S3's limit on a key, in UTF-8 bytes.
KEY_MAX_BYTES = 1024
#: A local key segment becomes a file name (NAME_MAX 255) whose sidecar adds "." and ".json".
LOCAL_SEGMENT_MAX_BYTES = 249
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_S3_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


class InvalidObjectName(InputError):
    """Raised when a bucket name, key or prefix is not one imagedrop reads or writes."""

    status = 400

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def _shown(name: str) -> str:
    shown = name if len(name) <= 80 else f"{name[:60]}…({len(name)} characters)"
    return ascii(shown)


def _utf8_len(name: str, what: str, field: str) -> int:
    try:
        return len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidObjectName(f"{what} {_shown(name)} is not valid Unicode (a lone "
                                "surrogate)", field) from None


def check_bucket(bucket: str, *, local: bool) -> None:
    """Local: one folder name (no separators, not hidden); COS/S3: the S3 bucket rules."""
    what = "bucket name"
    if not bucket:
        raise InvalidObjectName(f"{what} is empty", "bucket")
    size = _utf8_len(bucket, what, "bucket")
    if _CONTROL.search(bucket):
        raise InvalidObjectName(f"{what} {_shown(bucket)} contains control characters",
                                "bucket")
    if local:
        if size > 255 or bucket.startswith(".") or any(c in bucket for c in "/\\"):
            raise InvalidObjectName(
                f"{what} {_shown(bucket)} is not allowed in local mode: one folder name of at "
                "most 255 bytes, not hidden ('.name'), without '/' or '\\'", "bucket")
    elif not _S3_BUCKET.fullmatch(bucket) or ".." in bucket:
        raise InvalidObjectName(
            f"{what} {_shown(bucket)} is not an S3 bucket name: 3-63 characters of a-z, 0-9, "
            "'.' and '-', starting and ending with a letter or digit", "bucket")


def _check_path(name: str, what: str, field: str, *, local: bool, prefix: bool) -> None:
    size = _utf8_len(name, what, field)
    if size > KEY_MAX_BYTES:
        raise InvalidObjectName(f"{what} is {size} bytes long, over the {KEY_MAX_BYTES}-byte "
                                "limit", field)
    if _CONTROL.search(name):
        raise InvalidObjectName(f"{what} {_shown(name)} contains control characters "
                                "(NUL, newline, …)", field)
    if prefix and not name:
        return
    whole = not prefix or name.endswith("/")  # else the last part may be a partial name
    parts = (name[:-1] if prefix and whole else name).split("/")
    for part in parts if whole else parts[:-1]:
        if part in ("", ".", ".."):
            raise InvalidObjectName(
                f"{what} {_shown(name)} has an empty, '.' or '..' segment (or a leading '/')",
                field)
    if not local:
        return
    for part in parts:
        if part.startswith(".") or "\\" in part:
            raise InvalidObjectName(
                f"{what} {_shown(name)} is not allowed in local mode: no hidden ('.name') "
                "segments and no '\\'", field)
        if len(part.encode("utf-8")) > LOCAL_SEGMENT_MAX_BYTES:
            raise InvalidObjectName(
                f"{what} has a segment of {len(part.encode('utf-8'))} bytes, over the "
                f"{LOCAL_SEGMENT_MAX_BYTES}-byte limit of local mode", field)


def check_key(key: str, *, local: bool, field: str = "key") -> None:
    """An object key: 1-1024 UTF-8 bytes, no control characters, no empty/'.'/'..' segment."""
    if not key:
        raise InvalidObjectName("object key is empty", field)
    _check_path(key, "object key", field, local=local, prefix=False)


def check_prefix(prefix: str, *, local: bool, field: str = "prefix") -> None:
    """A folder prefix: like a key, but may be empty and its last segment may be partial."""
    _check_path(prefix, "prefix", field, local=local, prefix=True)


__all__ = ["KEY_MAX_BYTES", "LOCAL_SEGMENT_MAX_BYTES", "InvalidObjectName", "check_bucket",
           "check_key", "check_prefix"]
