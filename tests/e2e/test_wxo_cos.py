"""WXO endpoints against S3 (moto server over real HTTP, through ibm-cos-sdk)."""

from __future__ import annotations

import asyncio
import base64
import io
import json

import aiohttp
import pytest
from PIL import Image

from imagedrop.storage import OUTPUT_MARKER
from tests.fakes.s3 import ibm_s3_client
from tests.fixtures import images

pytestmark = pytest.mark.asyncio


@pytest.fixture(name="cos_env")
def _cos_env(s3_endpoint) -> dict[str, str]:
    client = ibm_s3_client(s3_endpoint)
    for bucket in ("in-bucket", "out-bucket"):
        client.create_bucket(Bucket=bucket)
    return {"COS_ENDPOINT": s3_endpoint, "COS_REGION": "us-east-1", "COS_BUCKET": "in-bucket",
            "COS_OUTPUT_BUCKET": "out-bucket", "COS_INPUT_PREFIX": "photos/",
            "COS_OUTPUT_PREFIX": "edited/", "COS_ACCESS_KEY_ID": "test",
            "COS_SECRET_ACCESS_KEY": "test"}


async def _callback(receiver, path: str) -> dict:
    return json.loads((await receiver.await_requests(1, path=path, timeout=60))[0].body)


class TestProcessImageToCos:
    """POST /process-image-async."""

    async def test_result_stored_with_marker_and_presigned(self, start_service, receiver,
                                                           cos_env, s3_endpoint):
        svc = await start_service(cos_env)
        status, body = await svc.post(
            "/process-image-async",
            {"prompt": "p", "filename": "dish.jpg",
             "image_base64": base64.b64encode(images.jpeg(120, 90)).decode()},
            callback=receiver.url("/cb"))
        assert status == 202
        cb = await _callback(receiver, "/cb")
        assert cb["status"] == "completed" and cb["job_id"] == body["job_id"]
        assert cb["object_key"].startswith(f"edited/{body['job_id']}/")
        assert cb["object_key"].endswith(".png") and cb["expires_in"] == 3600
        async with aiohttp.ClientSession() as http, http.get(cb["result_url"]) as resp:
            assert resp.status == 200
            assert Image.open(io.BytesIO(await resp.read())).size == (120, 90)
        head = await asyncio.to_thread(ibm_s3_client(s3_endpoint).head_object,
                                       Bucket="out-bucket", Key=cb["object_key"])
        assert OUTPUT_MARKER in head["Metadata"]


class TestBatch:
    """POST /batch-process-images."""

    async def test_folder_batch_summary(self, start_service, receiver, cos_env, s3_endpoint):
        client = ibm_s3_client(s3_endpoint)
        for i in range(5):
            client.put_object(Bucket="in-bucket", Key=f"photos/img {i}.png",
                              Body=images.png(32 + i, 32))
        client.put_object(Bucket="in-bucket", Key="photos/broken.jpg", Body=b"not an image")
        client.put_object(Bucket="in-bucket", Key="photos/notes.txt", Body=b"skip me")
        client.put_object(Bucket="in-bucket", Key="other/x.png", Body=images.png())
        svc = await start_service(cos_env)
        status, body = await svc.post("/batch-process-images", {"prompt": "brighter"},
                                      callback=receiver.url("/batch"))
        assert status == 202
        summary = await _callback(receiver, "/batch")
        assert summary["job_id"] == body["job_id"]
        assert summary["status"] == "completed_with_errors"
        assert (summary["total_files"], summary["processed"], summary["failed"]) == (6, 5, 1)
        assert summary["total_files_processed"] == 5 and summary["fallback_local"] == 0
        assert summary["output_bucket"] == "out-bucket"
        assert summary["output_prefix"] == f"edited/{body['job_id']}/"
        assert len(summary["errors"]) == 1 and "broken.jpg" in summary["errors"][0]
        listed = client.list_objects_v2(Bucket="out-bucket", Prefix=summary["output_prefix"])
        keys = sorted(o["Key"] for o in listed["Contents"])
        assert keys == [f"{summary['output_prefix']}img {i}.png" for i in range(5)]
        assert len(receiver.requests_for("/batch")) == 1  # one summary, not one per image

    async def test_batch_billing_fallback_counted(self, start_service, receiver, cos_env,
                                                  s3_endpoint, fake_openai):
        client = ibm_s3_client(s3_endpoint)
        for i in range(3):
            client.put_object(Bucket="in-bucket", Key=f"photos/{i}.png", Body=images.png())
        svc = await start_service(cos_env | {"OPENAI_API_KEY": fake_openai.api_key,
                                             "OPENAI_BASE_URL": fake_openai.base_url,
                                             "IMAGEDROP_CONCURRENCY": "1"})
        await svc.post("/batch-process-images", {"prompt": "[billing] x"},
                       callback=receiver.url("/b"))
        summary = await _callback(receiver, "/b")
        assert summary["status"] == "completed"
        assert summary["fallback_local"] == 3 and summary["processed"] == 0
        assert summary["total_files_processed"] == 3
        # after the first billing stop the API is not called again for a while
        assert len(fake_openai.calls) == 1

    async def test_missing_bucket_fails_with_reason(self, start_service, receiver, cos_env):
        svc = await start_service(cos_env)
        await svc.post("/batch-process-images", {"prompt": "x", "bucket": "no-such-bucket"},
                       callback=receiver.url("/b"))
        summary = await _callback(receiver, "/b")
        assert summary["status"] == "failed" and "no-such-bucket" in summary["error"]

    async def test_empty_folder(self, start_service, receiver, cos_env):
        svc = await start_service(cos_env)
        await svc.post("/batch-process-images", {"prompt": "x", "prefix": "empty/"},
                       callback=receiver.url("/b"))
        summary = await _callback(receiver, "/b")
        assert summary["total_files"] == 0 and summary["status"] == "failed"
        assert "no images" in summary["error"]
