"""Local-folder mode (the embedded default) end to end: POST /process-image-async, then the
signed `/files/...` link from the callback, which needs no API key but must be intact and fresh.
"""

from __future__ import annotations

import base64
import io
import json
import time
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp
import pytest
from PIL import Image

from imagedrop.storage.urlsign import download_url
from imagedrop.web import keys
from tests.fixtures import images

pytestmark = pytest.mark.asyncio

API_KEY = "e2e-key"


async def _fetch(url: str, **kw: Any) -> tuple[int, str, bytes]:
    """GET with a fresh client that carries no API key: (status, content type, body)."""
    async with aiohttp.ClientSession() as http, http.get(url, **kw) as resp:
        return resp.status, resp.content_type, await resp.read()


@pytest.fixture(name="edited")
async def _edited(start_service, receiver) -> tuple[Any, dict[str, Any]]:
    """A service with API keys on, and the callback of one edit stored in the local folder."""
    svc = await start_service({"IMAGEDROP_API_KEYS": API_KEY})
    status, body = await svc.post(
        "/process-image-async",
        {"prompt": "warmer", "filename": "dish.jpg",
         "image_base64": base64.b64encode(images.jpeg(120, 90)).decode()},
        callback=receiver.url("/cb"), headers={"X-API-Key": API_KEY})
    assert status == 202, body
    [request] = await receiver.await_requests(1, path="/cb", timeout=30)
    callback = json.loads(request.body)
    assert callback["status"] == "completed" and callback["job_id"] == body["job_id"], callback
    return svc, callback


class TestLocalDownload:
    """The result_url of a local-folder edit is an imagedrop /files link."""

    async def test_api_keys_are_enforced(self, start_service) -> None:
        """The service under test does refuse requests without a key (so the link's 200 counts)."""
        svc = await start_service({"IMAGEDROP_API_KEYS": API_KEY})
        status, body = await svc.post("/process-image-async", {"prompt": "p"})
        assert status == 401 and "API key" in body["error"]

    async def test_link_downloads_without_api_key(self, edited) -> None:
        """The callback's link is served by imagedrop itself and returns the edited image."""
        svc, callback = edited
        url = callback["result_url"]
        assert url.startswith(f"{svc.url}/files/")
        assert callback["object_key"].endswith(".png") and callback["expires_in"] == 3600
        status, ctype, data = await _fetch(url)
        assert (status, ctype) == (200, "image/png")
        assert Image.open(io.BytesIO(data)).size == (120, 90)

    @pytest.mark.parametrize("tamper", ["sig", "expires", "key"])
    async def test_tampered_link_is_403_json(self, edited, tamper: str) -> None:
        """Changing the signature, the expiry or the object in the link is refused with JSON."""
        svc, callback = edited
        parts = urlsplit(callback["result_url"])
        query = dict(p.split("=", 1) for p in parts.query.split("&"))
        path = parts.path
        if tamper == "sig":
            query["sig"] = ("0" if query["sig"][0] != "0" else "1") + query["sig"][1:]
        elif tamper == "expires":
            query["expires"] = str(int(query["expires"]) + 3600)
        else:
            path = path.rsplit("/", 1)[0] + "/other.png"
        url = f"{svc.url}{path}?" + "&".join(f"{k}={v}" for k, v in query.items())
        status, ctype, data = await _fetch(url)
        assert (status, ctype) == (403, "application/json")
        assert "invalid or expired" in json.loads(data)["error"]

    async def test_expired_link_is_403_json(self, edited) -> None:
        """A correctly signed link past its expiry is refused; the same link, fresh, works."""
        svc, callback = edited
        _, files, bucket, key = unquote(urlsplit(callback["result_url"]).path).split("/", 3)
        assert files == "files"
        signing_key = svc.app[keys.SIGNING_KEY]
        now = int(time.time())
        status, ctype, data = await _fetch(download_url(svc.url, signing_key, bucket, key, now - 1))
        assert (status, ctype) == (403, "application/json")
        assert "invalid or expired" in json.loads(data)["error"]
        fresh = download_url(svc.url, signing_key, bucket, key, now + 600)
        assert (await _fetch(fresh))[0] == 200
