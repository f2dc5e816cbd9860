"""Operational routes: health, storage config, job status, the OpenAPI document, local downloads."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from imagedrop import __version__
from imagedrop.errors import ImagedropError, NotFound
from imagedrop.ledger import JobState
from imagedrop.metrics import CONTENT_TYPE
from imagedrop.prices import utc_day
from imagedrop.storage import urlsign
from imagedrop.web import keys
from imagedrop.web.models import CosConfig
from imagedrop.web.openapi import build_openapi
from imagedrop.web.status import BatchStatus, JobStatus

routes = web.RouteTableDef()


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    """Liveness: answers from memory, never waits on storage or the ledger."""
    return web.json_response({"ok": True})


@routes.get("/ready")
async def ready(request: web.Request) -> web.Response:
    """Readiness: 200 only when the ledger answers a query and storage a cheap call, each
    within IMAGEDROP_READY_TIMEOUT; else 503 saying what failed (never a secret)."""
    settings = request.app[keys.SETTINGS]
    deadline = settings.server.ready_timeout

    async def storage_answers() -> None:
        async for _ in request.app[keys.STORAGE].list(settings.storage.resolved_input_bucket,
                                                      "", page_size=1):
            break

    checks = {"ledger": request.app[keys.LEDGER].ping(), "storage": storage_answers()}
    failed: dict[str, str] = {}
    for name, check in checks.items():
        try:
            await asyncio.wait_for(check, deadline)
        except TimeoutError:
            failed[name] = f"no answer within {deadline:g} s"
        except Exception as exc:  # what failed is the answer; the probe itself must not fail
            failed[name] = type(exc).__name__ if not isinstance(exc, ImagedropError) else str(exc)
    if failed:
        return web.json_response({"ready": False, "failed": failed}, status=503)
    return web.json_response({"ready": True})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition; the shared gauges are read now (ledger, provider pause)."""
    rt = request.app[keys.RUNTIME]
    rt.metrics.jobs_queued.set(await rt.ledger.count_jobs(JobState.QUEUED))
    rt.metrics.provider_paused.set(1 if await rt.editor.pauses.current() else 0)
    rt.metrics.budget_usd.clear()
    rt.metrics.budget_edits.clear()
    for scope, edits, usd in await rt.ledger.budget_day(utc_day(time.time())):
        rt.metrics.budget_usd.labels(scope).set(usd)
        rt.metrics.budget_edits.labels(scope).set(edits)
    return web.Response(body=rt.metrics.render(), headers={"Content-Type": CONTENT_TYPE})


@routes.get("/cos/config")
async def cos_config(request: web.Request) -> web.Response:
    """Where images are read and written; never a credential."""
    body = CosConfig.from_settings(request.app[keys.SETTINGS].storage).to_body()
    return web.Response(body=body, content_type="application/json")


@routes.get("/jobs/{job_id}")
async def get_job(request: web.Request) -> web.Response:
    """A job's state, attempts, timings, result location and error — or a batch's progress."""
    ledger = request.app[keys.LEDGER]
    job_id = request.match_info["job_id"]
    job = await ledger.get_job(job_id, with_input=False)
    view: JobStatus | BatchStatus
    if job is not None:
        view = JobStatus.from_job(job, await ledger.list_deliveries(job_id=job.id))
    else:
        batch = await ledger.get_batch(job_id)
        if batch is None:
            raise NotFound(f"no job or batch with id {job_id!r}")
        view = BatchStatus.from_batch(batch, await ledger.batch_progress(job_id))
    return web.Response(body=view.to_body(), content_type="application/json")


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.0 document of the whole API."""
    settings = request.app[keys.SETTINGS]
    server_url = settings.server.public_url or f"{request.scheme}://{request.host}"
    doc = build_openapi(server_url=server_url, auth=bool(settings.server.api_keys),
                        intake_auth=bool(settings.drops.intake_token or settings.server.api_keys),
                        version=__version__)
    return web.json_response(doc)


@routes.get("/files/{bucket}/{key:.+}")
async def download(request: web.Request) -> web.Response:
    """Local-folder mode's stand-in for a presigned URL: valid signature and expiry required."""
    bucket, key = request.match_info["bucket"], request.match_info["key"]
    q = request.query
    if not urlsign.verify_download(request.app[keys.SIGNING_KEY], bucket, key,
                                   q.get("expires", ""), q.get("sig", ""), now=time.time()):
        raise web.HTTPForbidden(text="download link is invalid or expired")
    obj = await request.app[keys.STORAGE].get(bucket, key)
    return web.Response(body=obj.data, content_type=obj.info.content_type or
                        "application/octet-stream")
