"""The dashboard at /ui: server-rendered pages over the ledger and the store (so every replica
shows the same), thumbnails made here, actions sent by the page to the same API as any client.

Access: with API keys, a key once (an HttpOnly, SameSite=Strict, expiring session cookie; the
page's actions carry a CSRF token); without keys, loopback only unless IMAGEDROP_UI_PUBLIC=1.
"""

from __future__ import annotations

import asyncio
import posixpath
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import web

from imagedrop.delivery.policy import redact
from imagedrop.drops import Skip
from imagedrop.errors import ImagedropError, NotFound
from imagedrop.events import matches_any
from imagedrop.imaging import run_blocking
from imagedrop.ledger import DeliveryFilter, DeliveryState, Job, JobFilter, JobState
from imagedrop.listing import is_candidate
from imagedrop.prices import utc_day
from imagedrop.storage import ObjectInfo
from imagedrop.web import keys
from imagedrop.web.intake import PLANNER
from imagedrop.web.ui import session
from imagedrop.web.ui.thumbs import THUMB_EDGE, thumb_etag, thumbnail

routes = web.RouteTableDef()
HERE = Path(__file__).parent
TEMPLATES = web.AppKey("ui_templates", jinja2.Environment)
THUMB_SLOTS = web.AppKey("ui_thumb_slots", asyncio.Semaphore)
_LOOPBACK = ("127.0.0.1", "::1")
_CARDS_PER_PAGE = 24
_STATES = {"queued": "queued", "running": "running", "completed": "completed",
           "failed": "failed", "held": "queued"}  # the markup's states (held waits: queued)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def setup(app: web.Application) -> None:
    """Register the dashboard on `app`: its routes and its template environment."""
    app[TEMPLATES] = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
        undefined=jinja2.StrictUndefined)
    app[THUMB_SLOTS] = asyncio.Semaphore(2)
    app.add_routes(routes)
    app.router.add_static("/ui/static/", HERE / "static", follow_symlinks=False)


# -- access ----------------------------------------------------------------------------------


def _secret(request: web.Request) -> bytes:
    return session.secret_for(request.app[keys.SETTINGS].server.api_keys)


def _session(request: web.Request) -> str | None:
    """The request's valid session cookie, or None."""
    settings = request.app[keys.SETTINGS]
    value = request.cookies.get(session.COOKIE)
    if value and session.valid_session(_secret(request), value, settings.server.api_keys,
                                       time.time()):
        return value
    return None


def _guard(request: web.Request, *, page: bool = True) -> str:
    """The page's CSRF token ("" without keys); sends a page to the sign-in page (a fragment
    or thumbnail gets 401: the page reloads), or refuses."""
    settings = request.app[keys.SETTINGS]
    if not settings.server.api_keys:
        if not settings.server.ui_public and (
                _remote(request) not in _LOOPBACK or not _local_host(request.host)):
            # A loopback address reached under another name is DNS rebinding.
            raise web.HTTPForbidden(text="the dashboard is served to loopback only: set "
                                         "IMAGEDROP_API_KEYS, or IMAGEDROP_UI_PUBLIC=1")
        return ""
    value = _session(request)
    if value is None:
        if not page:
            raise web.HTTPUnauthorized(text="sign in again")
        raise web.HTTPSeeOther("/ui/login?" + urlencode({"next": request.path_qs}))
    return session.csrf_token(_secret(request), value)


def _remote(request: web.Request) -> str:
    remote = request.remote or ""
    return remote.removeprefix("::ffff:")


def _local_host(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return name.lower() in ("localhost", "127.0.0.1", "[::1]")


def api_credential(request: web.Request) -> bool:
    """Whether the request carries a dashboard session good for the API: the cookie, and for
    anything but GET/HEAD the page's CSRF token (another site cannot read it)."""
    value = _session(request)
    if value is None:
        return False
    if request.method in ("GET", "HEAD"):
        return True
    return session.valid_csrf(_secret(request), value, request.headers.get(session.CSRF_HEADER))


def _render(request: web.Request, name: str, status: int = 200, **context: Any
            ) -> web.Response:
    html = request.app[TEMPLATES].get_template(name).render(**context)
    return web.Response(text=html, status=status, content_type="text/html", headers={
        "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'self'; img-src 'self'; form-action 'self'; "
                                   "base-uri 'none'; frame-ancestors 'none'",
        "Referrer-Policy": "same-origin"})


# -- sign in ---------------------------------------------------------------------------------


def _next(value: str | None) -> str:
    """Where to go after signing in: a dashboard path only (never another site)."""
    if value and value.startswith("/ui") and "//" not in value and "\\" not in value:
        return value
    return "/ui"


@routes.get("/ui/login")
async def login_page(request: web.Request) -> web.Response:
    return _render(request, "login.html", next=_next(request.query.get("next")), error=None,
                   csrf="")


@routes.post("/ui/login")
async def login(request: web.Request) -> web.StreamResponse:
    settings = request.app[keys.SETTINGS]
    form = await request.post()
    key, target = str(form.get("key", "")), _next(str(form.get("next", "")))
    if not settings.server.api_keys:
        raise web.HTTPSeeOther(target)
    if not matches_any(key, settings.server.api_keys):
        return _render(request, "login.html", status=401, next=target, csrf="",
                       error="That is not one of this service's API keys.")
    response = web.HTTPSeeOther(target)
    response.set_cookie(session.COOKIE, session.make_session(
        _secret(request), key, time.time()), max_age=session.SESSION_SECONDS,
        httponly=True, samesite="Strict", path="/",
        secure=request.secure)
    raise response


@routes.post("/ui/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    response = web.HTTPSeeOther("/ui/login")
    response.del_cookie(session.COOKIE, path="/")
    raise response


# -- pages -----------------------------------------------------------------------------------


@routes.get("/ui")
async def overview(request: web.Request) -> web.Response:
    csrf = _guard(request)
    rt = request.app[keys.RUNTIME]
    ledger = rt.ledger
    now = time.time()
    recent = await ledger.page_jobs(JobFilter(), limit=200)
    edits = await ledger.count_finished(JobState.COMPLETED, now - 60)
    failures = await ledger.count_finished(JobState.FAILED, now - 3600)
    pause = await rt.editor.pauses.current()
    spend = [{"scope": scope.removeprefix("folder:"), "edits": edits, "usd": f"{usd:.4f}"}
             for scope, edits, usd in await ledger.budget_day(utc_day(now))]
    return _render(
        request, "overview.html", csrf=csrf, spend=spend, day=utc_day(now),
        queued=await ledger.count_jobs(JobState.QUEUED),
        running=await ledger.count_jobs(JobState.RUNNING),
        edits_per_minute=f"{edits}+" if edits >= 1000 else str(edits),
        failed_last_hour=f"{failures}+" if failures >= 1000 else str(failures),
        pause=pause[1] if pause else None, provider=rt.editor.primary.name,
        folders=_folders(recent.items))


def _folders(jobs: list[Job]) -> list[dict[str, Any]]:
    """Folders of the newest jobs, most recent first, with counts over those jobs."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for job in jobs:
        if not job.source_bucket or not job.source_key:
            continue
        prefix = posixpath.dirname(job.source_key)
        prefix = f"{prefix}/" if prefix else ""
        entry = out.setdefault((job.source_bucket, prefix), {
            "bucket": job.source_bucket, "prefix": prefix, "total": 0, "completed": 0,
            "failed": 0, "latest": _iso(job.created_at),
            "query": urlencode({"bucket": job.source_bucket, "prefix": prefix})})
        entry["total"] += 1
        if job.state in (JobState.COMPLETED, JobState.FAILED):
            entry[str(job.state)] += 1
    return list(out.values())[:30]


async def _folder_args(request: web.Request) -> tuple[str, str]:
    settings = request.app[keys.SETTINGS]
    bucket = request.query.get("bucket") or settings.storage.resolved_input_bucket
    prefix = request.query.get("prefix", "").lstrip("/")
    try:
        request.app[keys.STORAGE].check_name(bucket, prefix=prefix)
    except ImagedropError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    return bucket, prefix


async def _cards(request: web.Request, bucket: str, prefix: str) -> dict[str, Any]:
    """One page of the folder's images, as stored (in key order), each with its newest job, or
    why it has none (the manifest skips it, or it waits to be picked up)."""
    after = request.query.get("after", "")[:1024]
    planner = request.app[PLANNER]
    objects: list[ObjectInfo] = []
    async for page in request.app[keys.STORAGE].list(bucket, prefix, page_size=_CARDS_PER_PAGE,
                                                     start_after=after):
        objects = page
        break
    shown = [o for o in objects if is_candidate(o, outputs=planner.outputs)]
    jobs = await request.app[keys.LEDGER].jobs_for_objects(bucket, [o.key for o in shown])
    cards = []
    for info in shown:
        job = jobs.get(info.key)
        if job is not None:
            cards.append(_card(job))
            continue
        if await planner.resolver.is_output(bucket, info.key):
            continue  # a result: shown on its source's card
        plan = await planner.plan(bucket, info.key, info.etag, info.size)
        reason = plan.reason if isinstance(plan, Skip) else "waiting to be picked up"
        cards.append({"id": f"object:{info.key}", "state": "skipped" if isinstance(plan, Skip)
                      else "queued", "label": "skipped" if isinstance(plan, Skip)
                      else "not picked up yet", "name": posixpath.basename(info.key),
                      "before": _thumb_url(bucket, info.key, info.etag), "after": None,
                      "attempts": 0, "duration": None, "error": reason})
    nxt = (urlencode({"bucket": bucket, "prefix": prefix, "after": objects[-1].key})
           if len(objects) == _CARDS_PER_PAGE else None)
    return {"cards": cards, "next": nxt, "jobs": list(jobs.values())}


def _card(job: Job) -> dict[str, Any]:
    result = job.result
    after = None
    if job.state is JobState.COMPLETED and result is not None and result.bucket and result.key:
        # A forced re-edit writes the same key again: the version names this result.
        after = _thumb_url(result.bucket, result.key,
                           f"{job.id}.{job.generation}.{job.finished_at}")
    before = (_thumb_url(job.source_bucket, job.source_key, job.source_etag or "")
              if job.source_bucket and job.source_key else None)
    duration = (round(job.finished_at - job.started_at, 1)
                if job.finished_at and job.started_at else None)
    label = "held by a budget" if job.state is JobState.HELD else str(job.state)
    return {"id": job.id, "state": _STATES.get(str(job.state), "queued"), "label": label,
            "name": job.filename, "before": before, "after": after, "attempts": job.attempts,
            "duration": duration,
            "error": job.error or (job.last_error if job.state is not JobState.COMPLETED
                                   else None)}


def _thumb_url(bucket: str, key: str, version: str) -> str:
    return "/ui/thumb?" + urlencode({"bucket": bucket, "key": key, "v": version})


@routes.get("/ui/folders")
async def folder(request: web.Request) -> web.Response:
    csrf = _guard(request)
    bucket, prefix = await _folder_args(request)
    probe = f"{prefix}x" if not prefix or prefix.endswith("/") else f"{prefix}/x"
    resolved = await request.app[PLANNER].resolver.resolve(bucket, probe)
    cards = await _cards(request, bucket, prefix)
    progress = await _progress(request, cards["jobs"])
    return _render(
        request, "folder.html", csrf=csrf, bucket=bucket, prefix=prefix,
        manifest=resolved.manifest.summary() if resolved and resolved.manifest else None,
        manifest_error=str(resolved.error) if resolved and resolved.error else None,
        manifest_key=resolved.source_key if resolved else None, progress=progress,
        query=urlencode({"bucket": bucket, "prefix": prefix,
                         **({"after": request.query["after"]} if "after" in request.query
                            else {})}),
        cards=cards["cards"], next=cards["next"])


@routes.get("/ui/folders/cards")
async def folder_cards(request: web.Request) -> web.Response:
    """The cards and the progress line alone: what the page polls to follow a folder's work
    without a reload."""
    _guard(request, page=False)
    bucket, prefix = await _folder_args(request)
    cards = await _cards(request, bucket, prefix)
    return _render(request, "cards.html", cards=cards["cards"], next=cards["next"],
                   progress=await _progress(request, cards["jobs"]))


async def _progress(request: web.Request, jobs: list[Job]) -> str:
    """A line on the newest batch shown: how far it has got."""
    batch_id = next((job.batch_id for job in jobs if job.batch_id), None)
    if batch_id is None:
        return ""
    p = await request.app[keys.LEDGER].batch_progress(batch_id)
    state = "finished" if p.finished else "running"
    return (f"Latest batch ({state}): {p.completed + p.failed} of {p.total} done, "
            f"{p.failed} failed, {p.running} running, {p.queued + p.held} waiting")


@routes.get("/ui/jobs/{job_id}")
async def job_page(request: web.Request) -> web.Response:
    csrf = _guard(request)
    ledger = request.app[keys.LEDGER]
    job = await ledger.get_job(request.match_info["job_id"][:200], with_input=False)
    if job is None:
        raise web.HTTPNotFound(text="no such job")
    deliveries = []
    for d in await ledger.list_deliveries(job_id=job.id):
        attempts = await ledger.list_attempts(d.id)
        deliveries.append({"id": d.id, "kind": d.kind, "event_type": d.event_type,
                           "url": _shown_url(d.url), "state": str(d.state), "attempts": [
                               {"attempt": a.attempt, "at": _iso(a.at), "status": a.status,
                                "error": a.error, "duration_ms": round(a.duration_ms)}
                               for a in attempts]})
    return _render(
        request, "job.html", csrf=csrf, job=job, state=_STATES.get(str(job.state), "queued"),
        source=f"{job.source_bucket}/{job.source_key}" if job.source_key else "uploaded",
        created=_iso(job.created_at), started=_iso(job.started_at),
        finished=_iso(job.finished_at),
        cost=job.result.cost_usd if job.result is not None else None, deliveries=deliveries)


@routes.get("/ui/deliveries")
async def deliveries_page(request: web.Request) -> web.Response:
    csrf = _guard(request)
    state = request.query.get("state", "")
    url = request.query.get("url", "")[:2048]
    try:
        where = DeliveryFilter(state=DeliveryState(state) if state else None, url=url or None)
    except ValueError:
        raise web.HTTPBadRequest(text="state: pending, delivered, failed or disabled") from None
    try:
        page = await request.app[keys.LEDGER].page_deliveries(
            where, after=request.query.get("after") or None, limit=50)
    except NotFound as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    items = [{"id": log.delivery.id, "kind": log.delivery.kind,
              "event_type": log.delivery.event_type, "url": _shown_url(log.delivery.url),
              "state": str(log.delivery.state), "job_id": log.delivery.job_id,
              "last_error": log.delivery.last_error, "attempts": log.attempts}
             for log in page.items]
    nxt = urlencode({"state": state, "url": url, "after": page.next}) if page.next else None
    subs = await request.app[keys.LEDGER].page_subscribers(limit=100)
    subscribers = [{"url": s.url, "shown": _shown_url(s.url), "state": s.state,
                    "reason": s.disabled_reason, "delivered": s.delivered, "failed": s.failed,
                    "pending": s.pending} for s in subs.items]
    return _render(request, "deliveries.html", csrf=csrf, deliveries=items, state=state,
                   url=url, next=nxt, subscribers=subscribers)


# -- thumbnails ------------------------------------------------------------------------------


@routes.get("/ui/thumb")
async def thumb(request: web.Request) -> web.StreamResponse:
    """A bounded JPEG of a stored image, cached by the object's version."""
    _guard(request, page=False)
    bucket, key = request.query.get("bucket", ""), request.query.get("key", "")
    if not bucket or not key:
        raise web.HTTPBadRequest(text="bucket and key are required")
    storage = request.app[keys.STORAGE]
    try:
        storage.check_name(bucket, key)
        info = await storage.head(bucket, key)
    except ImagedropError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    if info is None:
        raise web.HTTPNotFound(text="no such image")
    etag = thumb_etag(bucket, key, info.etag or "")
    headers = {"ETag": etag, "Cache-Control": "private, max-age=3600",
               "X-Content-Type-Options": "nosniff"}
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    limits = request.app[keys.SETTINGS].imaging
    # A few at a time: a page of cards asks for dozens, and editing shares the CPU pool.
    async with request.app[THUMB_SLOTS]:
        try:
            obj = await storage.get(bucket, key, max_bytes=limits.max_bytes,
                                    if_match=info.etag or None)
            data = await run_blocking(request.app[keys.EXECUTOR], thumbnail, obj.data,
                                      max_bytes=limits.max_bytes, max_pixels=limits.max_pixels,
                                      edge=THUMB_EDGE)
        except ImagedropError as exc:
            # Cached too: a card polled every 2 s must not fetch a broken image each time.
            raise web.HTTPUnprocessableEntity(text=f"no thumbnail: {exc}", headers={
                "Cache-Control": "private, max-age=300"}) from None
    return web.Response(body=data, content_type="image/jpeg", headers=headers)


def _iso(ts: float | None) -> str:
    if ts is None:
        return "—"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _shown_url(url: str) -> str:
    """A URL as the dashboard shows it: no user-info, no query string (they may hold secrets)."""
    return redact(url)
