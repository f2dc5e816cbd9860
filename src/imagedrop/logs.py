"""One log pipeline: structlog and stdlib logging (aiohttp, asyncpg, botocore) rendered alike,
JSON lines when not on a TTY, readable lines on one (coloured only on a terminal).

Context (request_id, job_id, bucket, key, delivery_id) is bound with structlog.contextvars by
the callers: a request's id follows into the jobs it records and their callbacks.
"""

from __future__ import annotations

import logging
import sys

import structlog

_QUIET = ("aiohttp.access", "ibm_botocore", "ibm_boto3", "urllib3", "httpx2", "openai",
          "asyncio")


def configure(*, json: bool | None = None, level: str = "INFO") -> None:
    """Route structlog and stdlib logging to stderr; `json=None` means JSON unless on a TTY."""
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
        processors=[*shared, structlog.processors.format_exc_info, renderer],
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
                    structlog.processors.format_exc_info, renderer]))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(threshold)
    for noisy in _QUIET:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, threshold))
