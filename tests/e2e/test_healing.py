"""Self-healing folders: images a broken manifest failed are queued again, once, when the fixed
manifest arrives; images that failed for any other reason stay failed."""

from __future__ import annotations

import asyncio
import json

import pytest

from imagedrop.ledger import JobState
from imagedrop.web import keys
from tests.fakes.s3 import ibm_s3_client
from tests.fixtures import images

pytestmark = pytest.mark.asyncio

BUCKET = "heal"
GOOD = 'prompt: "{prompt}"\nsettle_seconds: 0\nsubscribers:\n  - url: {hook}\n'
BROKEN = b"prompt: x\nqualty: high\n"


@pytest.fixture(name="env")
async def _env(s3_endpoint, fake_openai):
    await asyncio.to_thread(ibm_s3_client(s3_endpoint).create_bucket, Bucket=BUCKET)
    return {"COS_ENDPOINT": s3_endpoint, "COS_REGION": "us-east-1", "COS_BUCKET": BUCKET,
            "COS_ACCESS_KEY_ID": "test", "COS_SECRET_ACCESS_KEY": "test",
            "IMAGEDROP_SWEEP_INTERVAL": "0", "OPENAI_API_KEY": fake_openai.api_key,
            "OPENAI_BASE_URL": fake_openai.base_url}


async def put(endpoint: str, key: str, body: bytes) -> dict:
    """Write an object and return the S3 notification AWS would send for it."""
    client = ibm_s3_client(endpoint)
    etag = (await asyncio.to_thread(client.put_object, Bucket=BUCKET, Key=key,
                                    Body=body))["ETag"]
    return {"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": BUCKET},
                   "object": {"key": key, "size": len(body), "eTag": etag}}}


async def notify(svc, *records: dict) -> dict:
    status, doc = await svc.post("/events", {"Records": list(records)})
    assert status == 200, doc
    return doc


class TestSelfHealing:
    async def test_a_fixed_manifest_heals_what_the_broken_one_failed(
        self, start_service, env, s3_endpoint, receiver, fake_openai,
    ):
        svc = await start_service(env)
        hook = receiver.url("/hook")
        # Under a working manifest, c.png fails for a reason of its own (moderation).
        good = GOOD.format(prompt="[moderation] warmer", hook=hook).encode()
        await notify(svc, await put(s3_endpoint, "f/imagedrop.yaml", good))
        [moderated] = (await notify(svc, await put(s3_endpoint, "f/c.png",
                                                   images.png(30, 30))))["recorded"]
        assert (await svc.wait_job(moderated))["state"] == "failed"
        # The manifest breaks: a.png and b.png fail because of it.
        await notify(svc, await put(s3_endpoint, "f/imagedrop.yaml", BROKEN))
        blocked = (await notify(svc, await put(s3_endpoint, "f/a.png", images.png(31, 30)),
                                await put(s3_endpoint, "f/b.png", images.png(32, 30))))
        for job_id in blocked["recorded"]:
            job = await svc.wait_job(job_id)
            assert job["state"] == "failed" and "qualty" in job["error"]
        assert len(fake_openai.calls) == 1  # only c.png ever reached the provider

        # Fixed: the manifest's new version queues a.png and b.png again, by itself.
        fixed = GOOD.format(prompt="warmer", hook=hook).encode()
        await notify(svc, await put(s3_endpoint, "f/imagedrop.yaml", fixed))
        # c.png's image.failed, then a.png's and b.png's image.completed.
        done = await receiver.await_requests(3, path="/hook", timeout=30)
        events = [json.loads(r.body) for r in done]
        completed = sorted(e["data"]["source"]["key"] for e in events
                           if e["type"] == "image.completed")
        assert completed == ["f/a.png", "f/b.png"]
        assert (await svc.wait_job(moderated))["state"] == "failed"  # its own reason: stays
        # Another new version heals nothing again: each image was healed once.
        calls = len(fake_openai.calls)
        again = GOOD.format(prompt="warmer still", hook=hook).encode()
        await notify(svc, await put(s3_endpoint, "f/imagedrop.yaml", again))
        assert len(fake_openai.calls) == calls == 3

    async def test_a_still_broken_version_heals_nothing(
        self, start_service, env, s3_endpoint, fake_openai,
    ):
        svc = await start_service(env)
        await notify(svc, await put(s3_endpoint, "g/imagedrop.yaml", BROKEN))
        [job_id] = (await notify(svc, await put(s3_endpoint, "g/a.png",
                                                images.png())))["recorded"]
        assert (await svc.wait_job(job_id))["state"] == "failed"
        await notify(svc, await put(s3_endpoint, "g/imagedrop.yaml", BROKEN + b"# v2\n"))
        [again] = (await notify(svc, await put(s3_endpoint, "g/b.png",
                                               images.png(20, 20))))["recorded"]
        assert (await svc.wait_job(again))["state"] == "failed"
        assert (await svc.wait_job(job_id))["state"] == "failed"
        assert fake_openai.calls == []


async def test_the_sweep_heals_a_local_folder(start_service, receiver, tmp_path):
    """On the embedded default no notification comes: the sweep sees the manifest change."""
    svc = await start_service({"IMAGEDROP_SWEEP_INTERVAL": "0.2"})
    ledger = svc.app[keys.LEDGER]
    folder = tmp_path / "data" / "imagedrop" / "inbox"
    folder.mkdir(parents=True)
    (folder / "imagedrop.yaml").write_bytes(BROKEN)
    (folder / "a.png").write_bytes(images.png(40, 30))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while not await ledger.list_jobs(state=JobState.FAILED):
        assert loop.time() < deadline, "the sweep never failed the image"
        await asyncio.sleep(0.05)
    (folder / "imagedrop.yaml").write_text(GOOD.format(prompt="warmer",
                                                       hook=receiver.url("/hook")))
    [hook] = await receiver.await_requests(1, path="/hook", timeout=30)
    assert json.loads(hook.body)["type"] == "image.completed"
    assert [p.name for p in (folder / "edited").iterdir()] == ["a.png"]
