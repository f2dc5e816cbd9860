"""One log pipeline: structlog and stdlib logging (aiohttp, asyncpg, botocore) rendered alike,
JSON lines when not on a TTY, readable lines on one (coloured only on a terminal).

Context (request_id, job_id, bucket, key, delivery_id) is bound with structlog.contextvars by
the callers: a request's id follows into the jobs it records and their callbacks. Every line,
tracebacks included, passes `redact_secrets` last: no secret is ever written.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

from imagedrop.errors import TransientError
from imagedrop.redact import Redactor

_QUIET = ("aiohttp.access", "ibm_botocore", "ibm_boto3", "urllib3", "httpx2", "openai",
          "asyncio")


_redactor = Redactor()
_KEEP = frozenset({"timestamp", "level", "logger"})


def redact_secrets(_logger: object, _name: str, event: MutableMapping[str, Any]
                   ) -> MutableMapping[str, Any]:
    """structlog processor: mask secrets in every value (the rendered traceback included)."""
    for key, value in list(event.items()):
        if key not in _KEEP:
            event[key] = _redactor.value(value)
    return event


def transient_without_traceback(_logger: object, _name: str, event: MutableMapping[str, Any]
                                ) -> MutableMapping[str, Any]:
    """structlog processor: an expected transient failure (store or ledger down, disk full)
    is a one-line warning saying what, not an error with a traceback."""
    exc = event.get("exc_info")
    if exc is True:
        exc = sys.exc_info()[1]
    elif isinstance(exc, tuple):
        exc = exc[1]
    if isinstance(exc, TransientError):
        del event["exc_info"]
        event["error"] = f"{type(exc).__name__}: {exc}"
        if event.get("level") in ("error", "critical", "exception"):
            event["level"] = "warning"
    return event


def configure(*, json: bool | None = None, level: str = "INFO",
              secrets: Iterable[str] = ()) -> None:
    """Route structlog and stdlib logging to stderr; `json=None` means JSON unless on a TTY.

    `secrets` (e.g. `Settings.secret_values()`) are masked wherever they appear."""
    global _redactor
    _redactor = Redactor(secrets)
    tty = sys.stderr.isatty()
    if json is None:
        json = not tty
    threshold = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=tty)
    )
    structlog.configure(
        processors=[*shared, transient_without_traceback, structlog.processors.format_exc_info,
                    redact_secrets, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Libraries log through stdlib logging: the same processors render their records, so a
    # run has one format. They stay at WARNING unless the level asks for more.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    transient_without_traceback, structlog.processors.format_exc_info,
                    redact_secrets, renderer]))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(threshold)
    for noisy in _QUIET:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, threshold))
