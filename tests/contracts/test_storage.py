"""One ObjectStore contract, run against the local folder and against COS (moto over HTTP)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import aiohttp
import pytest
from aiohttp import web

from imagedrop.config import StorageSettings
from imagedrop.errors import ImageRejected, NotFound, StorageError, StorageUnavailable
from imagedrop.storage import OUTPUT_MARKER, ObjectInfo, ObjectStore
from imagedrop.storage.cos import CosStore
from imagedrop.storage.local import LocalStore
from imagedrop.storage.names import InvalidObjectName
from imagedrop.storage.urlsign import verify_download
from tests.fakes.s3 import TEST_BUCKET, ibm_s3_client

SIGNING_KEY = b"s" * 32
PUBLIC_URL = "http://imagedrop.invalid"


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


async def _all(store: ObjectStore, prefix: str = "", **kw: object) -> list[list[ObjectInfo]]:
    return [page async for page in store.list(TEST_BUCKET, prefix, **kw)]  # type: ignore[arg-type]


def _keys(pages: list[list[ObjectInfo]]) -> list[str]:
    return [info.key for page in pages for info in page]


@pytest.fixture(name="store", params=["local", "cos"])
async def _store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ObjectStore]:
    """A store of each kind with TEST_BUCKET created."""
    if request.param == "local":
        store: ObjectStore = LocalStore(tmp_path, public_url=PUBLIC_URL, signing_key=SIGNING_KEY)
    else:
        store = CosStore(request.getfixturevalue("cos_settings"))
    try:
        await store.ensure_bucket(TEST_BUCKET)
        await store.ensure_bucket(TEST_BUCKET)  # idempotent
        yield store
    finally:
        await store.close()


class TestRoundtrip:
    """put then get/head give back bytes, content type, metadata and the output marker."""

    async def test_put_get_head(self, store: ObjectStore) -> None:
        data = b"\x89PNG fake bytes"
        put = await store.put(TEST_BUCKET, "in/a.png", data, content_type="image/png",
                              metadata={"job-id": "j1"})
        assert isinstance(store, ObjectStore)
        assert put.etag == _md5(data) and put.size == len(data) and put.is_output
        got = await store.get(TEST_BUCKET, "in/a.png")
        assert got.data == data
        head = await store.head(TEST_BUCKET, "in/a.png")
        for info in (got.info, head):
            assert info is not None
            assert (info.bucket, info.key, info.size) == (TEST_BUCKET, "in/a.png", len(data))
            assert info.etag == put.etag
            assert info.content_type == "image/png"
            assert info.metadata == {"job-id": "j1", OUTPUT_MARKER: "1"}
            assert info.is_output and info.last_modified

    async def test_missing_object(self, store: ObjectStore) -> None:
        with pytest.raises(NotFound):
            await store.get(TEST_BUCKET, "nope.png")
        assert await store.head(TEST_BUCKET, "nope.png") is None

    async def test_put_into_missing_bucket_is_refused(self, store: ObjectStore) -> None:
        with pytest.raises(StorageError):
            await store.put("no-such-bucket", "a.png", b"x", content_type="image/png")

    @pytest.mark.parametrize("key", ["with space.png", "plus+sign.png", "ünïcødé/写真 1.jpg",
                                     "a=b&c.png"])
    async def test_awkward_keys(self, store: ObjectStore, key: str) -> None:
        await store.put(TEST_BUCKET, key, b"data-" + key.encode(), content_type="image/png")
        assert (await store.get(TEST_BUCKET, key)).data == b"data-" + key.encode()
        assert _keys(await _all(store)) == [key]

    async def test_etag_follows_content(self, store: ObjectStore) -> None:
        first = await store.put(TEST_BUCKET, "e.png", b"one", content_type="image/png")
        again = await store.put(TEST_BUCKET, "e.png", b"one", content_type="image/png")
        changed = await store.put(TEST_BUCKET, "e.png", b"two", content_type="image/png")
        assert first.etag == again.etag == _md5(b"one")
        assert changed.etag == _md5(b"two") != first.etag
        head = await store.head(TEST_BUCKET, "e.png")
        assert head is not None and head.etag == changed.etag


class TestMaxBytes:
    """get(max_bytes=...) refuses an oversized object with a 413, before reading its body."""

    async def test_at_the_limit_is_read(self, store: ObjectStore) -> None:
        await store.put(TEST_BUCKET, "m.png", b"x" * 100, content_type="image/png")
        got = await store.get(TEST_BUCKET, "m.png", max_bytes=100)
        assert got.data == b"x" * 100 and got.info.size == 100

    async def test_over_the_limit_is_refused(self, store: ObjectStore) -> None:
        await store.put(TEST_BUCKET, "dir/m.png", b"x" * 101, content_type="image/png")
        with pytest.raises(ImageRejected, match="101 bytes, over the 100-byte limit") as err:
            await store.get(TEST_BUCKET, "dir/m.png", max_bytes=100)
        assert err.value.status == 413 and "dir/m.png" in str(err.value)
        # The refused read left nothing half-open: the store goes on working.
        for _ in range(3):
            with pytest.raises(ImageRejected):
                await store.get(TEST_BUCKET, "dir/m.png", max_bytes=1)
        assert (await store.get(TEST_BUCKET, "dir/m.png")).data == b"x" * 101

    async def test_missing_object_is_still_not_found(self, store: ObjectStore) -> None:
        with pytest.raises(NotFound):
            await store.get(TEST_BUCKET, "nope.png", max_bytes=10)


class TestList:
    """list pages in lexicographic key order, filters by prefix and resumes after a key."""

    KEYS = ("p/b.png", "p/a.png", "p-x.png", "p/sub/c.png", "q.png", "p0.png")

    @pytest.fixture(autouse=True)
    async def _objects(self, store: ObjectStore) -> None:
        for key in self.KEYS:
            await store.put(TEST_BUCKET, key, key.encode(), content_type="image/png")

    async def test_pages_in_key_order(self, store: ObjectStore) -> None:
        pages = await _all(store, page_size=2)
        assert [len(page) for page in pages] == [2, 2, 2]
        assert _keys(pages) == sorted(self.KEYS)
        info = pages[0][0]
        assert (info.key, info.size, info.etag) == ("p-x.png", 7, _md5(b"p-x.png"))

    async def test_prefix(self, store: ObjectStore) -> None:
        assert _keys(await _all(store, "p/", page_size=2)) == ["p/a.png", "p/b.png",
                                                               "p/sub/c.png"]
        assert _keys(await _all(store, "p/s")) == ["p/sub/c.png"]
        assert _keys(await _all(store, "zzz")) == []

    async def test_start_after_resumes(self, store: ObjectStore) -> None:
        expected = sorted(self.KEYS)
        for i, key in enumerate(expected):
            assert _keys(await _all(store, page_size=2, start_after=key)) == expected[i + 1:]
        assert _keys(await _all(store, "p/", start_after="p/a.png")) == ["p/b.png", "p/sub/c.png"]
        # A start_after that is not itself a key still resumes at the right place.
        assert _keys(await _all(store, start_after="p/c")) == ["p/sub/c.png", "p0.png", "q.png"]


class TestPresign:
    """presign_get gives a URL that serves (cos) or verifies (local) for that object."""

    async def test_presigned_url(self, store: ObjectStore) -> None:
        key = "out/photo 1+ü.png"
        await store.put(TEST_BUCKET, key, b"result", content_type="image/png")
        url = await store.presign_get(TEST_BUCKET, key, 600)
        if store.name == "cos":
            async with aiohttp.ClientSession() as session, session.get(url) as resp:
                assert resp.status == 200
                assert await resp.read() == b"result"
            return
        split = urlsplit(url)
        assert url.startswith(f"{PUBLIC_URL}/files/{TEST_BUCKET}/")
        bucket, got_key = (unquote(p) for p in split.path.split("/", 3)[2:])
        query = parse_qs(split.query)
        assert (bucket, got_key) == (TEST_BUCKET, key)
        assert verify_download(SIGNING_KEY, bucket, got_key, query["expires"][0],
                               query["sig"][0], now=int(query["expires"][0]) - 1)


class TestLocalOnly:
    """Local-folder specifics: safe keys, foreign files, atomic writes."""

    @pytest.fixture(name="local")
    async def _local(self, tmp_path: Path) -> AsyncIterator[LocalStore]:
        store = LocalStore(tmp_path, public_url=PUBLIC_URL, signing_key=SIGNING_KEY)
        await store.ensure_bucket(TEST_BUCKET)
        yield store
        await store.close()

    @pytest.mark.parametrize("key", ["../escape.png", "a/../../b.png", "/abs.png", "a//b.png",
                                     "a\\b.png", "nul\0.png", "", "dir/", ".hidden.png", "a/./b"])
    async def test_unsafe_keys_refused(self, local: LocalStore, key: str) -> None:
        # A caller's error (400 at request time), not a storage failure.
        with pytest.raises(InvalidObjectName):
            await local.put(TEST_BUCKET, key, b"x", content_type="image/png")
        with pytest.raises(InvalidObjectName):
            await local.get(TEST_BUCKET, key)

    @pytest.mark.parametrize("bucket", ["../x", ".imagedrop-meta", "a/b", "", ".."])
    async def test_unsafe_buckets_refused(self, local: LocalStore, bucket: str) -> None:
        with pytest.raises(InvalidObjectName):
            await local.ensure_bucket(bucket)

    async def test_dropped_file_listed_with_md5(self, local: LocalStore, tmp_path: Path) -> None:
        data = os.urandom(3000)
        (tmp_path / TEST_BUCKET / "drop").mkdir()
        (tmp_path / TEST_BUCKET / "drop" / "cat.jpg").write_bytes(data)
        (tmp_path / TEST_BUCKET / ".DS_Store").write_bytes(b"junk")
        (tmp_path / "imagedrop.sqlite3").write_bytes(b"not a bucket")
        pages = await _all(local)
        assert _keys(pages) == ["drop/cat.jpg"]
        info = pages[0][0]
        assert info.etag == _md5(data) and info.size == 3000 and not info.is_output
        assert info.content_type == "image/jpeg"
        assert await local.head(TEST_BUCKET, "drop/cat.jpg") == info  # cached, same answer
        # Replaced behind our back: the new content gets a new etag, and an old marker is gone.
        await local.put(TEST_BUCKET, "drop/cat.jpg", b"mine", content_type="image/png")
        (tmp_path / TEST_BUCKET / "drop" / "cat.jpg").write_bytes(b"theirs, longer")
        head = await local.head(TEST_BUCKET, "drop/cat.jpg")
        assert head is not None and head.etag == _md5(b"theirs, longer") and not head.is_output

    async def test_atomic_write_leaves_no_temp_files(self, local: LocalStore,
                                                     tmp_path: Path) -> None:
        await asyncio.gather(*(local.put(TEST_BUCKET, f"d/{i}.png", b"x" * i,
                                         content_type="image/png") for i in range(20)))
        names = [p.name for p in (tmp_path / TEST_BUCKET).rglob("*")]
        assert sorted(names) == sorted(["d", *(f"{i}.png" for i in range(20))])
        meta = [p for p in (tmp_path / ".imagedrop-meta").rglob("*") if p.suffix == ".tmp"]
        assert meta == []

    async def test_max_bytes_checked_before_reading(self, local: LocalStore,
                                                    tmp_path: Path) -> None:
        """A 20 MB file refused at 1 MB never has its bytes allocated (fstat, not read)."""
        (tmp_path / TEST_BUCKET / "big.png").write_bytes(b"\0" * 20_000_000)
        tracemalloc.start()
        try:
            with pytest.raises(ImageRejected, match="20000000 bytes"):
                await local.get(TEST_BUCKET, "big.png", max_bytes=1_000_000)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 5_000_000

    async def test_file_folder_clash_is_storage_error(self, local: LocalStore) -> None:
        await local.put(TEST_BUCKET, "a", b"file", content_type="image/png")
        with pytest.raises(StorageError, match="share one name"):
            await local.put(TEST_BUCKET, "a/b.png", b"x", content_type="image/png")


class TestCosOnly:
    """COS specifics: IAM cannot presign, SDK errors become imagedrop errors."""

    async def test_iam_only_cannot_presign(self, s3_endpoint: str) -> None:
        store = CosStore(StorageSettings(cos_endpoint=s3_endpoint, cos_bucket=TEST_BUCKET,
                                         cos_api_key="iam-secret-key", cos_instance_crn="crn:x"))
        try:
            with pytest.raises(StorageError, match="HMAC") as err:
                await store.presign_get(TEST_BUCKET, "a.png", 60)
            assert "iam-secret-key" not in str(err.value)
        finally:
            await store.close()

    async def test_missing_bucket_is_storage_error(self, cos_settings: StorageSettings) -> None:
        store = CosStore(cos_settings)
        try:
            with pytest.raises(StorageError, match="NoSuchBucket") as err:
                await store.get("no-such-bucket", "a.png")
            assert "no-such-bucket/a.png" in str(err.value)
            with pytest.raises(StorageError, match="NoSuchBucket"):
                await _all_of(store, "no-such-bucket")
        finally:
            await store.close()

    async def test_unreachable_endpoint_is_unavailable(self) -> None:
        endpoint = f"http://127.0.0.1:{_closed_port()}"
        store = CosStore(StorageSettings(
            cos_endpoint=endpoint, cos_region="us-east-1", cos_bucket=TEST_BUCKET,
            cos_access_key_id="ak", cos_secret_access_key="sk-secret"), max_attempts=1)
        try:
            with pytest.raises(StorageUnavailable) as err:
                await store.head(TEST_BUCKET, "a.png")
            assert "sk-secret" not in str(err.value)
        finally:
            await store.close()

    async def test_iam_api_key_mode(self, aiohttp_server: Any, s3_endpoint: str) -> None:
        """An IAM API key is exchanged for a bearer token; a refused key is a StorageError."""
        asked: list[str] = []

        async def token(request: web.Request) -> web.Response:
            apikey = str((await request.post()).get("apikey"))
            asked.append(apikey)
            if apikey != "good-key":
                return web.json_response({"errorMessage": "API key not found"}, status=400)
            return web.json_response({"access_token": "tok", "refresh_token": "r",
                                      "token_type": "Bearer", "expires_in": 3600,
                                      "expiration": int(time.time()) + 3600})

        app = web.Application()
        app.router.add_post("/identity/token", token)
        iam = await aiohttp_server(app)
        for apikey in ("good-key", "bad-key"):
            store = CosStore(StorageSettings(
                cos_endpoint=s3_endpoint, cos_region="us-east-1", cos_bucket=TEST_BUCKET,
                cos_api_key=apikey, cos_instance_crn="crn:x",
                cos_auth_endpoint=str(iam.make_url("/identity/token"))), max_attempts=1)
            try:
                if apikey == "good-key":
                    await store.ensure_bucket(TEST_BUCKET)
                    await store.put(TEST_BUCKET, "i.png", b"iam", content_type="image/png")
                    assert (await store.get(TEST_BUCKET, "i.png")).data == b"iam"
                else:
                    with pytest.raises(StorageError, match="IAM") as err:
                        await store.head(TEST_BUCKET, "i.png")
                    assert "bad-key" not in str(err.value)
            finally:
                await store.close()
        assert "good-key" in asked and "bad-key" in asked
        # The SDK's token refresher thread ends with the store.
        assert not [t for t in threading.enumerate() if "refresher" in repr(t._target)]  # type: ignore[attr-defined]

    async def test_unreachable_iam_is_unavailable(self, s3_endpoint: str) -> None:
        store = CosStore(StorageSettings(
            cos_endpoint=s3_endpoint, cos_bucket=TEST_BUCKET, cos_api_key="k-secret",
            cos_auth_endpoint=f"http://127.0.0.1:{_closed_port()}/identity/token"),
            max_attempts=1)
        try:
            with pytest.raises(StorageUnavailable, match="IAM") as err:
                await store.get(TEST_BUCKET, "a.png")
            assert "k-secret" not in str(err.value)
        finally:
            await store.close()

    async def test_max_bytes_checked_before_reading(self, aiohttp_server: Any) -> None:
        """ContentLength is checked before the body: a body that never ends is not awaited."""
        released = asyncio.Event()

        async def endless(request: web.Request) -> web.StreamResponse:
            resp = web.StreamResponse(headers={"ETag": '"e"', "Content-Type": "image/png"})
            resp.content_length = 10**12
            await resp.prepare(request)
            await resp.write(b"\0" * 1024)
            await released.wait()  # the rest never comes; a store that reads would hang
            return resp

        app = web.Application()
        app.router.add_get("/{bucket}/{key}", endless)
        server = await aiohttp_server(app)
        store = CosStore(StorageSettings(
            cos_endpoint=str(server.make_url("")).rstrip("/"), cos_region="us-east-1",
            cos_bucket=TEST_BUCKET, cos_access_key_id="ak", cos_secret_access_key="sk"),
            max_attempts=1)
        try:
            with pytest.raises(ImageRejected, match=f"{10**12} bytes"):
                await asyncio.wait_for(store.get(TEST_BUCKET, "huge.png", max_bytes=10**6), 30)
        finally:
            released.set()
            await store.close()

    async def test_listing_reads_objects_written_by_others(self, cos_settings: StorageSettings,
                                                           s3_endpoint: str) -> None:
        store = CosStore(cos_settings)
        try:
            await store.ensure_bucket(TEST_BUCKET)
            client = ibm_s3_client(s3_endpoint)
            await asyncio.to_thread(client.put_object, Bucket=TEST_BUCKET, Key="x.jpg",
                                    Body=b"foreign", ContentType="image/jpeg")
            client.close()
            pages = await _all(store)
            assert [(i.key, i.etag, i.metadata) for i in pages[0]] == [
                ("x.jpg", _md5(b"foreign"), {})]
            head = await store.head(TEST_BUCKET, "x.jpg")
            assert head is not None and not head.is_output and head.content_type == "image/jpeg"
        finally:
            await store.close()


def _closed_port() -> int:
    """A loopback port nobody listens on (picked by the OS, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _all_of(store: ObjectStore, bucket: str) -> list[list[ObjectInfo]]:
    return [page async for page in store.list(bucket)]
