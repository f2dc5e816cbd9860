"""Operators' routes: listings of jobs, deliveries (with every attempt) and subscribers, and the
subscriber actions (disable, enable, test). Thin: the queries are the ledger's."""

from __future__ import annotations

import time
import uuid

from aiohttp import web

from imagedrop.errors import RequestInvalid
from imagedrop.ledger import DeliveryFilter, NewDelivery
from imagedrop.payloads import TestData, TestEvent
from imagedrop.subscribers import timestamp
from imagedrop.web import keys
from imagedrop.web.listing_models import (
    DeliveryItem,
    DeliveryPage,
    JobItem,
    JobPage,
    SubscriberChanged,
    SubscriberItem,
    SubscriberPage,
    SubscriberRequest,
    TestResult,
    check_known,
    delivery_filter,
    job_filter,
    paging,
)
from imagedrop.web.wxo import parse_body

routes = web.RouteTableDef()


def _json(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json")


@routes.get("/jobs")
async def list_jobs(request: web.Request) -> web.Response:
    """Jobs, newest first, filtered by state, kind, bucket, prefix, batch and time."""
    where = job_filter(request.query)
    after, limit = paging(request.query)
    page = await request.app[keys.LEDGER].page_jobs(where, after=after, limit=limit)
    return _json(JobPage(items=[JobItem.of(j) for j in page.items], next=page.next).to_body())


@routes.get("/deliveries")
async def list_deliveries(request: web.Request) -> web.Response:
    """Callback deliveries with every attempt, newest first."""
    where = delivery_filter(request.query)
    after, limit = paging(request.query)
    page = await request.app[keys.LEDGER].page_deliveries(where, after=after, limit=limit)
    return _json(DeliveryPage(items=[DeliveryItem.of(d) for d in page.items],
                              next=page.next).to_body())


@routes.get("/subscribers")
async def list_subscribers(request: web.Request) -> web.Response:
    """Every subscriber URL events went to, with its state and latest success."""
    check_known(request.query, ("after", "limit"))
    after, limit = paging(request.query, default=100)
    page = await request.app[keys.LEDGER].page_subscribers(after=after, limit=limit)
    return _json(SubscriberPage(items=[SubscriberItem.of(s) for s in page.items],
                                next=page.next).to_body())


@routes.post("/subscribers/disable")
async def disable_subscriber(request: web.Request) -> web.Response:
    """Stop sending events to a URL (until enabled again, or a replay names it)."""
    body = await parse_body(request, SubscriberRequest)
    ledger = request.app[keys.LEDGER]
    known = await ledger.disabled_endpoints([body.url])
    if not known:
        await ledger.disable_endpoint(body.url, body.reason or "disabled by an operator")
    return _json(SubscriberChanged(url=body.url, state="disabled",
                                   changed=not known).to_body())


@routes.post("/subscribers/enable")
async def enable_subscriber(request: web.Request) -> web.Response:
    """Send events to a disabled URL again (its failed deliveries stay failed: replay them)."""
    body = await parse_body(request, SubscriberRequest)
    changed = await request.app[keys.LEDGER].enable_endpoint(body.url)
    return _json(SubscriberChanged(url=body.url, state="active", changed=changed).to_body())


@routes.post("/subscribers/test")
async def test_subscriber(request: web.Request) -> web.Response:
    """Send a signed imagedrop.test event now and say what the receiver answered."""
    body = await parse_body(request, SubscriberRequest)
    deliverer = request.app[keys.RUNTIME].deliverer
    if deliverer is None:
        raise RequestInvalid("this process delivers no callbacks (its background services are "
                             "off): send the test to a replica that does", None, status=503)
    # The subscriber's secret, as its latest event was signed (manifests name it, not us).
    latest = await request.app[keys.LEDGER].page_deliveries(DeliveryFilter(url=body.url),
                                                            limit=1)
    secret_ref = latest.items[0].delivery.secret_ref if latest.items else None
    now = time.time()
    event = TestEvent(timestamp=timestamp(now), data=TestData(
        message="a test from imagedrop (POST /subscribers/test); nothing happened"))
    delivery = NewDelivery(kind="webhook", url=body.url, body=event.to_body(),
                           event_type=event.type, secret_ref=secret_ref,
                           id=f"test_{uuid.uuid4().hex}")
    attempt = await deliverer.probe(delivery)
    ok = attempt.status is not None and 200 <= attempt.status < 300
    return _json(TestResult(url=body.url, delivered=ok, status=attempt.status,
                            error=attempt.error, signed=bool(secret_ref),
                            duration_ms=round(attempt.duration_ms, 1)).to_body())
