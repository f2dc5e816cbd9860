"""structlog set-up: one call at start-up; JSON lines when not on a TTY, readable lines when on one.

Context (job_id, bucket, key, delivery_id) is bound with structlog.contextvars by the callers.
"""

from __future__ import annotations

import logging
import sys

import structlog


def configure(*, json: bool | None = None, level: str = "INFO") -> None:
    """Route structlog and stdlib logging to stderr; `json=None` means JSON unless on a TTY."""
    if json is None:
        json = not sys.stderr.isatty()
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()
                                                            .get(level.upper(), logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Libraries (aiohttp access log, botocore) go through stdlib logging; keep them quiet.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s %(message)s")
    for noisy in ("aiohttp.access", "ibm_botocore", "ibm_boto3", "urllib3", "httpx2", "openai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
