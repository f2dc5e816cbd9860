"""One log pipeline: stdlib loggers (aiohttp, asyncpg, botocore) render like structlog's, and
nothing colours a log that is not going to a terminal."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from imagedrop import logs


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers, root.level = handlers, level
    structlog.reset_defaults()


def test_stdlib_loggers_render_like_structlog(capsys):
    logs.configure(json=True, level="INFO")
    logging.getLogger("asyncpg.pool").warning("pool %s is gone", "p1")
    structlog.get_logger("imagedrop.x").warning("ours", n=1)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    theirs, ours = lines
    assert theirs["event"] == "pool p1 is gone" and theirs["level"] == "warning"
    assert theirs["logger"] == "asyncpg.pool" and "timestamp" in theirs
    assert ours["event"] == "ours" and set(ours) >= {"level", "timestamp"}


def test_no_colour_codes_when_piped(capsys):
    logs.configure(json=False, level="INFO")  # stderr is not a TTY under pytest
    structlog.get_logger("imagedrop.x").info("plain", n=1)
    err = capsys.readouterr().err
    assert "plain" in err and "\x1b[" not in err
