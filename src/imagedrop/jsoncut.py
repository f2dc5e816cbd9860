"""Base64 images cut out of JSON bytes instead of parsed: an upload's `image_base64`, an answer's
`b64_json`. Parsing copies a 0.3-1.4 MB string into a fresh Python object (GIL-held CPU and
memory touched for the first time, with every other request waiting); the cut is one slice.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from typing import Any

from imagedrop.imaging import CheckedBase64, is_canonical_base64


def cut_base64(raw: bytes, key: str, at: Callable[[Any], object],
               loads: Callable[[bytes], Any]) -> tuple[Any, CheckedBase64] | None:
    """`(document, value)` when the first `"key": "…"` in `raw` holds canonical base64 (which
    never needs escapes, so it ends at the next quote) and the rest, parsed by `loads` with a
    stand-in in its place, shows that stand-in exactly where `at(document)` looks; else None,
    and the caller parses `raw` whole. `loads` may raise: its errors are the caller's."""
    match = re.search(rb'"' + re.escape(key.encode()) + rb'"\s*:\s*"', raw)
    if match is None:
        return None
    start = match.end()
    end = raw.find(b'"', start)
    if end == -1 or not is_canonical_base64(value := raw[start:end]):
        return None
    # A stand-in no document holds by chance, nor by design: the cut holds only when the
    # parsed document has it where the value was meant to be (not in a nested object, a
    # duplicate key's loser, or a string that merely quotes the key).
    mark = secrets.token_hex(8)
    doc = loads(b"".join((raw[:start], b"\\u0000", mark.encode(), raw[end:])))
    return (doc, CheckedBase64(value)) if at(doc) == "\x00" + mark else None


__all__ = ["cut_base64"]
