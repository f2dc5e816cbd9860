"""POST /events: every supported store notification, acknowledged once its jobs are recorded.

Parsing is pure (`imagedrop.events`); planning goes through the folder's manifest
(`imagedrop.drops`); duplicates are harmless because jobs are keyed by object version and
recipe. A malformed body is a 400 that says what is wrong; anything else is a 200 that lists
what was recorded and what was ignored, and why.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import structlog
from aiohttp import web
from prometheus_client import Counter

from imagedrop.config import Settings
from imagedrop.drops import DropPlanner, Skip
from imagedrop.errors import InputError, PermanentError
from imagedrop.events import (
    SubscriptionConfirmation,
    extract_token,
    matches_any,
    parse_notification,
)
from imagedrop.healing import Healer
from imagedrop.ledger import DropItem
from imagedrop.storage.names import InvalidObjectName
from imagedrop.web import keys
from imagedrop.web.body import read_capped
from imagedrop.web.middleware import provenance
from imagedrop.web.offload import run_cpu

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()

PLANNER = web.AppKey("drop_planner", DropPlanner)
HEALER = web.AppKey("healer", Healer)
# SNS confirmation URLs point at the regional SNS endpoint; nothing else is fetched.
_SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")


class IntakeRefused(InputError):
    """Raised when a notification lacks the intake token, or is too large."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@routes.route("HEAD", "/events")
async def events_probe(request: web.Request) -> web.Response:
    """MinIO's liveness probe: 200, but 401 without the intake token when one is required
    (MinIO sends its auth token on the probe too, so a probe never reveals an open intake)."""
    expected = _expected_tokens(request)
    given = extract_token(request.headers, request.query) or request.headers.get("X-API-Key")
    if expected and not matches_any(given, expected):
        return web.Response(status=401, headers={"WWW-Authenticate": "Bearer"})
    return web.Response(status=200)


@routes.post("/events")
async def events(request: web.Request) -> web.Response:
    """Record a job for every written image a notification announces."""
    settings = request.app[keys.SETTINGS]
    counted = request.app[keys.RUNTIME].metrics.notifications
    try:
        return await _events(request, settings, counted)
    except IntakeRefused:
        counted.labels("unknown", "refused").inc()
        raise
    except InputError:
        counted.labels("unknown", "invalid").inc()
        raise


async def _events(request: web.Request, settings: Settings, counted: Counter) -> web.Response:
    expected = _expected_tokens(request)
    # Check what headers and the URL carry before reading a byte of the body: an unknown
    # caller gets its 401 without costing a parse. Only a structured CloudEvent can carry the
    # token inside the body, so only then is the check finished after parsing.
    early = extract_token(request.headers, request.query) or request.headers.get("X-API-Key")
    structured = request.content_type == "application/cloudevents+json"
    if expected and not matches_any(early, expected) and not structured:
        raise _unauthorised()
    limit = settings.drops.max_body_bytes
    body = await read_capped(request, limit, lambda _: IntakeRefused(
        f"notification body over {limit} bytes", 413))
    parsed = await run_cpu(request, len(body), parse_notification, request.headers, body,
                        request.query)
    if expected and not matches_any(early, expected) and not matches_any(parsed.token,
                                                                         expected):
        raise _unauthorised()
    ignored = [{"object": what, "reason": why} for what, why in parsed.ignored]
    if parsed.subscription_confirmation:
        ignored.append(await _confirm(parsed.subscription_confirmation))
    items: list[DropItem] = []
    producers: list[str] = []  # of each item
    manifests: list[Skip] = []
    planner = request.app[PLANNER]
    for event in parsed.events:
        where = f"{event.bucket}/{event.key}"
        if event.kind != "created":
            counted.labels(event.producer, "ignored").inc()
            if event.kind == "deleted":
                planner.resolver.invalidate(event.bucket, event.key)
            ignored.append({"object": where, "reason": f"{event.raw_type}: not an object write"})
            continue
        try:
            request.app[keys.STORAGE].check_name(event.bucket, event.key)
            etag = event.etag or await _current_etag(request, event.bucket, event.key)
            plan = await planner.plan(event.bucket, event.key, etag, event.size)
        except (PermanentError, InvalidObjectName) as exc:  # this object only; the rest goes on
            ignored.append({"object": where, "reason": f"not recorded: {exc}"})
            counted.labels(event.producer, "ignored").inc()
            continue
        if isinstance(plan, Skip):
            ignored.append({"object": f"{plan.bucket}/{plan.key}", "reason": plan.reason})
            counted.labels(event.producer, "ignored").inc()
            if plan.manifest_etag:
                manifests.append(plan)
        else:
            origin = provenance(request)
            batch = plan.batch and replace(plan.batch, **origin)
            items.append(replace(plan, job=replace(plan.job, **origin), batch=batch))
            producers.append(event.producer)
    recorded = await request.app[keys.LEDGER].record_drops(items)
    for producer, (_, fresh) in zip(producers, recorded, strict=True):
        counted.labels(producer, "recorded" if fresh else "duplicate").inc()
    for manifest in manifests:  # a new version may heal what a broken one failed
        assert manifest.manifest_etag is not None
        await request.app[HEALER].manifest_written(manifest.bucket, manifest.key,
                                                   manifest.manifest_etag)
    new = [job.id for job, created in recorded if created]
    for skip in ignored:
        log.info("event_ignored", **skip)
    if recorded:
        log.info("events_recorded", new=len(new), duplicates=len(recorded) - len(new))
    return web.json_response({"recorded": new, "duplicates": len(recorded) - len(new),
                              "ignored": ignored})


def _expected_tokens(request: web.Request) -> list[str]:
    """The intake token when one is set; otherwise the API keys, when keys are set."""
    settings = request.app[keys.SETTINGS]
    if settings.drops.intake_token:
        return [settings.drops.intake_token]
    return list(settings.server.api_keys)


def _unauthorised() -> IntakeRefused:
    return IntakeRefused(
        "missing or invalid intake token: send it as 'Authorization: Bearer <token>', a "
        "'ce-token' header or a '?token=' query parameter on the subscribed URL", 401)


async def _current_etag(request: web.Request, bucket: str, key: str) -> str:
    """Producers that send no ETag: ask the store (the object may be gone: then none)."""
    info = await request.app[keys.STORAGE].head(bucket, key)
    return info.etag if info else ""


async def _confirm(confirmation: SubscriptionConfirmation) -> dict[str, Any]:
    """Confirm an SNS HTTP subscription by fetching its SubscribeURL (SNS hosts only)."""
    parts = urlsplit(confirmation.subscribe_url)
    what = f"SNS subscription {confirmation.topic_arn}"
    if parts.scheme != "https" or not _SNS_HOST.match(parts.hostname or ""):
        return {"object": what, "reason": "SubscribeURL is not an https AWS SNS URL: not "
                                          "confirmed"}
    try:
        timeout = aiohttp.ClientTimeout(total=15)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(
                confirmation.subscribe_url, allow_redirects=False) as resp:
            ok = resp.status == 200
    except (aiohttp.ClientError, TimeoutError) as exc:
        return {"object": what, "reason": f"confirmation failed: {type(exc).__name__}"}
    return {"object": what, "reason": "subscription confirmed" if ok else
            f"confirmation answered HTTP {resp.status}"}
