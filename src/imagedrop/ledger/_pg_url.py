"""Pure helpers for the PostgreSQL ledger: URL options, schema names, and safe error texts.

Nothing here imports the driver, so the missing-driver message can be built without it.
"""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from imagedrop.errors import ConfigError

INSTALL_HINT = "pip install 'imagedrop[postgres]'"
SCHEMES = ("postgresql", "postgres")
# Lower-case, unquoted-identifier names only: they need no quoting in search_path and cannot
# smuggle SQL into the CREATE SCHEMA we build from them.
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class ParsedUrl(NamedTuple):
    """A DSN for the driver (our own options removed) and the schema it asked for."""

    dsn: str
    schema: str | None


def missing_driver_message(module: str | None = "asyncpg") -> str:
    """What to tell an operator who chose PostgreSQL without installing its driver."""
    missing = f" ({module} is not installed)" if module else ""
    return f"the PostgreSQL ledger needs its driver{missing}: {INSTALL_HINT}"


def check_schema(schema: str | None) -> str | None:
    """Return `schema` if it is a plain lower-case identifier; raise ConfigError otherwise."""
    if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
        raise ConfigError(
            "PostgreSQL schema must be a lower-case identifier ([a-z_][a-z0-9_]*, ≤ 63 chars)"
        )
    return schema


def parse_url(url: str) -> ParsedUrl:
    """Split `postgresql://…[?schema=name&…]`: `schema` is ours, the rest goes to the driver.

    Error texts name the problem but never repeat the URL (it may hold a password).
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        raise ConfigError("IMAGEDROP_DATABASE_URL: malformed PostgreSQL URL") from None
    if parts.scheme not in SCHEMES:
        raise ConfigError("IMAGEDROP_DATABASE_URL: expected postgresql://…")
    query = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [value for name, value in query if name == "schema"]
    rest = [(name, value) for name, value in query if name != "schema"]
    schema = check_schema(schemas[-1]) if schemas else None
    dsn = urlunsplit(parts._replace(query=urlencode(rest, quote_via=quote)))
    return ParsedUrl(dsn, schema)


def secrets_of(dsn: str) -> list[str]:
    """The strings a message must not contain: the DSN itself and its password, if any."""
    found = [dsn]
    try:
        parts = urlsplit(dsn)
        password = parts.password
    except ValueError:  # unparsable: only the whole DSN can be hidden
        return found
    if password:
        found += [password, unquote(password), quote(password, safe="")]
    found += [value for name, value in parse_qsl(parts.query) if name == "password"]
    # Longest first, so the DSN is removed whole before its password is looked for.
    return sorted({s for s in found if s}, key=len, reverse=True)


def redact(text: str, secrets: list[str]) -> str:
    """`text` with every secret replaced by `***`."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def where(dsn: str) -> str:
    """`host:port/database` for messages: enough to find the server, no credentials."""
    try:
        parts = urlsplit(dsn)
        host = parts.hostname or "localhost"
        port = parts.port or 5432
    except ValueError:
        return "PostgreSQL"
    return f"{host}:{port}{parts.path or '/'}"
