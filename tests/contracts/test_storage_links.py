"""The local store never follows a symbolic link inside the data folder (the folder itself may
be one), names only bucket and key in its errors, and takes long but legal names."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from imagedrop.errors import NotFound, StorageError
from imagedrop.storage.local import LocalStore
from imagedrop.storage.names import InvalidObjectName
from tests.fakes.s3 import TEST_BUCKET


@pytest.fixture(name="dirs")
def _dirs(tmp_path: Path) -> tuple[Path, Path]:
    """(data folder reached through a link, a folder outside it)."""
    real = tmp_path / "real-data"
    real.mkdir()
    data = tmp_path / "data-link"
    data.symlink_to(real)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(b"outside bytes")
    return data, outside


@pytest.fixture(name="local")
async def _local(dirs: tuple[Path, Path]) -> AsyncIterator[LocalStore]:
    store = LocalStore(dirs[0], public_url="http://x.invalid", signing_key=b"k" * 32)
    await store.ensure_bucket(TEST_BUCKET)
    yield store
    await store.close()


async def test_data_folder_may_be_a_link(local: LocalStore) -> None:
    await local.put(TEST_BUCKET, "a/b.png", b"x", content_type="image/png")
    assert (await local.get(TEST_BUCKET, "a/b.png")).data == b"x"


async def test_linked_output_folder_is_not_written_through(
        local: LocalStore, dirs: tuple[Path, Path]) -> None:
    data, outside = dirs
    (data / TEST_BUCKET / "edited").symlink_to(outside)
    with pytest.raises(StorageError, match="symbolic link") as err:
        await local.put(TEST_BUCKET, "edited/out.png", b"x", content_type="image/png")
    assert not (outside / "out.png").exists()
    assert str(data) not in str(err.value) and str(outside) not in str(err.value)
    assert "imagedrop-test/edited/out.png" in str(err.value)


async def test_linked_file_and_folder_are_not_read(
        local: LocalStore, dirs: tuple[Path, Path]) -> None:
    data, outside = dirs
    (data / TEST_BUCKET / "in.png").symlink_to(outside / "secret.png")
    (data / TEST_BUCKET / "sub").symlink_to(outside)
    for key in ("in.png", "sub/secret.png"):
        with pytest.raises((StorageError, NotFound)) as err:
            await local.get(TEST_BUCKET, key)
        assert "outside" not in str(err.value)
        assert await local.head(TEST_BUCKET, key) is None
    listed = [i.key async for page in local.list(TEST_BUCKET) for i in page]
    assert listed == []


async def test_linked_bucket_is_refused(local: LocalStore, dirs: tuple[Path, Path]) -> None:
    data, outside = dirs
    (data / "linked").symlink_to(outside)
    with pytest.raises(StorageError):
        await local.get("linked", "secret.png")
    with pytest.raises(StorageError):
        await local.put("linked", "new.png", b"x", content_type="image/png")
    assert not (outside / "new.png").exists()


async def test_long_legal_name_works(local: LocalStore, dirs: tuple[Path, Path]) -> None:
    key = "folder/" + "n" * 245 + ".png"  # 249 bytes: the longest local segment
    await local.put(TEST_BUCKET, key, b"x", content_type="image/png")
    assert (await local.get(TEST_BUCKET, key)).data == b"x"
    leftovers = [n for n in os.listdir(dirs[0] / TEST_BUCKET / "folder") if n.endswith(".tmp")]
    assert leftovers == []
    with pytest.raises(InvalidObjectName, match="249-byte"):
        await local.put(TEST_BUCKET, "n" * 250, b"x", content_type="image/png")


async def test_missing_bucket_error_names_no_path(local: LocalStore, dirs: tuple[Path, Path]
                                                  ) -> None:
    with pytest.raises(StorageError) as err:
        await local.put("nobucket", "a.png", b"x", content_type="image/png")
    assert str(dirs[0]) not in str(err.value) and "real-data" not in str(err.value)
