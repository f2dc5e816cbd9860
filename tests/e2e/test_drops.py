"""Drop a file, end to end: moto S3 → SNS → HTTP → /events, manifests, signed subscriber calls."""

from __future__ import annotations

import asyncio
import base64
import json
import random

import boto3
import pytest
from standardwebhooks.webhooks import Webhook

from tests.fakes.s3 import ibm_s3_client
from tests.fixtures import images

pytestmark = pytest.mark.asyncio

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BUCKET = "drops"
MANIFEST = """\
prompt: "Make this food photo look appetizing"
output:
  prefix: "photos/food/edited/"
settle_seconds: {settle}
subscribers:
  - url: {hook}
    secret: env:IMAGEDROP_HOOK_SECRET_MAIN
"""


def sns_client(endpoint: str):
    return boto3.client("sns", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test")


def wire_notifications(endpoint: str, target_url: str) -> None:
    """S3 → SNS topic → HTTP subscription to `target_url` (moto delivers it for real)."""
    sns = sns_client(endpoint)
    topic = sns.create_topic(Name="drops")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=target_url)
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    s3.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration={
        "TopicConfigurations": [{"TopicArn": topic, "Events": ["s3:ObjectCreated:*"]}]})


def put(endpoint: str, key: str, body: bytes) -> None:
    ibm_s3_client(endpoint).put_object(Bucket=BUCKET, Key=key, Body=body)


@pytest.fixture(name="drop_env")
async def _drop_env(s3_endpoint, receiver):
    client = ibm_s3_client(s3_endpoint)
    await asyncio.to_thread(client.create_bucket, Bucket=BUCKET)
    return {"COS_ENDPOINT": s3_endpoint, "COS_REGION": "us-east-1", "COS_BUCKET": BUCKET,
            "COS_ACCESS_KEY_ID": "test", "COS_SECRET_ACCESS_KEY": "test",
            "IMAGEDROP_HOOK_SECRET_MAIN": SECRET, "IMAGEDROP_SWEEP_INTERVAL": "0",
            "IMAGEDROP_INTAKE_TOKEN": "tok123"}


# Long enough that images put one after another on a loaded 2-core machine still share a batch;
# the tests wait for the batch's summary, so a longer window only delays them a little.
SETTLE = 2.0


async def manifest(endpoint: str, receiver, *, settle: float = SETTLE, folder="photos/food/"):
    text = MANIFEST.format(settle=settle, hook=receiver.url("/hook"))
    await asyncio.to_thread(put, endpoint, f"{folder}imagedrop.yaml", text.encode())


def verified(request) -> dict:
    """The webhook body, after checking its Standard Webhooks signature."""
    headers = {k.lower(): v for k, v in request.headers.items()}
    return Webhook(SECRET).verify(request.body, headers)


class TestDropAFile:
    """Objects written through ibm-cos-sdk are edited and announced, each exactly once."""

    async def test_sns_notifications_edit_and_sign(self, start_service, receiver, drop_env,
                                                   s3_endpoint, fake_openai):
        svc = await start_service(drop_env | {"OPENAI_API_KEY": fake_openai.api_key,
                                              "OPENAI_BASE_URL": fake_openai.base_url})
        await manifest(s3_endpoint, receiver)
        await asyncio.to_thread(wire_notifications, s3_endpoint, f"{svc.url}/events?token=tok123")
        names = ["burger.jpg", "red fries+salt é.png"]
        for name in names:
            await asyncio.to_thread(put, s3_endpoint, f"photos/food/{name}", images.jpeg())
        hooks = await receiver.await_requests(3, path="/hook", timeout=60)  # 2 images + batch
        events = [verified(r) for r in hooks]
        by_type = {}
        for event in events:
            by_type.setdefault(event["type"], []).append(event["data"])
        assert sorted(d["source"]["key"] for d in by_type["image.completed"]) == sorted(
            f"photos/food/{n}" for n in names)
        [batch] = by_type["batch.completed"]
        assert batch["total_files"] == 2 and batch["processed"] == 2
        # Outputs landed in the watched folder's edited/ sub-folder and started nothing more.
        client = ibm_s3_client(s3_endpoint)
        listed = await asyncio.to_thread(client.list_objects_v2, Bucket=BUCKET,
                                         Prefix="photos/food/edited/")
        assert len(listed["Contents"]) == 2
        # moto notified /events of each output inside the write itself, before the job could
        # complete: had an output started work, a third edit would have been recorded by now.
        assert len(fake_openai.calls) == 2
        assert len(receiver.requests_for("/hook")) == 3

    async def test_duplicates_shuffled_edit_once(self, start_service, receiver, drop_env,
                                                 s3_endpoint, fake_openai):
        """Every notification delivered three times, shuffled: one provider call per version."""
        svc = await start_service(drop_env | {"OPENAI_API_KEY": fake_openai.api_key,
                                              "OPENAI_BASE_URL": fake_openai.base_url})
        await manifest(s3_endpoint, receiver)
        # Capture the real SNS envelopes first, then replay them to the service.
        await asyncio.to_thread(wire_notifications, s3_endpoint, receiver.url("/sns"))
        for i in range(5):
            await asyncio.to_thread(put, s3_endpoint, f"photos/food/p{i}.png", images.png(30 + i))
        captured = await receiver.await_requests(6, path="/sns", timeout=30)  # +1 manifest
        deliveries = [r for r in captured for _ in range(3)]
        random.Random(4).shuffle(deliveries)

        async def send(request) -> int:
            headers = {"Content-Type": "text/plain; charset=UTF-8",
                       "x-amz-sns-message-type": "Notification"}
            async with svc.session.post(svc.url + "/events?token=tok123", data=request.body,
                                        headers=headers) as resp:
                return resp.status

        assert set(await asyncio.gather(*(send(r) for r in deliveries))) == {200}
        hooks = await receiver.await_requests(6, path="/hook", timeout=60)  # 5 images + batch
        types = sorted(verified(r)["type"] for r in hooks)
        assert types == ["batch.completed"] + ["image.completed"] * 5
        assert len(fake_openai.calls) == 5
        assert len({c["image_sha256"] for c in fake_openai.calls}) == 5

    async def test_token_required(self, start_service, drop_env):
        svc = await start_service(drop_env)
        body = {"Records": []}
        status, doc = await svc.post("/events", body)
        assert status == 401 and "token" in doc["error"]
        status, _ = await svc.post("/events?token=tok123", body)
        assert status == 200
        status, _ = await svc.post("/events", body, headers={"Authorization": "Bearer tok123"})
        assert status == 200
        # MinIO sends its auth token on the HEAD probe too: without it, the probe says 401.
        async with svc.session.head(svc.url + "/events") as resp:
            assert resp.status == 401
        async with svc.session.head(svc.url + "/events",
                                    headers={"Authorization": "Bearer tok123"}) as resp:
            assert resp.status == 200
        async with svc.session.head(svc.url + "/events?token=wrong") as resp:
            assert resp.status == 401

    async def test_malformed_body_is_a_clear_400(self, start_service, drop_env):
        svc = await start_service(drop_env)
        async with svc.session.post(svc.url + "/events?token=tok123", data=b"{not json") as r:
            assert r.status == 400 and "JSON" in (await r.json())["error"]

    async def test_broken_manifest_fails_the_image_with_the_reason(
            self, start_service, receiver, drop_env, s3_endpoint):
        svc = await start_service(drop_env)
        await asyncio.to_thread(put, s3_endpoint, "bad/imagedrop.yaml",
                                b"prompt: x\nqualty: high\nsubscribers: nope\n")
        await asyncio.to_thread(put, s3_endpoint, "bad/a.png", images.png())
        info = await asyncio.to_thread(ibm_s3_client(s3_endpoint).head_object, Bucket=BUCKET,
                                       Key="bad/a.png")
        event = {"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3",
                              "eventName": "ObjectCreated:Put", "s3": {
                                  "bucket": {"name": BUCKET},
                                  "object": {"key": "bad/a.png", "size": 10,
                                             "eTag": info["ETag"]}}}]}
        status, doc = await svc.post("/events?token=tok123", event)
        assert status == 200 and len(doc["recorded"]) == 1
        job = await svc.wait_job(doc["recorded"][0])
        assert job["state"] == "failed"
        assert "bad/imagedrop.yaml" in job["error"] and "qualty" in job["error"]

    async def test_unmanaged_folder_and_non_images_are_ignored(self, start_service, drop_env):
        svc = await start_service(drop_env)
        event = {"Records": [
            {"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
             "s3": {"bucket": {"name": BUCKET}, "object": {"key": "nomanifest/a.png",
                                                           "eTag": "e1", "size": 1}}},
            {"eventSource": "aws:s3", "eventName": "ObjectRemoved:Delete",
             "s3": {"bucket": {"name": BUCKET}, "object": {"key": "x/a.png"}}},
            {"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
             "s3": {"bucket": {"name": BUCKET}, "object": {"key": "x/notes.txt", "eTag": "e",
                                                           "size": 1}}}]}
        status, doc = await svc.post("/events?token=tok123", event)
        assert status == 200 and doc["recorded"] == []
        reasons = " | ".join(i["reason"] for i in doc["ignored"])
        assert "no imagedrop.yaml" in reasons and "not an object write" in reasons
        assert "not an image" in reasons

    async def test_subscriber_down_then_up(self, start_service, receiver, drop_env,
                                           s3_endpoint):
        receiver.respond("/hook", [503, 503, 503, 503])  # then 200
        svc = await start_service(drop_env)
        await manifest(s3_endpoint, receiver, settle=0)
        await asyncio.to_thread(wire_notifications, s3_endpoint, f"{svc.url}/events?token=tok123")
        await asyncio.to_thread(put, s3_endpoint, "photos/food/a.png", images.png())
        hooks = await receiver.await_requests(5, path="/hook", timeout=60)
        ids = {r.headers.get("webhook-id") for r in hooks}
        assert len(ids) == 1  # one event, retried under one id
        assert all(verified(r)["type"] == "image.completed" for r in hooks)


class TestTriggerAndReplay:
    """POST /trigger edits a folder as its manifest says; POST /replay re-runs what failed."""

    async def test_trigger_counts_already_edited_versions(
            self, start_service, receiver, drop_env, s3_endpoint, fake_openai):
        env = drop_env | {"OPENAI_API_KEY": fake_openai.api_key,
                          "OPENAI_BASE_URL": fake_openai.base_url}
        svc = await start_service(env)
        await manifest(s3_endpoint, receiver, settle=0)
        for i in range(3):
            await asyncio.to_thread(put, s3_endpoint, f"photos/food/t{i}.png", images.png(20 + i))
        status, body = await svc.post("/trigger", {"prefix": "photos/food/"},
                                      callback=receiver.url("/summary"))
        assert status == 202 and body["batch_id"] == body["job_id"]
        summary = json.loads((await receiver.await_requests(1, "/summary", 60))[0].body)
        assert (summary["total_files"], summary["processed"]) == (3, 3)
        assert len(fake_openai.calls) == 3
        # Again: every version was already edited with this recipe: counted, not edited.
        status, _ = await svc.post("/trigger", {"prefix": "photos/food/"},
                                   callback=receiver.url("/summary2"))
        assert status == 202
        summary2 = json.loads((await receiver.await_requests(1, "/summary2", 60))[0].body)
        assert summary2["processed"] == 3 and len(fake_openai.calls) == 3

    async def test_trigger_without_manifest_needs_a_prompt(self, start_service, drop_env):
        svc = await start_service(drop_env)
        status, body = await svc.post("/trigger", {"prefix": "nothing/"})
        assert status == 422 and "prompt" in body["error"]

    async def test_replay_failed_job(self, start_service, receiver, drop_env, s3_endpoint,
                                     fake_openai):
        env = drop_env | {"OPENAI_API_KEY": fake_openai.api_key,
                          "OPENAI_BASE_URL": fake_openai.base_url, "IMAGEDROP_MAX_ATTEMPTS": "1"}
        svc = await start_service(env)
        await asyncio.to_thread(put, s3_endpoint, "f/a.png", images.png())
        fake_openai.script(["server_error"])
        status, body = await svc.post("/trigger", {"prefix": "f/", "prompt": "p"},
                                      callback=receiver.url("/s1"))
        first = json.loads((await receiver.await_requests(1, "/s1", 60))[0].body)
        assert first["failed"] == 1
        status, replayed = await svc.post("/replay", {"batch_id": body["batch_id"]})
        assert status == 200 and len(replayed["jobs"]) == 1
        assert replayed["requeued"] == 1 and replayed["more"] is False
        job = await svc.wait_job(replayed["jobs"][0], state="completed")
        assert job["state"] == "completed"

    async def test_replay_by_prefix_in_pages(self, start_service, receiver, drop_env,
                                             s3_endpoint, fake_openai):
        env = drop_env | {"OPENAI_API_KEY": fake_openai.api_key,
                          "OPENAI_BASE_URL": fake_openai.base_url, "IMAGEDROP_MAX_ATTEMPTS": "1"}
        svc = await start_service(env)
        for i in range(5):
            await asyncio.to_thread(put, s3_endpoint, f"g/{i}.png", images.png(20 + i, 20))
        status, _ = await svc.post("/trigger", {"prefix": "g/", "prompt": "[moderation]"},
                                   callback=receiver.url("/s"))
        assert status == 202
        assert json.loads((await receiver.await_requests(1, "/s", 60))[0].body)["failed"] == 5
        pages = []
        while True:
            status, page = await svc.post("/replay", {"prefix": "g/", "limit": 2})
            assert status == 200
            pages.append(page["requeued"])
            if not page["more"]:
                break
        assert pages == [2, 2, 1]
        status, bad = await svc.post("/replay", {"prefix": "g/", "limit": 0})
        assert status == 422 and "limit" in bad["error"]


class TestRedelivery:
    """A receiver that refused a callback gets it again on an explicit replay."""

    async def test_replay_failed_callback(self, start_service, receiver, drop_env):
        receiver.respond("/refuse", [400])  # a 4xx other than 408/409/425/429: final
        svc = await start_service(drop_env)
        _, body = await svc.post("/process-image-async-b64",
                                 {"prompt": "p",
                                  "image_base64": base64.b64encode(images.png()).decode()},
                                 callback=receiver.url("/refuse"))
        job = await svc.wait_delivered(body["job_id"])
        [delivery] = job["deliveries"]
        assert delivery["state"] == "failed" and delivery["last_status"] == 400
        status, replayed = await svc.post("/replay", {"delivery_ids": [delivery["id"]]})
        assert status == 200 and replayed["deliveries"] == [delivery["id"]]
        requests = await receiver.await_requests(2, path="/refuse", timeout=30)
        assert requests[0].body == requests[1].body
        job = await svc.wait_delivered(body["job_id"])
        assert job["deliveries"][0]["state"] == "delivered"


class TestIntakeLimits:
    """Unknown callers cost nothing; oversized bodies are refused however they are sent."""

    async def test_no_token_is_refused_before_the_body_is_read(self, start_service, drop_env):
        svc = await start_service(drop_env | {"IMAGEDROP_MAX_EVENT_BYTES": "1000"})

        async def chunks():
            for _ in range(200):
                yield b"x" * 10_000

        async with svc.session.post(svc.url + "/events", data=chunks()) as resp:
            assert resp.status == 401

    async def test_chunked_oversized_body_is_413(self, start_service, drop_env):
        svc = await start_service(drop_env | {"IMAGEDROP_MAX_EVENT_BYTES": "1000"})

        async def chunks():
            for _ in range(5):
                yield b'{"Records": [' + b" " * 500

        async with svc.session.post(svc.url + "/events?token=tok123", data=chunks()) as resp:
            assert resp.status == 413 and "1000" in (await resp.json())["error"]

    async def test_control_characters_in_a_key_are_ignored(self, start_service, drop_env):
        svc = await start_service(drop_env)
        event = {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                              "s3": {"bucket": {"name": BUCKET},
                                     "object": {"key": "a%00b.png", "eTag": "e", "size": 1}}}]}
        status, doc = await svc.post("/events?token=tok123", event)
        assert status == 200 and doc["recorded"] == []
        assert "control characters" in doc["ignored"][0]["reason"]


class TestSnsSubscription:
    """SNS subscription handshakes: only AWS SNS URLs are ever fetched."""

    async def test_foreign_subscribe_url_is_not_fetched(self, start_service, drop_env, receiver):
        svc = await start_service(drop_env)
        for url in (receiver.url("/confirm"), "https://sns.example.com/?Action=Confirm",
                    "http://sns.us-east-1.amazonaws.com/?Action=Confirm"):
            envelope = {"Type": "SubscriptionConfirmation", "MessageId": "m1",
                        "Token": "t" * 20, "TopicArn": "arn:aws:sns:us-east-1:1:drops",
                        "Message": "confirm", "SubscribeURL": url,
                        "Timestamp": "2026-11-26T00:00:00.000Z"}
            headers = {"x-amz-sns-message-type": "SubscriptionConfirmation"}
            status, doc = await svc.post("/events?token=tok123", envelope, headers=headers)
            assert status == 200
            assert "not an https AWS SNS URL" in doc["ignored"][-1]["reason"]
        assert receiver.requests_for("/confirm") == []
