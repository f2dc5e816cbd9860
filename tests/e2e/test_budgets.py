"""Spend control end to end (issue 14): what each edit cost, and a folder's daily budget held
exactly at its edge by 16 concurrent workers, across a second process on the same ledger, with
budget.reached told once; and `over: fail` counted apart in the batch summary."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures import images

pytestmark = pytest.mark.asyncio

BUCKET = "imagedrop"  # the local store's default bucket
MANIFEST = """prompt: warmer
budget:
  edits_per_day: 5
  over: {over}
subscribers:
  - url: {hook}
    events: [budget.reached, batch.completed]
"""
# The fake provider reports 42 text + 258 image input tokens and 1056 output tokens; at the
# built-in gpt-image-2 prices (US$ 5 / 8 / 30 per 1M tokens) that is:
EDIT_COST = (42 * 5 + 258 * 8 + 1056 * 30) / 1_000_000


def folder(data: Path, name: str, manifest: str, n: int) -> None:
    path = data / BUCKET / name
    path.mkdir(parents=True)
    (path / "imagedrop.yaml").write_text(manifest)
    for i in range(n):
        (path / f"img{i:02d}.png").write_bytes(images.png(40 + i, 30))


async def until(check, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout}s")
        await asyncio.sleep(0.05)


@pytest.fixture(name="env")
def _env(fake_openai, tmp_path):
    fake_openai.latency = 0.3  # every worker claims before the first edit returns
    return {"OPENAI_API_KEY": fake_openai.api_key, "OPENAI_BASE_URL": fake_openai.base_url,
            "IMAGEDROP_CONCURRENCY": "16", "IMAGEDROP_SWEEP_INTERVAL": "0",
            "IMAGEDROP_DATA_DIR": str(tmp_path / "data")}


class TestCost:
    async def test_each_edit_carries_its_usage_and_cost(self, start_service, env, receiver):
        svc = await start_service(env)
        status, doc = await svc.post("/process-image-async-b64", {
            "prompt": "warmer", "image_base64": base64.b64encode(images.png()).decode()},
            callback=receiver.url())
        assert status == 202
        job = await svc.wait_job(doc["job_id"])
        result = job["result"]
        assert result["usage"] == {"text_in": 42, "image_in": 258, "image_out": 1056}
        assert result["cost_usd"] == pytest.approx(EDIT_COST)
        status, text = await svc.get("/metrics")
        assert f'imagedrop_provider_cost_usd_total{{model="gpt-image-2"}} {EDIT_COST}' in (
            text.decode())

    async def test_spend_per_folder_and_day_without_a_budget(self, start_service, env):
        data = Path(env["IMAGEDROP_DATA_DIR"])
        folder(data, "free", "prompt: warmer\n", 3)
        svc = await start_service(env)
        status, doc = await svc.post("/trigger", {"prefix": "free/"})
        assert status == 202
        await until(lambda: _finished(svc, doc["job_id"]), what="trigger finished")
        status, text = await svc.get("/metrics")
        scope = f"folder:{BUCKET}/free/imagedrop.yaml"
        assert f'imagedrop_budget_edits{{scope="{scope}"}} 3.0' in text.decode()
        async with svc.session.get(svc.url + "/ui") as resp:  # the dashboard shows it too
            overview = await resp.text()
        assert f"<td>{BUCKET}/free/imagedrop.yaml</td><td>3</td>" in overview
        spent = {s.labels["scope"]: s.value for f in text_string_to_metric_families(
            text.decode()) for s in f.samples if s.name == "imagedrop_budget_spend_usd"}
        assert spent[scope] == pytest.approx(3 * EDIT_COST)


class TestBudget:
    async def test_sixteen_workers_five_edits_then_held(self, start_service, env, receiver,
                                                        fake_openai, tmp_path):
        data = Path(env["IMAGEDROP_DATA_DIR"])
        folder(data, "shop", MANIFEST.format(over="hold", hook=receiver.url("/hook")), 16)
        svc = await start_service(env)
        status, doc = await svc.post("/trigger", {"prefix": "shop/"})
        assert status == 202, doc
        batch_id = doc["job_id"]

        async def settled():
            progress = await svc.ledger.batch_progress(batch_id)
            return progress if progress.completed + progress.held == 16 else None

        progress = await until(settled, what="16 jobs completed or held")
        assert (progress.completed, progress.held) == (5, 11)
        assert len(fake_openai.calls) == 5  # exactly the budget, never one more
        held = [j for j in await svc.ledger.list_jobs(batch_id=batch_id)
                if j.state == "held"]
        status, view = await svc.get(f"/jobs/{held[0].id}")
        assert view["state"] == "held"
        assert "budget reached: 5 edits per day" in view["last_error"]
        assert "goes on at" in view["last_error"]
        status, batch = await svc.get(f"/jobs/{batch_id}")
        assert batch["progress"]["held"] == 11
        status, text = await svc.get("/metrics")
        scope = f"folder:{BUCKET}/shop/imagedrop.yaml"
        assert f'imagedrop_budget_edits{{scope="{scope}"}} 5.0' in text.decode()
        assert batch["progress"]["cost_usd"] == pytest.approx(5 * EDIT_COST)
        # budget.reached, once for the folder and day, though eleven images met the limit.
        [notice] = await receiver.await_requests(1, path="/hook", timeout=10)
        event = json.loads(notice.body)
        assert event["type"] == "budget.reached"
        assert event["data"]["scope"] == f"folder:{BUCKET}/shop/imagedrop.yaml"
        assert event["data"]["over"] == "hold" and event["data"]["resumes_at"]

        # Restarted on the same ledger, the service still knows the day's spend: a new image
        # in the folder is held too, and the provider is not called.
        await svc.stop()
        other = await start_service(env)
        (data / BUCKET / "shop" / "late.png").write_bytes(images.png(90, 30))
        status, doc = await other.post("/trigger", {"prefix": "shop/"})
        assert status == 202
        late = await until(lambda: _late_job(other, doc["job_id"]), what="late image held")
        assert late.state == "held"
        assert len(fake_openai.calls) == 5
        hooks = [json.loads(r.body)["type"] for r in receiver.requests_for("/hook")]
        assert hooks.count("budget.reached") == 1

    async def test_over_fail_fails_and_is_counted_apart(self, start_service, env, receiver,
                                                        fake_openai):
        data = Path(env["IMAGEDROP_DATA_DIR"])
        folder(data, "strict", MANIFEST.format(over="fail", hook=receiver.url("/hook")), 8)
        svc = await start_service(env)
        status, _ = await svc.post("/trigger", {"prefix": "strict/"},
                                     callback=receiver.url("/cb"))
        assert status == 202
        [summary] = await receiver.await_requests(1, path="/cb", timeout=30)
        body = json.loads(summary.body)
        assert (body["processed"], body["failed"], body["budget_failed"]) == (5, 3, 3)
        assert body["estimated_cost_usd"] == pytest.approx(5 * EDIT_COST)
        assert len(fake_openai.calls) == 5
        assert all("budget reached" in e for e in body["errors"])


async def _late_job(svc, batch_id):
    jobs = await svc.ledger.list_jobs(batch_id=batch_id)
    late = [j for j in jobs if j.filename == "late.png" and j.state in ("held", "completed")]
    return late[0] if late else None


class TestDryRun:
    async def test_counts_and_prices_without_doing_anything(self, start_service, env,
                                                            receiver, fake_openai):
        data = Path(env["IMAGEDROP_DATA_DIR"])
        manifest = ("prompt: warmer\nquality: high\nsize: 1024x1536\nexclude: ['skip*']\n"
                    "settle_seconds: 0\n")
        folder(data, "cat", manifest, 6)
        (data / BUCKET / "cat" / "skip-me.png").write_bytes(images.png(20, 20))
        (data / BUCKET / "cat" / "notes.txt").write_text("not an image")
        svc = await start_service(env)
        # Two of them edited already, by a real trigger with the same recipe.
        status, doc = await svc.post("/trigger", {"prefix": "cat/"})
        assert status == 202
        await until(lambda: _finished(svc, doc["job_id"]), what="first trigger finished")
        calls = len(fake_openai.calls)
        for i in (6, 7):
            (data / BUCKET / "cat" / f"new{i}.png").write_bytes(images.png(60 + i, 30))

        status, est = await svc.post("/trigger", {"prefix": "cat/", "dry_run": True},
                                     callback=receiver.url("/cb"))
        assert status == 200, est
        assert (est["images"], est["to_edit"], est["already_done"], est["skipped"]) == (
            9, 2, 6, 1)
        # high, 1024x1536 on gpt-image-2: 6240 output + 581 image + 2 text tokens, each.
        one = (2 * 5 + 581 * 8 + 6240 * 30) / 1_000_000
        assert est["estimated_cost_usd"] == pytest.approx(2 * one)
        assert est["prices_as_of"] == "2026-11-05" and est["unpriced_models"] == []
        # Nothing happened: no job, no provider call, no callback.
        assert len(fake_openai.calls) == calls
        status, page = await svc.get("/jobs", params={"limit": "500"})
        assert len(page["items"]) == 6
        assert receiver.requests_for("/cb") == []

    async def test_refusals_are_clear(self, start_service, env):
        svc = await start_service(env)
        status, doc = await svc.post("/trigger", {"prefix": "nowhere/", "dry_run": True})
        assert status == 422 and "no imagedrop.yaml governs" in doc["error"]
        status, doc = await svc.post("/trigger", {"prefix": "x/", "dry_run": "yes please"})
        assert status == 422 and "dry_run" in doc["error"]

    async def test_a_local_service_costs_nothing(self, start_service, tmp_path):
        data = tmp_path / "local-data"
        folder(data, "free", "prompt: warmer\n", 3)
        svc = await start_service({"IMAGEDROP_DATA_DIR": str(data),
                                   "IMAGEDROP_SWEEP_INTERVAL": "0"})
        status, est = await svc.post("/trigger", {"prefix": "free/", "dry_run": True})
        assert status == 200
        assert (est["to_edit"], est["estimated_cost_usd"]) == (3, 0.0)


async def _finished(svc, batch_id):
    _, body = await svc.get(f"/jobs/{batch_id}")
    return body.get("state") == "finished"


class TestBudgetEdges:
    """The review's cases: what cannot be held to a budget fails, refunds follow what was
    billed, and a reused edit is not paid for twice."""

    async def _run(self, svc, name: str) -> list:
        status, doc = await svc.post("/trigger", {"prefix": f"{name}/"})
        assert status == 202, doc
        return await until(lambda: _final_jobs(svc, doc["job_id"]), what="jobs final")

    async def test_a_dollar_budget_needs_a_priced_model(self, start_service, env, fake_openai):
        data = Path(env["IMAGEDROP_DATA_DIR"])
        folder(data, "newmodel", "prompt: warmer\nmodel: gpt-image-9\nbudget:\n"
                                 "  usd_per_day: 5\n", 2)
        svc = await start_service(env)
        jobs = await self._run(svc, "newmodel")
        assert {j.state for j in jobs} == {"failed"}
        assert all("no price for model 'gpt-image-9'" in j.error for j in jobs)
        assert fake_openai.calls == []

    async def test_an_edit_bigger_than_the_day_fails_even_with_hold(self, start_service, env,
                                                                     fake_openai):
        data = Path(env["IMAGEDROP_DATA_DIR"])
        folder(data, "tiny", "prompt: warmer\nbudget:\n  usd_per_day: 0.001\n  over: hold\n", 2)
        svc = await start_service(env)
        jobs = await self._run(svc, "tiny")
        assert {j.state for j in jobs} == {"failed"}
        assert all("can never run" in j.error for j in jobs)
        assert fake_openai.calls == []

    async def test_an_error_answer_gives_the_edit_back(self, start_service, env, fake_openai):
        data = Path(env["IMAGEDROP_DATA_DIR"])
        folder(data, "refused", "prompt: '[moderation] warmer'\nbudget:\n  edits_per_day: 1\n"
                                "  over: fail\n", 3)
        svc = await start_service({**env, "IMAGEDROP_CONCURRENCY": "1"})  # one after another
        jobs = await self._run(svc, "refused")
        # Each was refused by the provider (not billed), so the next found the budget free.
        assert len(fake_openai.calls) == 3
        assert all("moderation" in j.error for j in jobs)
        scope = f"folder:{BUCKET}/refused/imagedrop.yaml"
        assert (await svc.ledger.budget_usage(scope, _today()))[0] == 0

    async def test_an_unreachable_provider_bills_nothing(self, start_service, env):
        """A connection refused never reached OpenAI: the edit is given back, so an outage
        does not use up the folder's day."""
        data = Path(env["IMAGEDROP_DATA_DIR"])
        folder(data, "down", "prompt: warmer\nbudget:\n  edits_per_day: 1\n  over: fail\n", 2)
        svc = await start_service({**env, "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
                                   "IMAGEDROP_MAX_ATTEMPTS": "1", "IMAGEDROP_CONCURRENCY": "1"})
        jobs = await self._run(svc, "down")
        # Both tried (the first gave its edit back), neither refused for the budget.
        assert [("could not reach OpenAI" in (j.error or "")) for j in jobs] == [True, True]
        scope = f"folder:{BUCKET}/down/imagedrop.yaml"
        assert (await svc.ledger.budget_usage(scope, _today()))[0] == 0

    async def test_a_reused_edit_costs_nothing(self, start_service, env, receiver):
        data = Path(env["IMAGEDROP_DATA_DIR"])
        folder(data, "again", "prompt: warmer\n", 2)
        (data / BUCKET / "again" / "imagedrop.yaml").unlink()  # the request's own prompt
        svc = await start_service(env)
        for round_ in range(2):  # each batch writes to its own folder: the edit is copied
            status, _ = await svc.post("/trigger", {"prefix": "again/", "prompt": "warmer"},
                                       callback=receiver.url(f"/cb{round_}"))
            assert status == 202
            [summary] = await receiver.await_requests(1, path=f"/cb{round_}", timeout=30)
            body = json.loads(summary.body)
            assert body["processed"] == 2
            expected = 2 * EDIT_COST if round_ == 0 else 0.0
            assert body["estimated_cost_usd"] == pytest.approx(expected)


def _today() -> str:
    from imagedrop.prices import utc_day

    return utc_day(time.time())


async def _final_jobs(svc, batch_id):
    progress = await svc.ledger.batch_progress(batch_id)
    if not progress.listing_done or progress.queued or progress.running or progress.held:
        return None
    return await svc.ledger.list_jobs(batch_id=batch_id)
