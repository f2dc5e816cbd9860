"""The one JSON decoder for every body imagedrop accepts (WXO, /trigger, /replay, /events).

Refuses, with a message that says what was wrong and never quotes the document: bytes that are
not UTF-8, nesting deeper than `MAX_DEPTH`, lone UTF-16 surrogates, NaN/Infinity.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

#: Deeper documents are refused (no request of imagedrop's needs more than ~6).
MAX_DEPTH = 64

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class JsonRefused(ValueError):
    """Raised when a body is not JSON imagedrop accepts; the message says why."""


def _no_constant(name: str) -> Any:
    raise JsonRefused(f"{name} is not a JSON number")


def _check(value: Any, surrogates: bool) -> bool:
    """Refuse nesting over MAX_DEPTH and (when escapes were seen) lone surrogates, which
    cannot be stored or sent as UTF-8. Iterative: the check itself cannot recurse too deep.
    True when a number is a float of 2**63 or more (it may have been a long integer)."""
    huge = False
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                raise JsonRefused(f"nested too deeply: at most {MAX_DEPTH} levels of arrays "
                                  "and objects accepted")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        elif surrogates and isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise JsonRefused("contains a lone UTF-16 surrogate escape (\\ud800-\\udfff)"
                                  ) from None
        elif isinstance(item, float) and abs(item) >= 2.0 ** 63:
            huge = True
    return huge


def loads(raw: bytes | str, what: str = "request body") -> Any:
    """Decode `raw`, or raise JsonRefused("<what> is not …: <why>")."""
    if isinstance(raw, str):
        try:
            data = raw.encode("utf-8")
        except UnicodeEncodeError:
            raise JsonRefused(f"{what} is not JSON: not UTF-8 text") from None
    else:
        data = raw
    try:
        # orjson parses strict RFC 8259 about 3x faster (a 270 KB upload: 0.1 ms, not 0.3);
        # whatever it refuses goes to the standard parser, which decides and says why.
        value = orjson.loads(data)
        fast = True
    except orjson.JSONDecodeError:
        value, fast = _standard(data, what), False
    try:
        # Lone surrogates can only come from escapes: no backslash (one memchr), no check.
        huge = _check(value, surrogates=b"\\" in data and bool(_SURROGATE_ESCAPE.search(data)))
    except JsonRefused as exc:
        raise JsonRefused(f"{what} is not JSON: {exc}") from None
    if huge and fast:  # orjson rounds integers past 64 bits to floats: parse exactly
        value = _standard(data, what)
    return value


def _standard(data: bytes, what: str) -> Any:
    try:
        text = data.decode("utf-8-sig" if data.startswith(b"\xef\xbb\xbf") else "utf-8")
    except UnicodeDecodeError as exc:
        raise JsonRefused(f"{what} is not JSON: not UTF-8 text (bad byte at offset "
                          f"{exc.start})") from None
    try:
        return json.loads(text, parse_constant=_no_constant)
    except JsonRefused as exc:
        raise JsonRefused(f"{what} is not JSON: {exc}") from None
    except json.JSONDecodeError as exc:
        raise JsonRefused(f"{what} is not JSON: {exc.msg} at line {exc.lineno} "
                          f"column {exc.colno}") from None
    except RecursionError:
        raise JsonRefused(f"{what} is not JSON: nested too deeply: at most {MAX_DEPTH} "
                          "levels of arrays and objects accepted") from None
    except ValueError:  # an integer of more than 4,300 digits (Python's own limit)
        raise JsonRefused(f"{what} is not JSON: a number is too long") from None


__all__ = ["MAX_DEPTH", "JsonRefused", "loads"]
