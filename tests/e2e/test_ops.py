"""See it and steer it, against a running service: metrics (read with Prometheus's own
parser), listings over several pages, the delivery log, subscribers, /ready, the ops webhook."""

from __future__ import annotations

import base64
import json

import pytest
from prometheus_client.parser import text_string_to_metric_families
from standardwebhooks.webhooks import Webhook

from imagedrop.delivery.signing import generate_secret
from tests.fixtures import images

pytestmark = pytest.mark.asyncio

KEY = "op-key-1"
AUTH = {"Authorization": f"Bearer {KEY}"}


async def keyed(start_service, env: dict[str, str]):  # type: ignore[no-untyped-def]
    """A service with an API key, and a client that sends it."""
    svc = await start_service({"IMAGEDROP_API_KEYS": KEY, **env})
    svc.headers = dict(AUTH)
    return svc


async def b64_job(svc, callback: str, prompt: str = "warmer") -> str:
    status, body = await svc.post("/process-image-async-b64",
                                  {"prompt": prompt,
                                   "image_base64": base64.b64encode(images.png()).decode()},
                                  callback=callback, headers=AUTH)
    assert status == 202, body
    return str(body["job_id"])


async def get(svc, path: str, **params: str):
    async with svc.session.get(svc.url + path, params=params, headers=AUTH) as resp:
        return resp.status, (await resp.json() if resp.content_type == "application/json"
                             else await resp.text())


class TestMetrics:
    async def test_families_parse_and_count(self, start_service, receiver):
        svc = await keyed(start_service, {})
        for _ in range(3):
            await svc.wait_delivered(await b64_job(svc, receiver.url("/cb")))
        async with svc.session.get(svc.url + "/metrics") as resp:
            assert resp.status == 401  # behind the API key
        status, text = await get(svc, "/metrics")
        assert status == 200
        families = {f.name: f for f in text_string_to_metric_families(text)}
        for name in ("imagedrop_jobs", "imagedrop_jobs_queued",
                     "imagedrop_provider_request_seconds", "imagedrop_deliveries",
                     "imagedrop_notifications", "imagedrop_provider_paused",
                     "imagedrop_provider_cost_usd", "process_cpu_seconds"):
            assert name in families, name
        jobs = {tuple(s.labels.values()): s.value for s in families["imagedrop_jobs"].samples
                if s.name == "imagedrop_jobs_total"}
        assert jobs[("b64", "completed")] == 3
        provider = [s for s in families["imagedrop_provider_request_seconds"].samples
                    if s.name.endswith("_count")]
        assert provider and provider[0].labels == {"provider": "local", "outcome": "ok"}
        assert provider[0].value == 3
        deliveries = {tuple(s.labels.values()): s.value
                      for s in families["imagedrop_deliveries"].samples
                      if s.name == "imagedrop_deliveries_total"}
        assert deliveries[("callback", "delivered")] == 3
        [queued] = families["imagedrop_jobs_queued"].samples
        assert queued.value == 0
        # CPU by stage (what the benchmarks report per job) and by thread.
        stages = {s.labels["stage"]: s.value for s in families["imagedrop_stage_cpu_seconds"]
                  .samples if s.name == "imagedrop_stage_cpu_seconds_total"}
        assert {"receive", "decode", "check", "callback"} <= stages.keys()
        assert all(v > 0 for v in stages.values()), stages
        threads = {s.labels["thread"] for s in families["imagedrop_thread_cpu_seconds"].samples}
        assert "MainThread" in threads and "imagedrop-ledger" in threads

    async def test_public_when_asked(self, start_service):
        svc = await keyed(start_service, {"IMAGEDROP_METRICS_PUBLIC": "1"})
        async with svc.session.get(svc.url + "/metrics") as resp:
            assert resp.status == 200 and "imagedrop_jobs_queued" in await resp.text()
        async with svc.session.get(svc.url + "/jobs") as resp:
            assert resp.status == 401  # only /metrics opened


class TestListings:
    async def test_jobs_over_several_pages(self, start_service, receiver):
        svc = await keyed(start_service, {"IMAGEDROP_WORKER": "0"})
        ids = [await b64_job(svc, receiver.url("/cb")) for _ in range(5)]
        seen, after, pages = [], None, 0
        while True:
            params = {"limit": "2", "state": "queued", "kind": "b64"}
            if after:
                params["after"] = after
            status, page = await get(svc, "/jobs", **params)
            assert status == 200, page
            pages += 1
            seen += [item["id"] for item in page["items"]]
            assert all(item["state"] == "queued" for item in page["items"])
            if page["next"] is None:
                break
            after = page["next"]
        assert pages == 3 and seen == ids[::-1]  # newest first, each once

    @pytest.mark.parametrize(("query", "field"), [
        ({"state": "done"}, "state"), ({"limit": "0"}, "limit"), ({"limit": "x"}, "limit"),
        ({"stat": "queued"}, "stat"), ({"after": "garbage"}, "cursor"),
        ({"since": "yesterday"}, "since"), ({"prefix": "a\x00b"}, "prefix"),
        ({"bucket": "b" * 300}, "bucket"),
    ])
    async def test_bad_filters_are_a_clear_400(self, start_service, query, field):
        svc = await keyed(start_service, {})
        status, body = await get(svc, "/jobs", **query)
        assert status == 400 and field in body["error"], body

    async def test_delivery_log_and_subscribers(self, start_service, receiver):
        secret = generate_secret()
        svc = await keyed(start_service, {"IMAGEDROP_CALLBACK_SCHEDULE": "0,0.05,0.05",
                                          "IMAGEDROP_HOOK_SECRET_MAIN": secret})
        receiver.respond("/down", [500, 500, 500])
        job_ok = await b64_job(svc, receiver.url("/up"))
        job_down = await b64_job(svc, receiver.url("/down"))
        for job in (job_ok, job_down):
            await svc.wait_delivered(job)
        status, page = await get(svc, "/deliveries", job_id=job_down)
        [down] = page["items"]
        assert down["state"] == "failed" and [a["status"] for a in down["attempts"]] == [
            500, 500, 500]
        assert all(a["duration_ms"] >= 0 and a["at"].endswith("Z") for a in down["attempts"])
        status, page = await get(svc, "/deliveries", state="delivered")
        assert [d["job_id"] for d in page["items"]] == [job_ok]

        # Replay every failed delivery to one endpoint since a time.
        status, replayed = await svc.post("/replay", {"url": receiver.url("/down"),
                                                      "since": "2000-01-01T00:00:00Z"},
                                          headers=AUTH)
        assert status == 200 and replayed["deliveries"] == [down["id"]]
        await svc.wait_delivered(job_down)
        assert len(receiver.requests_for("/down")) == 4

    async def test_subscriber_actions_and_test_event(self, start_service, receiver):
        secret = generate_secret()
        svc = await keyed(start_service, {"IMAGEDROP_HOOK_SECRET_MAIN": secret})
        url = receiver.url("/hook")
        # A subscriber is known once an event went to it; make one by hand through the ledger.
        status, body = await svc.post("/subscribers/disable", {"url": url, "reason": "maint"},
                                      headers=AUTH)
        assert status == 200 and body == {"url": url, "state": "disabled", "changed": True}
        status, page = await get(svc, "/subscribers")
        assert page["items"] == [{"url": url, "state": "disabled", "disabled_reason": "maint",
                                  "delivered": 0, "failed": 0, "pending": 0,
                                  "last_success": None, "last_failure": None}]
        status, body = await svc.post("/subscribers/enable", {"url": url}, headers=AUTH)
        assert body["changed"] is True and body["state"] == "active"
        status, body = await svc.post("/subscribers/test", {"url": url}, headers=AUTH)
        assert status == 200 and body["delivered"] is True and body["status"] == 200
        [sent] = receiver.requests_for("/hook")
        assert json.loads(sent.body)["type"] == "imagedrop.test"
        status, body = await svc.post("/subscribers/test", {"url": "http://169.254.169.254/"},
                                      headers=AUTH)
        assert status == 200 and body["delivered"] is False and body["status"] is None
        assert "not allowed" in body["error"] or "refused" in body["error"], body
        status, body = await svc.post("/subscribers/disable", {"url": ""}, headers=AUTH)
        assert status == 422 and "url" in body["error"]


class TestReady:
    async def test_ready_when_ledger_and_storage_answer(self, start_service):
        svc = await keyed(start_service, {})
        async with svc.session.get(svc.url + "/ready") as resp:  # no key: a probe
            assert resp.status == 200 and await resp.json() == {"ready": True}

    async def test_not_ready_when_storage_does_not_answer(self, start_service):
        svc = await start_service({
            "COS_ENDPOINT": "http://127.0.0.1:9", "COS_BUCKET": "b", "COS_REGION": "us-east-1",
            "COS_ACCESS_KEY_ID": "x", "COS_SECRET_ACCESS_KEY": "y",
            "IMAGEDROP_READY_TIMEOUT": "3", "IMAGEDROP_SWEEP_INTERVAL": "0"})
        async with svc.session.get(svc.url + "/ready") as resp:
            body = await resp.json()
            assert resp.status == 503 and body["ready"] is False
            assert set(body["failed"]) == {"storage"}
        async with svc.session.get(svc.url + "/health") as resp:
            assert resp.status == 200  # liveness stays cheap


class TestOpsWebhook:
    async def test_an_exhausted_delivery_reaches_the_ops_receiver(self, start_service,
                                                                  receiver):
        ops_secret = generate_secret()
        svc = await start_service({
            "IMAGEDROP_CALLBACK_SCHEDULE": "0,0.05", "IMAGEDROP_OPS_WEBHOOK":
            receiver.url("/ops"), "IMAGEDROP_OPS_WEBHOOK_SECRET": ops_secret})
        receiver.respond("/cb", [503, 503])
        job = await b64_job(svc, receiver.url("/cb?token=secret-in-query"))
        [ops] = await receiver.await_requests(1, path="/ops", timeout=30)
        headers = {k.lower(): v for k, v in ops.headers.items()}
        event = Webhook(ops_secret).verify(ops.body, headers)
        assert event["type"] == "delivery.exhausted"
        data = event["data"]
        assert data["job_id"] == job and data["kind"] == "callback" and data["attempts"] == 2
        assert data["last_status"] == 503 and "secret-in-query" not in data["url"]
        _, text = await get(svc, "/metrics")
        assert 'imagedrop_deliveries_total{kind="callback",outcome="exhausted"} 1.0' in text
