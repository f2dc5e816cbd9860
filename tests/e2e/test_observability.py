"""One log pipeline and a request id that follows the work: every line a request causes — its
job's and its callbacks' too — carries the request's id; stdlib loggers render like structlog's;
with tracing on, the request's trace continues into the job and its callback."""

from __future__ import annotations

import base64

import pytest
import structlog
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from imagedrop.tracing import Tracing
from tests.fixtures import images

pytestmark = pytest.mark.asyncio
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


async def one_job(svc, receiver, headers: dict[str, str]) -> tuple[str, dict[str, str]]:
    async with svc.session.post(svc.url + "/process-image-async-b64", json={
            "prompt": "p", "image_base64": base64.b64encode(images.png()).decode()},
            headers={"callbackUrl": receiver.url("/cb"), **headers}) as resp:
        assert resp.status == 202
        job_id = (await resp.json())["job_id"]
        echoed = {k.lower(): v for k, v in resp.headers.items()}
    await svc.wait_delivered(job_id)
    return job_id, echoed


class TestRequestId:
    async def test_follows_into_the_job_and_its_callback(self, start_service, receiver):
        svc = await start_service()
        with structlog.testing.capture_logs(
                processors=[structlog.contextvars.merge_contextvars]) as captured:
            job_id, headers = await one_job(svc, receiver, {"X-Request-Id": "req-42.a:b"})
        assert headers["x-request-id"] == "req-42.a:b"
        mine = [e for e in captured if e.get("request_id") == "req-42.a:b"]
        events = {e["event"] for e in mine}
        assert {"job_completed", "delivery.attempt"} <= events, captured
        assert all(e.get("job_id") == job_id for e in mine if e["event"] == "job_completed")

    @pytest.mark.parametrize("given", ["", "x" * 200, "bad id", "ü", "a\tb"])
    async def test_a_strange_one_is_replaced(self, start_service, given):
        svc = await start_service()
        async with svc.session.get(svc.url + "/health",
                                   headers={"X-Request-Id": given}) as resp:
            rid = resp.headers["X-Request-Id"]
        assert rid != given and len(rid) == 32

    async def test_errors_carry_it_too(self, start_service):
        svc = await start_service()
        async with svc.session.get(svc.url + "/jobs/nope", headers={"X-Request-Id": "r1"}) as r:
            assert r.status == 404 and r.headers["X-Request-Id"] == "r1"


class TestTracing:
    async def test_the_trace_continues_into_job_and_callback(self, start_service, receiver):
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        svc = await start_service(tracing=Tracing(True, provider=provider))
        parent = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
        await one_job(svc, receiver, {"traceparent": parent})
        spans = {s.name: s for s in exporter.get_finished_spans()}
        ours = ("POST /process-image-async-b64", "job.run", "callback.deliver")
        assert set(ours) <= set(spans)
        assert {format(spans[name].context.trace_id, "032x") for name in ours} == {TRACE_ID}
        job, delivery = spans["job.run"], spans["callback.deliver"]
        assert delivery.parent.span_id == job.context.span_id  # the callback continues the job
        [callback] = receiver.requests_for("/cb")
        assert TRACE_ID in {k.lower(): v for k, v in callback.headers.items()}["traceparent"]

    async def test_off_costs_nothing_and_sends_no_header(self, start_service, receiver):
        svc = await start_service()
        await one_job(svc, receiver, {"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"})
        [callback] = receiver.requests_for("/cb")
        assert "traceparent" not in {k.lower() for k in callback.headers}
