"""Load the recorded notification samples in tests/samples/events (see its README)."""

from __future__ import annotations

import json
from pathlib import Path

from imagedrop.events import ParsedNotification, parse_notification

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "events"


def load(producer: str, case: str) -> tuple[dict[str, str], bytes, dict[str, str]]:
    """(headers, body bytes, query) of one recorded request."""
    folder = SAMPLES / producer
    body = (folder / f"{case}.json").read_bytes()
    headers = _optional(folder / f"{case}.headers.json")
    query = _optional(folder / f"{case}.query.json")
    return headers, body, query


def parse_sample(producer: str, case: str) -> ParsedNotification:
    """parse_notification over one recorded request."""
    headers, body, query = load(producer, case)
    return parse_notification(headers, body, query)


def _optional(path: Path) -> dict[str, str]:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
