"""Secret redaction for text that may reach a log line: URL user-info and query strings,
Bearer tokens, `whsec_` values and every configured secret value (pure, no I/O)."""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@?#'\"<>]*@")
_QUERY = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s?#'\"<>]*)\?[^\s#'\"<>]*")
_BEARER = re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]+")
_WHSEC = re.compile(r"whsec_[A-Za-z0-9+/=_-]*")
_KEYWORDS = re.compile(
    r"(?i)\b(api[_-]?key|secret[_-]?access[_-]?key|access[_-]?token|password|passwd|"
    r"token)(['\"]?\s*[:=]\s*['\"]?)[^\s'\",;&]+")


class Redactor:
    """Replaces secrets in text; configured values of at least 6 characters are masked."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)
        self._values = re.compile("|".join(map(re.escape, values))) if values else None

    def text(self, text: str) -> str:
        """`text` with every secret masked."""
        if self._values is not None:
            text = self._values.sub(MASK, text)
        text = _USERINFO.sub(rf"\1{MASK}@", text)
        text = _QUERY.sub(rf"\1?{MASK}", text)
        text = _BEARER.sub(rf"\1\2{MASK}", text)
        text = _WHSEC.sub(f"whsec_{MASK}", text)
        return _KEYWORDS.sub(rf"\1\2{MASK}", text)

    def value(self, value: object) -> object:
        """A log value with its strings masked (containers walked, other types kept)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.value(v) for v in value)
        if isinstance(value, BaseException | bytes):
            return self.text(repr(value) if isinstance(value, bytes) else str(value))
        return value


__all__ = ["MASK", "Redactor"]
