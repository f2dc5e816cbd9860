"""Small pure helpers the notification parsers share: JSON, dotted lookups, sizes, kinds.

This module performs no I/O. Error messages name fields, never values, so no token or key
material from a body ends up in logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from imagedrop import jsondoc
from imagedrop.events.model import EventError, Kind

_MISSING = object()


def load_json(body: bytes | str, what: str = "body") -> Any:
    """Parse JSON or raise EventError saying why it is not JSON."""
    if not body or not body.strip():
        raise EventError(f"{what} is empty: expected JSON")
    try:
        return jsondoc.loads(body, what)
    except jsondoc.JsonRefused as exc:  # says why without quoting the document
        raise EventError(str(exc)) from None


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def dig(doc: Any, path: str) -> Any:
    """The value at a dotted path (`s3.object.key`), or None when any step is missing."""
    value = doc
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part, _MISSING)
        if value is _MISSING:
            return None
    return value


def require_str(doc: Any, path: str, where: str) -> str:
    """A non-empty string at `path`, or EventError("<where> has no <path>")."""
    value = dig(doc, path)
    if value is None:
        raise EventError(f"{where} has no {path}")
    if not isinstance(value, str):
        raise EventError(f"{where} has {path} that is {json_type(value)}, not a string")
    if not value:
        raise EventError(f"{where} has an empty {path}")
    return value


def opt_str(value: Any) -> str | None:
    """A non-empty string, else None (producers send "" and null for "not applicable")."""
    if isinstance(value, str) and value:
        return value
    return None


def parse_size(value: Any) -> int | None:
    """A byte count from an int or a decimal string (COS, Ceph); anything else is None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float):
        return int(value) if value.is_integer() and value >= 0 else None
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit():
            try:
                return int(text)
            except ValueError:  # beyond Python's int-from-string digit limit
                return None
    return None


_COS_TYPES: dict[str, Kind] = {
    "com.ibm.cloud.cos.document.write": "created",  # create *or* overwrite
    "com.ibm.cloud.cos.document.delete": "deleted",
    "object:write": "created",  # COS body `operation` / `notification.event_type`
    "object:delete": "deleted",
}


def classify(raw_type: str) -> Kind:
    """created / deleted / other for any producer's event type.

    Accepts COS (`com.ibm.cloud.cos.document.write`, `Object:Write`), S3 record names with or
    without `s3:` (`ObjectCreated:Put`), the CloudEvents S3 adapter's `com.amazonaws.s3.` prefix,
    and EventBridge detail-types (`Object Created`).
    """
    name = raw_type.strip()
    if name.lower() in _COS_TYPES:
        return _COS_TYPES[name.lower()]
    # CloudEvents S3 adapter: "com.amazonaws.s3." + eventName; Ceph: "com.amazonaws." + eventName.
    name = name.removeprefix("com.amazonaws.s3.").removeprefix("com.amazonaws.").removeprefix("s3:")
    if name.startswith("ObjectCreated:") or name.endswith("Object Created"):
        return "created"
    if name.startswith("ObjectRemoved:") or name.endswith("Object Deleted"):
        return "deleted"
    # Ceph's lifecycle expiration removes the object just as a delete does.
    if name.startswith("ObjectLifecycle:Expiration:") and "Multipart" not in name:
        return "deleted"
    return "other"
