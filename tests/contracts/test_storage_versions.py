"""`ObjectStore.get(if_match=…)` on the local folder and on COS (moto over HTTP): a read of one
object version, refused with VersionSuperseded once a newer version replaced it."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from imagedrop.errors import NotFound, PermanentError, VersionSuperseded
from imagedrop.storage import ObjectStore
from imagedrop.storage.cos import CosStore
from imagedrop.storage.local import LocalStore
from tests.fakes.s3 import TEST_BUCKET, ibm_s3_client


@pytest.fixture(name="store", params=["local", "cos"])
async def _store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ObjectStore]:
    if request.param == "local":
        store: ObjectStore = LocalStore(tmp_path, public_url="http://x", signing_key=b"k" * 32)
    else:
        store = CosStore(request.getfixturevalue("cos_settings"))
    try:
        await store.ensure_bucket(TEST_BUCKET)
        yield store
    finally:
        await store.close()


async def overwrite_outside(store: ObjectStore, tmp_path: Path, key: str, data: bytes,
                            request: pytest.FixtureRequest) -> None:
    """A user replacing the object, not through imagedrop."""
    if isinstance(store, LocalStore):
        (tmp_path / TEST_BUCKET / key).write_bytes(data)
        return
    client = ibm_s3_client(request.getfixturevalue("s3_endpoint"))
    await asyncio.to_thread(client.put_object, Bucket=TEST_BUCKET, Key=key, Body=data)


class TestIfMatch:
    """The version asked for, or VersionSuperseded; never the newer bytes."""

    async def test_the_current_version_reads(self, store: ObjectStore):
        put = await store.put(TEST_BUCKET, "in/a.png", b"v1", content_type="image/png")
        for etag in (put.etag, f'"{put.etag}"', f'W/"{put.etag}"'):
            got = await store.get(TEST_BUCKET, "in/a.png", if_match=etag)
            assert got.data == b"v1" and got.info.etag == put.etag

    async def test_a_replaced_version_is_superseded(self, store: ObjectStore, tmp_path: Path,
                                                    request: pytest.FixtureRequest):
        put = await store.put(TEST_BUCKET, "in/a.png", b"v1", content_type="image/png")
        await overwrite_outside(store, tmp_path, "in/a.png", b"v2 is longer", request)
        with pytest.raises(VersionSuperseded) as caught:
            await store.get(TEST_BUCKET, "in/a.png", if_match=put.etag)
        assert isinstance(caught.value, PermanentError) and "in/a.png" in str(caught.value)
        current = await store.get(TEST_BUCKET, "in/a.png")  # without a condition: the newest
        assert current.data == b"v2 is longer"
        assert current.info.etag == hashlib.md5(b"v2 is longer").hexdigest()
        assert (await store.get(TEST_BUCKET, "in/a.png", if_match=current.info.etag)).data == (
            b"v2 is longer")

    async def test_a_missing_object_is_not_found(self, store: ObjectStore):
        with pytest.raises(NotFound):
            await store.get(TEST_BUCKET, "in/none.png", if_match="0" * 32)
