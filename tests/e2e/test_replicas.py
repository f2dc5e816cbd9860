"""Several `imagedrop serve` replicas on one PostgreSQL ledger: one SIGKILLed mid-run loses and
doubles nothing; the edit rate and a billing stop hold for all replicas together."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests  # a plain sync client: these tests drive processes, not a loop
from standardwebhooks.webhooks import Webhook

from tests.contracts.ledger_backends import POSTGRES_URL, fresh_schema, postgres_admin
from tests.e2e.procs import serve_env
from tests.fakes.s3 import ibm_s3_client
from tests.fixtures import images

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BUCKET = "drops"
TOKEN = "tok123"
N_IMAGES = 240
CONCURRENCY = 8
MANIFEST = """\
prompt: "Make this food photo look appetizing"
output:
  prefix: "edited/"
settle_seconds: 1
subscribers:
  - url: {hook}
    secret: env:IMAGEDROP_HOOK_SECRET_MAIN
"""


@pytest.fixture(name="pg_url")
def _pg_url() -> Iterator[str]:
    """IMAGEDROP_DATABASE_URL for a fresh schema (skipped locally without a server)."""
    schema = fresh_schema()

    async def run(sql: str) -> None:
        admin = await postgres_admin()
        try:
            await admin.execute(sql)
        finally:
            await admin.close()

    asyncio.run(run(f'CREATE SCHEMA "{schema}"'))
    yield f"{POSTGRES_URL}?schema={schema}"
    asyncio.run(run(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def s3_event(key: str, etag: str, size: int) -> bytes:
    """The S3 notification AWS would post for one object write."""
    return json.dumps({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": BUCKET}, "object": {"key": key, "size": size, "eTag": etag}},
    }]}).encode()


def verified(request: Any) -> dict[str, Any]:
    """The webhook body, after checking its Standard Webhooks signature."""
    headers = {k.lower(): v for k, v in request.headers.items()}
    return Webhook(SECRET).verify(request.body, headers)


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `check()` until it returns something truthy; AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in {timeout} s")
        time.sleep(0.2)  # a poll interval; the deadline is the condition's
    return value


def put_images(endpoint: str, n: int) -> list[tuple[str, str, int]]:
    """n distinct small images written through ibm-cos-sdk: (key, etag, size) each."""
    client = ibm_s3_client(endpoint)

    def put(i: int) -> tuple[str, str, int]:
        key, body = f"food/p{i:03d}.png", images.png(32 + i % 60, 24 + i // 60)
        return key, client.put_object(Bucket=BUCKET, Key=key, Body=body)["ETag"], len(body)

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(put, range(n)))


def cos_env(endpoint: str, pg_url: str, fake_openai: Any, **extra: str) -> dict[str, str]:
    return serve_env(
        COS_ENDPOINT=endpoint, COS_REGION="us-east-1", COS_BUCKET=BUCKET,
        COS_ACCESS_KEY_ID="test", COS_SECRET_ACCESS_KEY="test", IMAGEDROP_HOOK_SECRET_MAIN=SECRET,
        # Ten-minute leases: the killed replica's work must be taken over by liveness.
        IMAGEDROP_DATABASE_URL=pg_url, IMAGEDROP_LEASE_SECONDS="600",
        IMAGEDROP_SWEEP_INTERVAL="0", IMAGEDROP_INTAKE_TOKEN=TOKEN, IMAGEDROP_LOG_LEVEL="WARNING",
        OPENAI_API_KEY=fake_openai.api_key, OPENAI_BASE_URL=fake_openai.base_url, **extra)


class TestThreeReplicas:
    """Notifications to two random replicas each, one replica killed: every image once."""

    def test_sigkill_one_of_three(self, serve, pg_url, s3_endpoint, fake_openai, receiver):
        client = ibm_s3_client(s3_endpoint)
        client.create_bucket(Bucket=BUCKET)
        client.put_object(Bucket=BUCKET, Key="food/imagedrop.yaml",
                          Body=MANIFEST.format(hook=receiver.url("/hook")).encode())
        fake_openai.latency, fake_openai.echo = 0.2, True
        env = cos_env(s3_endpoint, pg_url, fake_openai, IMAGEDROP_CONCURRENCY=str(CONCURRENCY))
        replicas = [serve(env) for _ in range(3)]
        objects = put_images(s3_endpoint, N_IMAGES)
        rng = random.Random(7)
        sends = [(body, replica) for key, etag, size in objects
                 for body in [s3_event(key, etag, size)]
                 for replica in rng.sample(replicas, 2)]
        rng.shuffle(sends)

        def send(item: tuple[bytes, Any]) -> bool:
            body, replica = item
            try:
                resp = requests.post(f"{replica.url}/events?token={TOKEN}", data=body,
                                     headers={"Content-Type": "application/json"}, timeout=30)
            except requests.ConnectionError:
                return False  # the killed replica: the other copy carries the image
            return resp.status_code == 200

        victim = replicas[0]
        with ThreadPoolExecutor(12) as pool:
            acks = pool.map(send, sends)
            fake_openai.wait_for_calls(N_IMAGES // 4, timeout=60)
            victim.kill()
            calls_at_kill = len(fake_openai.calls)
            acked = list(acks)
        assert calls_at_kill < N_IMAGES  # it really died mid-run
        accepted = {body for (body, _), ok in zip(sends, acked, strict=True) if ok}
        assert len(accepted) == N_IMAGES  # every image reached a live replica at least once

        def finished() -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
            by_id = {r.headers["webhook-id"]: r for r in receiver.requests_for("/hook")}
            events = {i: verified(r) for i, r in by_id.items()}
            done = {i: e for i, e in events.items() if e["type"] == "image.completed"}
            batches = [e["data"] for e in events.values() if e["type"] == "batch.completed"]
            if len(done) >= N_IMAGES and sum(b["total_files"] for b in batches) >= N_IMAGES:
                return done, batches
            return None

        completed, batches = wait_until(finished, 120, "every image.completed and summary")
        # One event per image, however often it was delivered (one webhook-id per event).
        keys = sorted(e["data"]["source"]["key"] for e in completed.values())
        assert keys == sorted(key for key, _, _ in objects)
        assert all(verified(r) for r in receiver.requests_for("/hook"))  # every copy signed
        assert sum(b["total_files"] for b in batches) == N_IMAGES
        assert sum(b["processed"] for b in batches) == N_IMAGES
        assert sum(b["failed"] for b in batches) == 0
        # Each output exists once, marked by the job that wrote it.
        listed = client.list_objects_v2(Bucket=BUCKET, Prefix="edited/", MaxKeys=1000)
        outputs = [o["Key"] for o in listed["Contents"]]
        assert len(outputs) == N_IMAGES
        markers = {client.head_object(Bucket=BUCKET, Key=k)["Metadata"]["imagedrop-job"]
                   for k in outputs[::20]}
        assert len(markers) == len(outputs[::20])
        # Every image was edited; only edits in flight on the killed replica were paid twice.
        calls = fake_openai.calls
        assert len({c.image_sha256 for c in calls}) == N_IMAGES
        assert len(calls) <= N_IMAGES + CONCURRENCY


def local_batch_env(tmp_path: Any, pg_url: str, fake_openai: Any, **extra: str
                    ) -> dict[str, str]:
    """Replicas sharing one local folder (same IMAGEDROP_DATA_DIR) and one PostgreSQL."""
    return serve_env(
        IMAGEDROP_DATA_DIR=str(tmp_path / "data"), IMAGEDROP_DATABASE_URL=pg_url,
        OPENAI_API_KEY=fake_openai.api_key, OPENAI_BASE_URL=fake_openai.base_url,
        IMAGEDROP_SWEEP_INTERVAL="0", COS_INPUT_PREFIX="photos/", IMAGEDROP_LOG_LEVEL="WARNING",
        **extra)


class TestSharedLimits:
    """The edit rate and a billing stop are the same for every replica on the ledger."""

    def test_rate_holds_for_two_replicas_together(self, tmp_path, serve, pg_url, fake_openai,
                                                  receiver):
        photos = tmp_path / "data" / "imagedrop" / "photos"
        photos.mkdir(parents=True)
        for i in range(10):
            (photos / f"p{i}.png").write_bytes(images.png(40 + i, 40))
        env = local_batch_env(tmp_path, pg_url, fake_openai, IMAGEDROP_EDITS_PER_MINUTE="60",
                              IMAGEDROP_CONCURRENCY="4")
        first, _second = serve(env), serve(env)
        resp = requests.post(first.url + "/batch-process-images", json={"prompt": "p"},
                             headers={"callbackUrl": receiver.url("/summary")}, timeout=10)
        assert resp.status_code == 202
        summary = json.loads(receiver.wait_for(1, "/summary", timeout=60)[0].body)
        assert summary["processed"] == 10
        times = sorted(c.time for c in fake_openai.calls)
        assert len(times) == 10
        # 60/min with a burst of 1: any k+1 calls span at least k s (0.5 s for arrival jitter).
        for i in range(len(times)):
            for j in range(i + 1, len(times)):
                assert j - i <= 1 + (times[j] - times[i] + 0.5), (i, j, times)

    def test_billing_stop_reaches_the_other_replica(self, tmp_path, serve, pg_url,
                                                    fake_openai, receiver):
        env = local_batch_env(tmp_path, pg_url, fake_openai)
        body = {"image_base64": base64.b64encode(images.png()).decode()}
        one = serve(env)
        resp = requests.post(one.url + "/process-image-async-b64",
                             json=body | {"prompt": "[billing] first"},
                             headers={"callbackUrl": receiver.url("/one")}, timeout=10)
        assert resp.status_code == 202
        assert json.loads(receiver.wait_for(1, "/one", 30)[0].body)["status"] == "completed"
        assert len(fake_openai.calls) == 1
        one.stop()  # the stop lives in the ledger, not in a process that saw it
        two = serve(env)
        resp = requests.post(two.url + "/process-image-async-b64",
                             json=body | {"prompt": "second"},
                             headers={"callbackUrl": receiver.url("/two")}, timeout=10)
        assert json.loads(receiver.wait_for(1, "/two", 30)[0].body)["status"] == "completed"
        job = requests.get(f"{two.url}/jobs/{resp.json()['job_id']}", timeout=10).json()
        assert job["result"]["fallback_local"] is True
        assert len(fake_openai.calls) == 1  # the second replica never called the provider
