"""CloudEvents 1.0 over HTTP: binary mode (`ce-*` headers), structured mode and batches.

This module performs no I/O: it turns headers or an envelope into a `CloudEvent` (attributes
plus decoded data) and leaves the data to the caller. Extension attributes such as Code
Engine's `--extension token=X` arrive as `ce-token` headers in binary mode.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from imagedrop import jsondoc
from imagedrop.events._common import json_type, load_json, opt_str, require_str
from imagedrop.events.model import EventError

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
#: The extension attribute an intake token travels in (header `ce-token` in binary mode).
TOKEN_ATTRIBUTE = "token"


@dataclass(frozen=True, slots=True)
class CloudEvent:
    """A CloudEvent's context attributes (lower-case names) and its data, JSON-decoded."""

    attributes: dict[str, str] = field(repr=False)  # may hold the intake token
    data: Any = None
    data_is_json: bool = True  # False when data arrived as text/bytes that are not JSON

    @property
    def type(self) -> str:
        """The `type` attribute (always present: enforced on construction)."""
        return self.attributes["type"]

    @property
    def token(self) -> str | None:
        """The intake token extension attribute, if the producer set one."""
        return opt_str(self.attributes.get(TOKEN_ATTRIBUTE))


def media_type(content_type: str | None) -> str:
    """`application/cloudevents+json; charset=utf-8` → `application/cloudevents+json`."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_binary(headers: Mapping[str, str]) -> bool:
    """Whether lower-cased request headers carry a binary-mode CloudEvent."""
    return bool(opt_str(headers.get("ce-type")))


def is_envelope(doc: Any) -> bool:
    """Whether a decoded JSON value is a structured-mode CloudEvent envelope."""
    return isinstance(doc, Mapping) and "specversion" in doc and "type" in doc


def from_headers(headers: Mapping[str, str], body: bytes) -> CloudEvent:
    """A binary-mode CloudEvent: attributes from `ce-*` headers, data is the body."""
    attributes = {name[3:]: value for name, value in headers.items() if name.startswith("ce-")}
    if not body or not body.strip():
        return CloudEvent(attributes=attributes, data=None)
    if _is_json_media(media_type(headers.get("content-type"))):
        return CloudEvent(attributes=attributes, data=load_json(body))
    try:
        return CloudEvent(attributes=attributes, data=jsondoc.loads(body))
    except ValueError:
        return CloudEvent(attributes=attributes, data=None, data_is_json=False)


def from_envelope(doc: Any, where: str = "CloudEvent") -> CloudEvent:
    """A structured-mode CloudEvent; `data_base64` is decoded, JSON data parsed."""
    if not isinstance(doc, Mapping):
        raise EventError(f"{where} is {json_type(doc)}, not an object")
    require_str(doc, "type", where)
    attributes = {str(name).lower(): value for name, value in doc.items()
                  if name not in ("data", "data_base64") and isinstance(value, str)}
    content = media_type(attributes.get("datacontenttype")) or "application/json"
    if "data_base64" in doc:
        raw = doc["data_base64"]
        if not isinstance(raw, str):
            raise EventError(f"{where} has data_base64 that is {json_type(raw)}, not a string")
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise EventError(f"{where} has data_base64 that is not base64") from None
        return _with_text_data(attributes, data, content, where)
    payload = doc.get("data")
    if isinstance(payload, str):
        # Some producers serialise JSON data twice; plain text simply stays a string.
        try:
            payload = jsondoc.loads(payload)
        except ValueError:
            pass
    return CloudEvent(attributes=attributes, data=payload)


def _with_text_data(attributes: dict[str, str], data: bytes, content: str,
                    where: str) -> CloudEvent:
    try:
        return CloudEvent(attributes=attributes, data=jsondoc.loads(data))
    except ValueError:
        if _is_json_media(content):
            raise EventError(f"{where} data is not JSON although its datacontenttype "
                             f"is {content}") from None
        return CloudEvent(attributes=attributes, data=None, data_is_json=False)


def _is_json_media(content: str) -> bool:
    return content in ("application/json", "text/json") or content.endswith("+json")
