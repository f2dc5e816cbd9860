"""Operator callback rewrite rules (`IMAGEDROP_CALLBACK_REWRITES`): the one parser of their
`host[:port]` parts, for the settings (checked at start-up) and the delivery policy (pure).
"""

from __future__ import annotations

from collections.abc import Sequence

from imagedrop.errors import ConfigError


def split_hostport(text: str) -> tuple[str, int | None]:
    """`host`, `host:port`, `[v6]` or `[v6]:port` → (lower-case host, port or None)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") or None
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, None
    if not host or (port is not None and not (port.isdigit() and 0 < int(port) < 65536)):
        raise ConfigError(f"IMAGEDROP_CALLBACK_REWRITES: {text!r} is not host[:port]")
    return host.lower(), (int(port) if port else None)


def check_rules(rules: Sequence[tuple[str, str]]) -> None:
    """Raise `ConfigError` for a rewrite rule that is not `host[:port]=host[:port]` (start-up)."""
    for src, dst in rules:
        split_hostport(src)
        split_hostport(dst)
