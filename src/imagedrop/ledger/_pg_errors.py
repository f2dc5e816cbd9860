"""Driver errors translated once, at the PostgreSQL ledger's boundary, into imagedrop's errors.

What may pass (the server is unreachable, full, restarting, or a transaction lost a race) is a
TransientError; what the caller broke (a constraint) is a PermanentError. Texts are redacted.
"""

from __future__ import annotations

import asyncpg

from imagedrop.errors import ImagedropError, PermanentError, TransientError
from imagedrop.ledger._pg_url import redact

# SQLSTATE classes that say "try again": 08 connection exception, 40 transaction rollback
# (serialization failure, deadlock), 53 insufficient resources (too many connections, disk
# full), 57 operator intervention (shutdown, cannot connect now); 55P03 lock not available.
_TRANSIENT_CLASSES = ("08", "40", "53", "57")
_TRANSIENT_STATES = ("55P03",)

DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError,
)


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same call later may succeed."""
    if isinstance(exc, OSError | TimeoutError | asyncpg.InterfaceError):
        return True  # refused, reset, timed out, or the connection closed under us
    state = getattr(exc, "sqlstate", None) or ""
    return state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_STATES


def translate(exc: BaseException, secrets: list[str], where: str) -> ImagedropError:
    """The imagedrop error for a driver error; its text never holds the DSN or password."""
    detail = redact(f"{type(exc).__name__}: {exc}", secrets)
    if is_transient(exc):
        return TransientError(f"ledger unavailable ({where}): {detail}")
    return PermanentError(f"ledger refused the change: {detail}")
