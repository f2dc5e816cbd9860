"""Shared test setup: a clean environment, quiet logs, and the real fakes as fixture plugins."""

from __future__ import annotations

import os

import pytest
import structlog

# Each fake lives in its own module and exposes fixtures; listing them here makes them global.
pytest_plugins = [
    "tests.fakes.s3",
    "tests.fakes.openai_server",
    "tests.fakes.receiver",
    "tests.e2e.procs",
]

_LEAKY_PREFIXES = ("COS_", "OPENAI_", "IMAGEDROP_", "AWS_", "HTTP_PROXY", "HTTPS_PROXY")


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's COS, OpenAI or imagedrop settings."""
    for name in list(os.environ):
        if name.upper().startswith(_LEAKY_PREFIXES) or name in ("http_proxy", "https_proxy"):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _reset_structlog() -> None:
    structlog.reset_defaults()
