"""The dashboard over HTTP (issue 11, first part): sign-in with an HttpOnly SameSite=Strict
cookie, pages from the ledger, thumbnails (bounded, cached by version), the markup tests hold
on to, escaping of every user string, actions through the API with the page's CSRF token."""

from __future__ import annotations

import asyncio
import io
import time
from html.parser import HTMLParser

import aiohttp
import pytest
from PIL import Image

from tests.fixtures import images

pytestmark = pytest.mark.asyncio
KEY = "ui-key-123"
EVIL = "<img src=x onerror=alert(1)>.png"


class Cards(HTMLParser):
    """The cards, thumbnails and buttons of a page, as a browser would see the markup."""

    def __init__(self) -> None:
        super().__init__()
        self.cards: list[dict[str, str]] = []
        self.imgs: list[dict[str, str]] = []
        self.buttons: list[dict[str, str]] = []
        self.tags: list[str] = []
        self.csrf = ""

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        self.tags.append(tag)
        if tag == "article" and "data-job-id" in a:
            self.cards.append(a)
        elif tag == "img" and "data-role" in a:
            self.imgs.append(a)
        elif tag == "button" and "data-action" in a:
            self.buttons.append(a)
        elif tag == "meta" and a.get("name") == "csrf-token":
            self.csrf = a["content"]


def parse(html: str) -> Cards:
    page = Cards()
    page.feed(html)
    return page


async def until(check, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not (value := await check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout}s")
        await asyncio.sleep(0.05)
    return value


@pytest.fixture(name="svc")
async def _svc(start_service, tmp_path):
    data = tmp_path / "data"
    folder = data / "imagedrop" / "shop"
    folder.mkdir(parents=True)
    (folder / "imagedrop.yaml").write_text("prompt: warmer\nsettle_seconds: 0\n"
                                           "exclude: ['skip-*']\n")
    (folder / "good.png").write_bytes(images.png(640, 480))
    (folder / "skip-me.png").write_bytes(images.png(20, 20))
    (folder / EVIL).write_bytes(images.png(50, 40))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really" * 10)
    svc = await start_service({"IMAGEDROP_DATA_DIR": str(data), "IMAGEDROP_API_KEYS": KEY,
                               "IMAGEDROP_SWEEP_INTERVAL": "0"})
    svc.headers = {"Authorization": f"Bearer {KEY}"}
    status, doc = await svc.post("/trigger", {"prefix": "shop/"})
    assert status == 202, doc

    async def final():
        _, body = await svc.get(f"/jobs/{doc['job_id']}")
        return body.get("state") == "finished"

    await until(final, what="the folder's batch finished")
    return svc


async def signed_in(svc) -> aiohttp.ClientSession:
    http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with http.get(svc.url + "/ui/folders?prefix=shop/", allow_redirects=False) as resp:
        assert resp.status == 303 and resp.headers["Location"].startswith("/ui/login")
    async with http.get(svc.url + resp.headers["Location"]) as resp:
        assert resp.status == 200
        assert 'input name="key"' in await resp.text()
    async with http.post(svc.url + "/ui/login", data={"key": "wrong", "next": "/ui"},
                         allow_redirects=False) as resp:
        assert resp.status == 401
    target = "/ui/folders?prefix=shop/"
    async with http.post(svc.url + "/ui/login", data={"key": KEY, "next": target},
                         allow_redirects=False) as resp:
        assert resp.status == 303 and resp.headers["Location"] == "/ui/folders?prefix=shop/"
        cookie = resp.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Max-Age=" in cookie
    return http


class TestDashboard:
    async def test_folder_view_cards_thumbnails_and_escaping(self, svc):
        http = await signed_in(svc)
        try:
            async with http.get(svc.url + "/ui/folders?prefix=shop/") as resp:
                assert resp.status == 200
                assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
                html = await resp.text()
            page = parse(html)
            states = sorted(c["data-state"] for c in page.cards)
            assert states == ["completed", "completed", "failed", "skipped"]
            assert "not taken by shop/imagedrop.yaml" in html  # why it was skipped
            # The hostile file name is text, never markup.
            assert EVIL not in html and "&lt;img src=x onerror=alert(1)&gt;.png" in html
            assert page.tags.count("img") == len(page.imgs)  # no img but the thumbnails
            failed = next(c for c in page.cards if c["data-state"] == "failed")
            assert "truncated or corrupt" in html
            assert any(b["data-action"] == "retry" and b["data-job-id"] == failed["data-job-id"]
                       for b in page.buttons)
            roles = [i["data-role"] for i in page.imgs]
            assert roles.count("after") == 2 and roles.count("before") >= 2
            # Thumbnails: bounded JPEGs, cached by the object's version.
            src = next(i["src"] for i in page.imgs if i["data-role"] == "after")
            async with http.get(svc.url + src.replace("&amp;", "&")) as resp:
                assert resp.status == 200 and resp.content_type == "image/jpeg"
                etag = resp.headers["ETag"]
                thumb = Image.open(io.BytesIO(await resp.read()))
                assert max(thumb.size) <= 240
            async with http.get(svc.url + src.replace("&amp;", "&"),
                                headers={"If-None-Match": etag}) as resp:
                assert resp.status == 304
            # The overview and the job page render from the ledger.
            async with http.get(svc.url + "/ui") as resp:
                overview = await resp.text()
                assert resp.status == 200 and "imagedrop/shop/" in overview
            async with http.get(svc.url + f"/ui/jobs/{failed['data-job-id']}") as resp:
                assert resp.status == 200 and "truncated or corrupt" in await resp.text()
            # Signing out ends the session for this browser.
            async with http.post(svc.url + "/ui/logout", allow_redirects=False) as resp:
                assert resp.status == 303
            async with http.get(svc.url + "/ui", allow_redirects=False) as resp:
                assert resp.status == 303 and resp.headers["Location"].startswith("/ui/login")
        finally:
            await http.close()

    async def test_actions_go_through_the_api_with_the_csrf_token(self, svc):
        http = await signed_in(svc)
        try:
            async with http.get(svc.url + "/ui/folders?prefix=shop/") as resp:
                page = parse(await resp.text())
            failed = next(c for c in page.cards if c["data-state"] == "failed")["data-job-id"]
            body = {"job_ids": [failed]}
            # The cookie alone does not act: another site could make a browser send it.
            async with http.post(svc.url + "/replay", json=body) as resp:
                assert resp.status == 401
            async with http.post(svc.url + "/replay", json=body,
                                 headers={"X-CSRF-Token": "forged"}) as resp:
                assert resp.status == 401
            async with http.post(svc.url + "/replay", json=body,
                                 headers={"X-CSRF-Token": "é"}) as resp:
                assert resp.status == 401
            # A page on another site cannot act, whatever it carries.
            async with http.post(svc.url + "/replay", json=body, headers={
                    "X-CSRF-Token": page.csrf, "Origin": "https://evil.example"}) as resp:
                assert resp.status == 403
            async with http.post(svc.url + "/replay", json=body,
                                 headers={"X-CSRF-Token": page.csrf}) as resp:
                assert resp.status == 200, await resp.text()

            async def card_state():
                async with http.get(svc.url + "/ui/folders/cards?prefix=shop/") as resp:
                    cards = parse(await resp.text()).cards
                state = next(c["data-state"] for c in cards if c["data-job-id"] == failed)
                return state if state == "failed" else None

            # The retried image fails again (it is corrupt): its card says so once more.
            assert await until(card_state, what="the retried card final again") == "failed"
        finally:
            await http.close()

    async def test_refusals(self, svc):
        async with aiohttp.ClientSession() as http:
            for path in ("/ui", "/ui/jobs/x", "/ui/deliveries"):
                async with http.get(svc.url + path, allow_redirects=False) as resp:
                    assert resp.status == 303, path  # to the sign-in page
            for path in ("/ui/thumb?bucket=a&key=b", "/ui/folders/cards?prefix=shop/"):
                async with http.get(svc.url + path, allow_redirects=False) as resp:
                    assert resp.status == 401, path  # the page reloads to sign in
            # Odd cookies and tokens are refusals, not errors.
            async with http.get(svc.url + "/jobs", headers={"Cookie": "imagedrop_ui=abc.é"}
                                ) as resp:
                assert resp.status == 401
            async with http.get(svc.url + "/uix", allow_redirects=False) as resp:
                assert resp.status in (401, 404)  # /ui's openness is /ui and /ui/ only
            async with http.post(svc.url + "/ui/login",
                                 data={"key": KEY, "next": "//evil.example"},
                                 allow_redirects=False) as resp:
                assert resp.headers["Location"] == "/ui"  # never another site
        http = await signed_in(svc)
        try:
            for path, status in (("/ui/thumb?bucket=imagedrop&key=../../etc/passwd", 400),
                                 ("/ui/thumb?bucket=imagedrop&key=shop/missing.png", 404),
                                 ("/ui/thumb?bucket=imagedrop&key=shop/imagedrop.yaml", 422),
                                 ("/ui/folders?prefix=%00x", 400),
                                 ("/ui/deliveries?state=bogus", 400),
                                 ("/ui/jobs/nope", 404)):
                async with http.get(svc.url + path) as resp:
                    assert resp.status == status, (path, await resp.text())
        finally:
            await http.close()


class TestAccessWithoutKeys:
    async def test_loopback_only_unless_public(self, start_service, tmp_path):
        svc = await start_service({"IMAGEDROP_DATA_DIR": str(tmp_path / "d")})
        async with aiohttp.ClientSession() as http, http.get(svc.url + "/ui") as resp:
            assert resp.status == 200  # the test client is on loopback
        from imagedrop.web.ui import _guard  # a request from elsewhere

        class Far:
            app = svc.app
            remote = "203.0.113.9"
            path_qs = "/ui"

        with pytest.raises(Exception) as refused:
            _guard(Far())  # type: ignore[arg-type]
        assert "loopback only" in str(refused.value.text)


class TestOnCos:
    """The same pages and thumbnails over COS (moto over HTTP) and the ledger: nothing in them
    is one process's memory or the local folder."""

    async def test_folder_and_thumbnails(self, start_service, s3_endpoint, tmp_path):
        from tests.fakes.s3 import ibm_s3_client

        client = ibm_s3_client(s3_endpoint)
        await asyncio.to_thread(client.create_bucket, Bucket="uicos")
        for key, body in (("cat/imagedrop.yaml", b"prompt: warmer\nsettle_seconds: 0\n"),
                          ("cat/one.png", images.png(200, 100))):
            await asyncio.to_thread(client.put_object, Bucket="uicos", Key=key, Body=body)
        svc = await start_service({
            "COS_ENDPOINT": s3_endpoint, "COS_REGION": "us-east-1", "COS_BUCKET": "uicos",
            "COS_ACCESS_KEY_ID": "test", "COS_SECRET_ACCESS_KEY": "test",
            "IMAGEDROP_SWEEP_INTERVAL": "0", "IMAGEDROP_DATA_DIR": str(tmp_path / "d")})
        status, doc = await svc.post("/trigger", {"bucket": "uicos", "prefix": "cat/"})
        assert status == 202, doc

        async def done():
            _, body = await svc.get(f"/jobs/{doc['job_id']}")
            return body.get("state") == "finished"

        await until(done, what="the COS folder's batch")
        async with aiohttp.ClientSession() as http:
            async with http.get(svc.url + "/ui/folders?bucket=uicos&prefix=cat/") as resp:
                assert resp.status == 200
                page = parse(await resp.text())
            assert [c["data-state"] for c in page.cards] == ["completed"]
            for img in page.imgs:
                async with http.get(svc.url + img["src"]) as resp:
                    assert resp.status == 200 and resp.content_type == "image/jpeg", img



class TestCrossSite:
    """Without keys the API is open to local clients, but not to pages of other sites that a
    local browser visits (CSRF against localhost), nor to a loopback service reached under
    another name (DNS rebinding)."""

    async def test_other_sites_cannot_act_or_read(self, start_service, tmp_path):
        svc = await start_service({"IMAGEDROP_DATA_DIR": str(tmp_path / "d"),
                                   "IMAGEDROP_SWEEP_INTERVAL": "0"})
        async with aiohttp.ClientSession() as http:
            for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"},
                            {"Origin": "null"}):
                async with http.post(svc.url + "/trigger", data='{"prefix": "x/"}',
                                     headers={"Content-Type": "text/plain", **headers}) as resp:
                    assert resp.status == 403, headers
                    assert "another" in (await resp.json())["error"] or "opaque" in (
                        await resp.json())["error"]
            # The same request from a local client (no browser headers) goes through.
            async with http.post(svc.url + "/trigger", json={"prefix": "x/"}) as resp:
                assert resp.status == 422  # no manifest governs x/: but it was heard
            async with http.get(svc.url + "/ui", headers={"Host": "evil.example"}) as resp:
                assert resp.status == 403

    async def test_broken_thumbnail_is_a_clear_refusal(self, start_service, tmp_path):
        data = tmp_path / "d"
        (data / "imagedrop" / "f").mkdir(parents=True)
        half = images.jpeg(400, 300)[:2000]
        (data / "imagedrop" / "f" / "half.jpg").write_bytes(half)
        svc = await start_service({"IMAGEDROP_DATA_DIR": str(data),
                                   "IMAGEDROP_SWEEP_INTERVAL": "0"})
        async with aiohttp.ClientSession() as http, http.get(
                svc.url + "/ui/thumb?bucket=imagedrop&key=f/half.jpg") as resp:
            assert resp.status == 422, await resp.text()
            assert "truncated or corrupt" in (await resp.json())["error"]
            assert resp.headers["Cache-Control"] == "private, max-age=300"
