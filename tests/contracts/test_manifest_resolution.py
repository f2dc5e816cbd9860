"""Nearest-manifest resolution and its ETag cache, against the local folder and COS (moto)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from imagedrop.errors import StorageError
from imagedrop.manifests import ManifestResolver, folders_above
from imagedrop.storage import ObjectInfo, ObjectStore, StoredObject
from imagedrop.storage.cos import CosStore
from imagedrop.storage.local import LocalStore
from tests.fakes.s3 import TEST_BUCKET

OTHER_BUCKET = "imagedrop-results"
TTL = 30.0


class CountingStore:
    """A real store that counts the reads the resolver makes (head/get per key)."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.name = inner.name
        self.calls: Counter[tuple[str, str]] = Counter()

    def count(self, op: str) -> int:
        return sum(n for (o, _), n in self.calls.items() if o == op)

    async def get(self, bucket: str, key: str, *, max_bytes: int | None = None) -> StoredObject:
        self.calls["get", key] += 1
        return await self.inner.get(bucket, key, max_bytes=max_bytes)

    async def head(self, bucket: str, key: str) -> ObjectInfo | None:
        self.calls["head", key] += 1
        return await self.inner.head(bucket, key)

    async def put(self, bucket: str, key: str, data: bytes, *, content_type: str,
                  metadata: dict[str, str] | None = None) -> ObjectInfo:
        return await self.inner.put(bucket, key, data, content_type=content_type,
                                    metadata=metadata)

    def list(self, bucket: str, prefix: str = "", *, page_size: int = 1000,
             start_after: str = "") -> AsyncIterator[list[ObjectInfo]]:
        return self.inner.list(bucket, prefix, page_size=page_size, start_after=start_after)

    async def presign_get(self, bucket: str, key: str, expires_in: int) -> str:
        return await self.inner.presign_get(bucket, key, expires_in)

    async def ensure_bucket(self, bucket: str) -> None:
        await self.inner.ensure_bucket(bucket)

    async def close(self) -> None:
        await self.inner.close()

    def check_name(self, bucket: str, key: str | None = None, *,
                   prefix: str | None = None) -> None:
        self.inner.check_name(bucket, key, prefix=prefix)


class FakeClock:
    """Time that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(name="store", params=["local", "cos"])
async def _store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[CountingStore]:
    """A counting wrapper around a real store of each kind, TEST_BUCKET created."""
    if request.param == "local":
        inner: ObjectStore = LocalStore(tmp_path, public_url="http://imagedrop.invalid",
                                        signing_key=b"k" * 32)
    else:
        inner = CosStore(request.getfixturevalue("cos_settings"))
    store = CountingStore(inner)
    assert isinstance(store, ObjectStore)
    try:
        await store.ensure_bucket(TEST_BUCKET)
        yield store
    finally:
        await store.close()


@pytest.fixture(name="clock")
def _clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(name="resolver")
def _resolver(store: CountingStore, clock: FakeClock) -> ManifestResolver:
    return ManifestResolver(store, clock=clock, ttl=TTL)


async def put_manifest(store: ObjectStore, key: str, text: str) -> None:
    await store.put(TEST_BUCKET, key, text.encode(), content_type="application/yaml")


class TestNearest:
    """The nearest folder with a manifest governs; broken means broken, not the parent's."""

    async def test_nearest_wins_and_deeper_overrides(self, store, resolver) -> None:
        await put_manifest(store, "imagedrop.yaml", "prompt: root")
        await put_manifest(store, "photos/imagedrop.yaml", "prompt: photos")
        await put_manifest(store, "photos/food/imagedrop.json", '{"prompt": "food"}')
        cases = {"top.jpg": ("root", ""), "photos/a.jpg": ("photos", "photos/"),
                 "photos/food/a.jpg": ("food", "photos/food/"),
                 "photos/food/deep/er/a.jpg": ("food", "photos/food/"),
                 "photos/drinks/a.jpg": ("photos", "photos/")}
        for key, (prompt, folder) in cases.items():
            found = await resolver.resolve(TEST_BUCKET, key)
            assert found is not None and found.ok and found.error is None
            assert (found.manifest.prompt, found.folder) == (prompt, folder), key
            assert found.bucket == TEST_BUCKET and found.etag
            assert found.source_key == folder + ("imagedrop.json" if prompt == "food"
                                                 else "imagedrop.yaml")
        found = await resolver.resolve(TEST_BUCKET, "photos/food/deep/a.jpg")
        assert found.relative("photos/food/deep/a.jpg") == "deep/a.jpg"

    async def test_no_manifest_is_none(self, store, resolver) -> None:
        await store.put(TEST_BUCKET, "photos/a.jpg", b"x", content_type="image/jpeg")
        assert await resolver.resolve(TEST_BUCKET, "photos/a.jpg") is None
        assert await resolver.resolve("no-such-bucket", "photos/a.jpg") is None

    async def test_yaml_takes_precedence_in_one_folder(self, store, resolver) -> None:
        await put_manifest(store, "f/imagedrop.json", '{"prompt": "json"}')
        await put_manifest(store, "f/imagedrop.yaml", "prompt: yaml")
        found = await resolver.resolve(TEST_BUCKET, "f/a.png")
        assert found.manifest.prompt == "yaml"

    async def test_broken_nearest_does_not_fall_back(self, store, resolver) -> None:
        await put_manifest(store, "photos/imagedrop.yaml", "prompt: fine")
        await put_manifest(store, "photos/food/imagedrop.yaml", "promt: typo\n")
        found = await resolver.resolve(TEST_BUCKET, "photos/food/a.jpg")
        assert found is not None and not found.ok and found.manifest is None
        assert found.folder == "photos/food/" and found.output_prefixes == []
        fields = {(p.file, p.field) for p in found.error.problems}
        source = f"{TEST_BUCKET}/photos/food/imagedrop.yaml"
        assert fields == {(source, "promt"), (source, "prompt")}

    async def test_output_over_its_own_folder_is_an_error(self, store, resolver) -> None:
        await put_manifest(store, "photos/food/imagedrop.yaml", "prompt: x\noutput:\n"
                                                                "  prefix: photos/\n")
        found = await resolver.resolve(TEST_BUCKET, "photos/food/a.jpg")
        assert not found.ok and found.error.problems[0].field == "output.prefix"

    async def test_oversized_manifest_is_not_fetched(self, store, resolver) -> None:
        await put_manifest(store, "big/imagedrop.yaml", "prompt: x\n#" + "x" * 70_000)
        found = await resolver.resolve(TEST_BUCKET, "big/a.jpg")
        assert not found.ok and "at most" in str(found.error)
        assert store.count("get") == 0

    async def test_storage_errors_propagate(self, store, resolver) -> None:
        await store.inner.close()
        with pytest.raises(StorageError):
            await resolver.resolve(TEST_BUCKET, "photos/a.jpg")


class TestCache:
    """Within ttl nothing is read; after it a HEAD revalidates; a GET only on a new ETag."""

    async def test_cache_hit_reads_nothing(self, store, resolver, clock) -> None:
        await put_manifest(store, "photos/imagedrop.yaml", "prompt: one")
        first = await resolver.resolve(TEST_BUCKET, "photos/food/a.jpg")
        heads, gets = store.count("head"), store.count("get")
        assert gets == 1 and heads == 6  # three names in photos/food/, three in photos/
        clock.now += TTL - 1
        for name in ("a.jpg", "b.png", "c.webp"):
            again = await resolver.resolve(TEST_BUCKET, f"photos/food/{name}")
            assert again == first
        assert (store.count("head"), store.count("get")) == (heads, gets)

    async def test_same_etag_after_ttl_heads_but_does_not_get(self, store, resolver,
                                                              clock) -> None:
        await put_manifest(store, "photos/imagedrop.yaml", "prompt: one")
        await resolver.resolve(TEST_BUCKET, "photos/a.jpg")
        store.calls.clear()
        clock.now += TTL + 1
        found = await resolver.resolve(TEST_BUCKET, "photos/a.jpg")
        assert found.manifest.prompt == "one"
        assert store.calls == Counter({("head", "photos/imagedrop.yaml"): 1})

    async def test_new_etag_is_read_after_ttl(self, store, resolver, clock) -> None:
        await put_manifest(store, "photos/imagedrop.yaml", "prompt: one")
        before = await resolver.resolve(TEST_BUCKET, "photos/a.jpg")
        await put_manifest(store, "photos/imagedrop.yaml", "prompt: two")
        clock.now += TTL - 1
        assert (await resolver.resolve(TEST_BUCKET, "photos/a.jpg")).manifest.prompt == "one"
        clock.now += 2
        after = await resolver.resolve(TEST_BUCKET, "photos/a.jpg")
        assert after.manifest.prompt == "two" and after.etag != before.etag
        assert after.manifest.revision != before.manifest.revision
        assert store.calls["get", "photos/imagedrop.yaml"] == 2

    async def test_appearing_and_disappearing_manifests(self, store, resolver, clock) -> None:
        await put_manifest(store, "imagedrop.yaml", "prompt: root")
        assert (await resolver.resolve(TEST_BUCKET, "p/a.jpg")).folder == ""
        await put_manifest(store, "p/imagedrop.yml", "prompt: p")
        clock.now += TTL + 1
        assert (await resolver.resolve(TEST_BUCKET, "p/a.jpg")).manifest.prompt == "p"
        await put_manifest(store, "p/imagedrop.yaml", "prompt: p2")  # outranks .yml
        clock.now += TTL + 1
        assert (await resolver.resolve(TEST_BUCKET, "p/a.jpg")).manifest.prompt == "p2"

    async def test_invalidate_rereads_at_once(self, store, resolver) -> None:
        await put_manifest(store, "photos/imagedrop.yaml", "prompt: one")
        await resolver.resolve(TEST_BUCKET, "photos/a.jpg")
        await put_manifest(store, "photos/imagedrop.yaml", "promt: broken")
        resolver.invalidate(TEST_BUCKET, "photos/imagedrop.yaml")
        found = await resolver.resolve(TEST_BUCKET, "photos/a.jpg")
        assert not found.ok and found.error.problems[0].field == "prompt"
        await put_manifest(store, "imagedrop.yaml", "prompt: root")
        resolver.invalidate(TEST_BUCKET, "imagedrop.yaml")
        assert (await resolver.resolve(TEST_BUCKET, "top.jpg")).manifest.prompt == "root"

    async def test_invalidate_beats_a_read_already_in_flight(self, store, resolver) -> None:
        await put_manifest(store, "photos/imagedrop.yaml", "prompt: one")
        read, release = asyncio.Event(), asyncio.Event()
        real_get = store.get

        async def slow_get(bucket: str, key: str) -> StoredObject:
            got = await real_get(bucket, key)  # the old version is read...
            read.set()
            await release.wait()  # ...and held while the manifest changes
            return got

        store.get = slow_get  # type: ignore[method-assign]
        stale = asyncio.ensure_future(resolver.resolve(TEST_BUCKET, "photos/a.jpg"))
        await asyncio.wait_for(read.wait(), timeout=30)
        await put_manifest(store, "photos/imagedrop.yaml", "prompt: two")
        resolver.invalidate(TEST_BUCKET, "photos/imagedrop.yaml")
        release.set()
        assert (await asyncio.wait_for(stale, timeout=30)).manifest.prompt == "one"
        store.get = real_get  # type: ignore[method-assign]
        assert (await resolver.resolve(TEST_BUCKET, "photos/a.jpg")).manifest.prompt == "two"

    async def test_concurrent_lookups_share_one_read(self, store, resolver) -> None:
        await put_manifest(store, "photos/imagedrop.yaml", "prompt: one")
        found = await asyncio.gather(*(resolver.resolve(TEST_BUCKET, f"photos/{i}.jpg")
                                       for i in range(20)))
        assert {f.manifest.prompt for f in found} == {"one"}
        assert store.count("get") == 1 and store.count("head") == 3

    async def test_cache_is_bounded(self, store, clock) -> None:
        resolver = ManifestResolver(store, clock=clock, ttl=TTL, max_folders=2)
        for folder in ("a/", "b/", "c/"):
            assert await resolver.resolve(TEST_BUCKET, f"{folder}x.jpg") is None
        store.calls.clear()
        await resolver.resolve(TEST_BUCKET, "c/x.jpg")
        assert store.count("head") == 0  # c/ and "" are the two kept
        await resolver.resolve(TEST_BUCKET, "a/x.jpg")
        assert store.count("head") == 3  # a/ was evicted


class TestIsOutput:
    """Objects under any output location on the path never count as inputs."""

    async def test_default_and_explicit_output_folders(self, store, resolver) -> None:
        await put_manifest(store, "photos/food/imagedrop.yaml", "prompt: x")
        await put_manifest(store, "shop/imagedrop.yaml", "prompt: x\noutput: {prefix: done/}")
        assert await resolver.is_output(TEST_BUCKET, "photos/food/edited/a.png")
        assert await resolver.is_output(TEST_BUCKET, "photos/food/edited/sub/a.png")
        assert not await resolver.is_output(TEST_BUCKET, "photos/food/a.png")
        assert not await resolver.is_output(TEST_BUCKET, "done/a.png")  # shop/ not seen yet
        assert not await resolver.is_output(TEST_BUCKET, "shop/a.png")
        assert await resolver.is_output(TEST_BUCKET, "done/a.png")

    async def test_outputs_of_an_outer_manifest_under_an_inner_one(self, store,
                                                                   resolver) -> None:
        await put_manifest(store, "imagedrop.yaml", "prompt: x\noutput: {prefix: p/out/}")
        await put_manifest(store, "p/imagedrop.yaml", "prompt: y")
        assert await resolver.is_output(TEST_BUCKET, "p/out/a.png")  # root's output
        assert await resolver.is_output(TEST_BUCKET, "p/edited/a.png")  # p/'s default
        assert not await resolver.is_output(TEST_BUCKET, "p/a.png")

    async def test_outputs_in_another_bucket(self, store, resolver) -> None:
        await store.ensure_bucket(OTHER_BUCKET)
        await put_manifest(store, "in/imagedrop.yaml",
                           f"prompt: x\noutput: {{bucket: {OTHER_BUCKET}, prefix: r/}}")
        assert (await resolver.resolve(TEST_BUCKET, "in/a.jpg")).output_prefixes == [
            (OTHER_BUCKET, "r/")]
        assert await resolver.is_output(OTHER_BUCKET, "r/a.jpg")
        assert not await resolver.is_output(OTHER_BUCKET, "s/a.jpg")
        assert not await resolver.is_output(TEST_BUCKET, "r/a.jpg")


class TestFoldersAbove:
    """The folders that may govern a key, nearest first."""

    def test_folders(self) -> None:
        assert folders_above("a/b/c.jpg") == ["a/b/", "a/", ""]
        assert folders_above("c.jpg") == [""]


class TestInvalidateByEtag:
    """Seeing the cached manifest's own version again does not throw the cache away."""

    async def test_same_etag_keeps_the_cache(self, tmp_path):
        from imagedrop.manifests import ManifestResolver
        from imagedrop.storage.local import LocalStore

        store = LocalStore(tmp_path, public_url="http://x", signing_key=b"k")
        try:
            await store.ensure_bucket("b")
            info = await store.put("b", "f/imagedrop.yaml", b"prompt: x\n",
                                   content_type="text/yaml")
            resolver = ManifestResolver(store, ttl=3600)
            first = await resolver.resolve("b", "f/a.png")
            resolver.invalidate("b", "f/imagedrop.yaml", info.etag)
            assert resolver._cache  # kept
            resolver.invalidate("b", "f/imagedrop.yaml", "another-etag")
            assert not resolver._cache
            assert (await resolver.resolve("b", "f/a.png")).etag == first.etag
        finally:
            await store.close()
