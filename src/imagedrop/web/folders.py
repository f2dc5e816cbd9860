"""POST /trigger (edit a folder now, as its manifest says) and POST /replay (run failed work
again, or force a re-edit; send failed callbacks again)."""

from __future__ import annotations

import uuid

from aiohttp import web

from imagedrop.errors import NotFound
from imagedrop.estimate import estimate_folder
from imagedrop.ledger import Delivery, NewBatch
from imagedrop.providers import spec_from_settings
from imagedrop.web import keys
from imagedrop.web.drop_models import ReplayRequest, TriggerEstimate, TriggerRequest
from imagedrop.web.intake import PLANNER
from imagedrop.web.middleware import provenance
from imagedrop.web.wxo import callback_url, check_names, parse_body

routes = web.RouteTableDef()


@routes.post("/trigger")
async def trigger(request: web.Request) -> web.Response:
    """List a folder page by page and edit every image its manifest takes (202 now; the
    summary goes to `callbackUrl` when given, and batch.completed to the subscribers)."""
    settings = request.app[keys.SETTINGS]
    cb = await callback_url(request) if request.headers.get("callbackUrl") else None
    body = await parse_body(request, TriggerRequest)
    bucket = body.bucket or settings.storage.resolved_input_bucket
    check_names(request, bucket, prefix=body.prefix)
    overrides = {k: v for k, v in (("prompt", body.prompt), ("model", body.model),
                                   ("quality", body.quality), ("size", body.size),
                                   ("output_format", body.output_format)) if v}
    if body.dry_run:
        rt = request.app[keys.RUNTIME]
        estimate = await estimate_folder(
            storage=request.app[keys.STORAGE], ledger=request.app[keys.LEDGER],
            planner=request.app[PLANNER], prices=rt.editor.prices, bucket=bucket,
            prefix=body.prefix, overrides=overrides,
            default_output=(settings.storage.resolved_output_bucket,
                            settings.storage.output_prefix),
            defaults=lambda: spec_from_settings(settings.provider, overrides.get("prompt", "")),
            local=settings.provider.kind == "local")
        return web.json_response(TriggerEstimate(
            images=estimate.images, to_edit=estimate.to_edit,
            already_done=estimate.already_done, skipped=estimate.skipped,
            estimated_cost_usd=estimate.estimated_cost_usd, prices_as_of=estimate.prices_as_of,
            unpriced_models=list(estimate.unpriced_models)).model_dump(mode="json"))
    batch_id = str(uuid.uuid4())
    plan = await request.app[PLANNER].plan_trigger(
        bucket, body.prefix, overrides, batch_id=batch_id,
        default_output=(settings.storage.resolved_output_bucket,
                        settings.storage.output_prefix))
    batch = await request.app[keys.LEDGER].create_batch(NewBatch(
        id=batch_id, kind="trigger", bucket=bucket, prefix=body.prefix,
        output_bucket=plan.output_bucket, output_prefix=plan.output_prefix, recipe=plan.recipe,
        callback_url=cb, **provenance(request),
    ))
    return web.json_response({"accepted": True, "job_id": batch.id, "batch_id": batch.id},
                             status=202)


@routes.post("/replay")
async def replay(request: web.Request) -> web.Response:
    """Queue failed jobs (or, with force, named completed jobs) and failed deliveries again."""
    settings = request.app[keys.SETTINGS]
    ledger = request.app[keys.LEDGER]
    body = await parse_body(request, ReplayRequest)
    if body.batch_id and await ledger.get_batch(body.batch_id) is None:
        raise NotFound(f"no batch with id {body.batch_id!r}")
    jobs, more = [], False
    if body.prefix is not None:
        check_names(request, body.bucket or settings.storage.resolved_input_bucket,
                    prefix=body.prefix)
    if body.job_ids or body.batch_id or body.prefix is not None:
        page = await ledger.requeue_jobs(
            job_ids=body.job_ids or None, batch_id=body.batch_id,
            bucket=(body.bucket or settings.storage.resolved_input_bucket)
            if body.prefix is not None else None,
            prefix=body.prefix, include_completed=body.force, limit=body.limit)
        jobs, more = page.items, page.more
    deliveries: list[Delivery] = []
    if body.url:
        redelivered = await ledger.requeue_deliveries(
            url=body.url, since=body.since.timestamp() if body.since else None,
            limit=body.limit)
        deliveries += redelivered.items
        more = more or redelivered.more
    if body.delivery_ids:
        deliveries += (await ledger.requeue_deliveries(delivery_ids=body.delivery_ids)).items
    if body.redeliver:
        for job_id in body.job_ids:
            deliveries += (await ledger.requeue_deliveries(job_id=job_id)).items
        if body.batch_id:
            deliveries += (await ledger.requeue_deliveries(batch_id=body.batch_id)).items
    for delivery in deliveries:  # an explicit replay re-enables a subscriber that said 410
        if delivery.kind == "webhook":
            await ledger.enable_endpoint(delivery.url)
    return web.json_response({"jobs": [job.id for job in jobs], "requeued": len(jobs),
                              "more": more, "deliveries": sorted({d.id for d in deliveries})})
