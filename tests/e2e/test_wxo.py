"""The three WXO endpoints end to end: real HTTP in, real provider SDK, real callbacks out."""

from __future__ import annotations

import asyncio
import base64
import gzip
import io
import json

import pytest
import structlog
from PIL import Image

from tests.fixtures import images

pytestmark = pytest.mark.asyncio


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def openai_env(fake_openai) -> dict[str, str]:
    return {"OPENAI_API_KEY": fake_openai.api_key, "OPENAI_BASE_URL": fake_openai.base_url}


async def callback_body(receiver, path: str, n: int = 1) -> dict:
    return json.loads((await receiver.await_requests(n, path=path, timeout=30))[n - 1].body)


class TestBase64Endpoint:
    """POST /process-image-async-b64."""

    async def test_local_provider_result_arrives_in_callback(self, start_service, receiver):
        """With no OpenAI key the local provider edits and the callback carries the image."""
        svc = await start_service()
        status, body = await svc.post("/process-image-async-b64",
                                      {"prompt": "warmer", "filename": "cat.png",
                                       "image_base64": b64(images.png(64, 48))},
                                      callback=receiver.url("/cb"))
        assert status == 202 and body["accepted"] is True
        cb = await callback_body(receiver, "/cb")
        assert cb["status"] == "completed" and cb["job_id"] == body["job_id"]
        assert cb["filename"] == "cat.png" and cb["result_mime_type"] == "image/png"
        img = Image.open(io.BytesIO(base64.b64decode(cb["result_image_base64"])))
        assert img.size == (64, 48)

    async def test_openai_edit_and_data_prefix(self, start_service, receiver, fake_openai):
        """A data: URL prefix is accepted; the OpenAI SDK is called once with the settings."""
        svc = await start_service(openai_env(fake_openai) | {"OPENAI_IMAGE_QUALITY": "low"})
        data_url = "data:image/jpeg;base64," + b64(images.jpeg(80, 80))
        status, body = await svc.post("/process-image-async-b64",
                                      {"prompt": "make it pop", "image_base64": data_url},
                                      callback=receiver.url("/cb"))
        assert status == 202
        cb = await callback_body(receiver, "/cb")
        assert cb["status"] == "completed", cb
        assert len(fake_openai.calls) == 1
        call = fake_openai.calls[0]
        assert call["prompt"] == "make it pop" and call["quality"] == "low"
        job = await svc.wait_job(body["job_id"])
        assert job["result"]["provider"] == "openai" and job["attempts"] == 1

    async def test_billing_limit_falls_back_to_local(self, start_service, receiver, fake_openai):
        """billing_hard_limit_reached → the local provider edits; the job completes."""
        svc = await start_service(openai_env(fake_openai))
        _, body = await svc.post(
            "/process-image-async-b64",
            {"prompt": "[billing] brighten", "image_base64": b64(images.png())},
            callback=receiver.url("/cb"))
        cb = await callback_body(receiver, "/cb")
        assert cb["status"] == "completed"
        job = await svc.wait_job(body["job_id"])
        assert job["result"]["fallback_local"] is True and job["result"]["provider"] == "local"

    async def test_moderation_refusal_fails_with_reason(self, start_service, receiver,
                                                        fake_openai):
        """moderation_blocked is permanent: one call, a failed callback saying why."""
        svc = await start_service(openai_env(fake_openai))
        await svc.post("/process-image-async-b64",
                       {"prompt": "[moderation] x", "filename": "a.png",
                        "image_base64": b64(images.png())}, callback=receiver.url("/cb"))
        cb = await callback_body(receiver, "/cb")
        assert cb["status"] == "failed" and cb["filename"] == "a.png"
        assert "moderation" in cb["error"]
        assert len(fake_openai.calls) == 1

    async def test_rate_limit_is_retried_after_retry_after(self, start_service, receiver,
                                                           fake_openai):
        """429 with Retry-After → retried (not before Retry-After) and completed."""
        svc = await start_service(openai_env(fake_openai))
        _, body = await svc.post("/process-image-async-b64",
                                 {"prompt": "[ratelimit] y", "image_base64": b64(images.png())},
                                 callback=receiver.url("/cb"))
        cb = await callback_body(receiver, "/cb")
        assert cb["status"] == "completed"
        job = await svc.wait_job(body["job_id"])
        assert job["attempts"] == 2 and len(fake_openai.calls) == 2
        gap = fake_openai.calls[1]["time"] - fake_openai.calls[0]["time"]
        assert gap >= 0.9  # Retry-After: 1 honoured

    async def test_server_error_is_retried(self, start_service, receiver, fake_openai):
        """A 5xx from the provider is transient: the job completes on the next attempt."""
        svc = await start_service(openai_env(fake_openai))
        await svc.post("/process-image-async-b64",
                       {"prompt": "[flaky] z", "image_base64": b64(images.png())},
                       callback=receiver.url("/cb"))
        assert (await callback_body(receiver, "/cb"))["status"] == "completed"
        assert len(fake_openai.calls) == 2

    async def test_receiver_503_then_200_gets_the_result(self, start_service, receiver):
        """A receiver's 503 never turns a finished result into failed: it is retried."""
        receiver.respond("/flaky", [503, 503, 200])
        svc = await start_service()
        _, body = await svc.post("/process-image-async-b64",
                                 {"prompt": "p", "image_base64": b64(images.png())},
                                 callback=receiver.url("/flaky"))
        reqs = await receiver.await_requests(3, path="/flaky", timeout=30)
        assert [json.loads(r.body)["status"] for r in reqs] == ["completed"] * 3
        job = await svc.wait_delivered(body["job_id"])
        assert job["state"] == "completed"
        assert job["deliveries"][0]["attempts"] == 3
        # the same webhook-id on every attempt, so the receiver can deduplicate
        assert len({r.headers.get("webhook-id") for r in reqs}) == 1


class TestRequestValidation:
    """Bad requests are refused at request time with a clear 4xx."""

    async def test_missing_callback_url(self, start_service):
        svc = await start_service()
        status, body = await svc.post("/process-image-async-b64",
                                      {"prompt": "p", "image_base64": b64(images.png())})
        assert status == 400 and "callbackUrl" in body["error"]

    async def test_callback_header_is_case_insensitive(self, start_service, receiver):
        svc = await start_service()
        status, _ = await svc.post("/process-image-async-b64",
                                   {"prompt": "p", "image_base64": b64(images.png())},
                                   headers={"CALLBACKURL": receiver.url("/cb")})
        assert status == 202

    async def test_invalid_base64(self, start_service, receiver):
        svc = await start_service()
        status, body = await svc.post("/process-image-async-b64",
                                      {"prompt": "p", "image_base64": "not*base64!"},
                                      callback=receiver.url("/cb"))
        assert status == 400 and "base64" in body["error"]

    async def test_non_image(self, start_service, receiver):
        svc = await start_service()
        status, body = await svc.post("/process-image-async-b64",
                                      {"prompt": "p", "image_base64": b64(b"%PDF-1.7\n...")},
                                      callback=receiver.url("/cb"))
        assert 400 <= status < 500 and "image" in body["error"].lower()

    @pytest.mark.parametrize("template", [
        # duplicate keys: the parser keeps the last, and so must the image cut out of the body
        '{{"prompt": "p", "image_base64": "{pdf}", "image_base64": "{png}"}}',
        # the key first inside another object, or quoted inside a string
        '{{"prompt": "p", "x": {{"image_base64": "{pdf}"}}, "image_base64": "{png}"}}',
        '{{"prompt": "say \\"image_base64\\": \\"{pdf}\\"", "image_base64": "{png}"}}',
        # escapes (\\/ from PHP-style encoders): not cut, parsed as before
        '{{"prompt": "p", "image_base64": "{png_escaped}"}}',
    ])
    async def test_the_image_is_the_one_the_document_holds(self, start_service, receiver,
                                                          template: str):
        """The image is cut out of the raw body only when the parsed document shows it was the
        top-level `image_base64`; every other shape is judged as the parser reads it."""
        png = b64(images.png(64, 48))
        body = template.format(pdf=b64(b"%PDF-1.7\n" + bytes(300)), png=png,
                               png_escaped=png.replace("/", "\\/"))
        assert json.loads(body)["image_base64"] == png
        svc = await start_service()
        async with svc.session.post(svc.url + "/process-image-async-b64", data=body, headers={
                **svc.headers, "callbackUrl": receiver.url("/cb"),
                "Content-Type": "application/json"}) as resp:
            assert resp.status == 202, await resp.text()
        cb = await callback_body(receiver, "/cb")
        assert cb["status"] == "completed", cb
        img = Image.open(io.BytesIO(base64.b64decode(cb["result_image_base64"])))
        assert img.size == (64, 48)

    async def test_a_duplicate_key_that_is_no_image_is_refused(self, start_service, receiver):
        body = ('{"prompt": "p", "image_base64": "' + b64(images.png(64, 48)) +
                '", "image_base64": "' + b64(b"%PDF-1.7\n" + bytes(300)) + '"}')
        svc = await start_service()
        async with svc.session.post(svc.url + "/process-image-async-b64", data=body, headers={
                **svc.headers, "callbackUrl": receiver.url("/cb"),
                "Content-Type": "application/json"}) as resp:
            assert resp.status == 400 and "image" in (await resp.json())["error"].lower()

    async def test_missing_prompt(self, start_service, receiver):
        svc = await start_service()
        status, body = await svc.post("/process-image-async-b64",
                                      {"image_base64": b64(images.png())},
                                      callback=receiver.url("/cb"))
        assert status == 422 and "prompt" in body["error"]

    async def test_oversized_body(self, start_service, receiver):
        svc = await start_service({"IMAGEDROP_MAX_BODY_BYTES": "2000"})
        status, body = await svc.post("/process-image-async-b64",
                                      {"prompt": "p", "image_base64": "A" * 5000},
                                      callback=receiver.url("/cb"))
        assert status == 413 and "too large" in body["error"]

    async def test_a_compressed_body_is_limited_by_what_it_inflates_to(self, start_service,
                                                                     receiver):
        """Content-Length of a gzip body is its compressed size: a body that inflates to less
        than the limit is read even when its compressed form is longer (stored blocks)."""
        body = json.dumps({"prompt": "p", "image_base64": b64(images.png(64, 48))}).encode()
        packed = gzip.compress(body, compresslevel=0)
        assert len(packed) > len(body) + 5
        svc = await start_service({"IMAGEDROP_MAX_BODY_BYTES": str(len(body) + 5)})
        hdrs = {**svc.headers, "callbackUrl": receiver.url("/cb"),
                "Content-Type": "application/json", "Content-Encoding": "gzip"}
        async with svc.session.post(svc.url + "/process-image-async-b64", data=packed,
                                    headers=hdrs) as resp:
            assert resp.status == 202, await resp.text()
        big = gzip.compress(json.dumps({"prompt": "p" * (len(body) + 10),
                                        "image_base64": "QUFB"}).encode())
        assert len(big) < len(body)  # small on the wire, over the limit inflated
        async with svc.session.post(svc.url + "/process-image-async-b64", data=big,
                                    headers=hdrs) as resp:
            assert resp.status == 413 and "too large" in (await resp.json())["error"]

    async def test_a_caller_leaving_mid_body_is_no_error(self, start_service, receiver):
        """A client that closes its connection halfway through an upload is logged as such,
        not as a failed request with a traceback."""
        svc = await start_service()
        host, port = svc.url.removeprefix("http://").rsplit(":", 1)
        with structlog.testing.capture_logs() as captured:
            _reader, writer = await asyncio.open_connection(host, int(port))
            head = (f"POST /process-image-async-b64 HTTP/1.1\r\nHost: {host}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: 100000\r\n"
                    f"callbackUrl: {receiver.url('/cb')}\r\n")
            head += "".join(f"{k}: {v}\r\n" for k, v in svc.headers.items())
            writer.write(head.encode() + b"\r\n" + b'{"prompt": "p", "image_base64": "' +
                         b"A" * 4000)
            await writer.drain()
            writer.close()
            await writer.wait_closed()
            deadline = asyncio.get_running_loop().time() + 10
            while not any(e["event"] == "request_abandoned" for e in captured):
                assert asyncio.get_running_loop().time() < deadline, captured
                await asyncio.sleep(0.02)
        assert not [e for e in captured if e["event"] == "request_failed"]
        assert (await svc.get("/health"))[0] == 200

    async def test_private_callback_refused_by_default(self, start_service):
        svc = await start_service({"IMAGEDROP_ALLOW_PRIVATE_CALLBACKS": "0"})
        status, body = await svc.post("/process-image-async-b64",
                                      {"prompt": "p", "image_base64": b64(images.png())},
                                      callback="http://127.0.0.1:9/cb?token=secret")
        assert status == 400 and "secret" not in body["error"]

    async def test_metadata_address_always_refused(self, start_service):
        svc = await start_service()
        status, _ = await svc.post("/process-image-async-b64",
                                   {"prompt": "p", "image_base64": b64(images.png())},
                                   callback="http://169.254.169.254/latest/meta-data")
        assert status == 400


class TestOps:
    """Health, config, job status, OpenAPI and access control."""

    async def test_health_config_openapi(self, start_service):
        svc = await start_service({"COS_OUTPUT_PREFIX": "out/"})
        assert await svc.get("/health") == (200, {"ok": True})
        status, cfg = await svc.get("/cos/config")
        assert status == 200 and cfg["storage"] == "local" and cfg["output_prefix"] == "out/"
        assert not any("secret" in k.lower() or "key_id" in k.lower() for k in cfg)
        status, doc = await svc.get("/openapi.json")
        assert status == 200 and "/process-image-async-b64" in doc["paths"]

    async def test_unknown_job_is_404(self, start_service):
        svc = await start_service()
        status, body = await svc.get("/jobs/nope")
        assert status == 404 and "nope" in body["error"]

    async def test_api_keys_required_except_health(self, start_service, receiver):
        svc = await start_service({"IMAGEDROP_API_KEYS": "k1,k2"})
        assert (await svc.get("/health"))[0] == 200
        assert (await svc.get("/cos/config"))[0] == 401
        assert (await svc.get("/cos/config", headers={"X-API-Key": "k2"}))[0] == 200
        assert (await svc.get("/cos/config", headers={"Authorization": "Bearer k1"}))[0] == 200
        assert (await svc.get("/cos/config", headers={"Authorization": "Bearer k3"}))[0] == 401
        status, _ = await svc.post("/process-image-async-b64",
                                   {"prompt": "p", "image_base64": b64(images.png())},
                                   callback=receiver.url("/cb"))
        assert status == 401
