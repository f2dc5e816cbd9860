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


SECRET = "s3cr3t-planted-VALUE"


@pytest.mark.parametrize("as_json", [True, False])
def test_secrets_never_reach_a_line(capsys, as_json):
    """Configured values, URL user-info and query strings, Bearer tokens and whsec_ values are
    masked in structlog and stdlib lines alike, tracebacks included."""
    logs.configure(json=as_json, level="INFO", secrets=[SECRET])
    url = f"http://user:{SECRET}@cos.example.com/b/k?X-Amz-Signature=abcdef123456"
    log = structlog.get_logger("imagedrop.x")
    log.warning("sweep_failed", endpoint=url, nested={"k": [f"Bearer {SECRET}x"]})
    try:
        raise RuntimeError(f"Could not connect to the endpoint URL: {url!r}")
    except RuntimeError:
        log.exception("job_unexpected_error")
        logging.getLogger("ibm_botocore").exception("retry failed: %s", url)
    logging.getLogger("aiohttp.server").error("hook whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    err = capsys.readouterr().err
    assert err.count("Traceback") == 2 and "cos.example.com" in err
    for leaked in (SECRET, "user:", "abcdef123456", "MfKQ9r8GKYqr"):
        assert leaked not in err


def test_transient_failure_is_a_warning_without_traceback(capsys):
    from imagedrop.errors import StorageUnavailable

    logs.configure(json=True, level="INFO")
    try:
        raise StorageUnavailable("local put b/k: No space left on device")
    except StorageUnavailable:
        structlog.get_logger("imagedrop.x").exception("sweep_failed")
    line = json.loads(capsys.readouterr().err)
    assert line["level"] == "warning" and "exception" not in line
    assert "No space left" in line["error"]
