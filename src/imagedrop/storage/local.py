"""The local-folder object store: one sub-directory of `data_dir` per bucket, one file per key.

Metadata and cached ETags live in hidden sidecars under `data_dir/.imagedrop-meta/`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import mimetypes
import os
import secrets
import stat
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from imagedrop.errors import NotFound, StorageError, VersionSuperseded
from imagedrop.storage import OUTPUT_MARKER, ObjectInfo, StoredObject, normalise_etag, too_large
from imagedrop.storage.urlsign import download_url

_META_DIR = ".imagedrop-meta"
_T = TypeVar("_T")


def _check_bucket(bucket: str) -> None:
    if not bucket or bucket.startswith(".") or any(c in bucket for c in "/\\\0"):
        raise StorageError(f"bucket name {bucket!r} is not allowed in local mode "
                           "(empty, hidden, or contains '/', '\\' or NUL)")


def _key_parts(key: str) -> list[str]:
    """Split a key into path segments, refusing anything that could leave the bucket folder.

    Dot segments ('.', '..', '.name') are refused too: the listing skips hidden names.
    """
    parts = key.split("/")
    if not key or "\0" in key or "\\" in key or any(p == "" or p[0] == "." for p in parts):
        raise StorageError(
            f"object key {key!r} is not allowed in local mode: use '/'-separated names with no "
            "empty, '.', '..' or hidden ('.name') segments, no leading '/', NUL or backslash")
    return parts


def _sidecar_path(root: Path, bucket: str, parts: list[str]) -> Path:
    # The file part gets a leading dot: keys never have dot segments, so a sidecar file can
    # never collide with a sidecar directory (key "a" vs keys "a.json/…").
    return root / _META_DIR / bucket / Path(*parts[:-1]) / f".{parts[-1]}.json"


def _write_temp(path: Path, data: bytes) -> tuple[Path, os.stat_result]:
    """Write and fsync a hidden temp file beside `path`; its stat survives the later rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
            return tmp, os.fstat(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_atomic(path: Path, data: bytes) -> None:
    tmp, _ = _write_temp(path, data)
    try:
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _version(st: os.stat_result) -> dict[str, int]:
    """What identifies one version of a file: an in-place edit or a replacement changes it."""
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino}


def _same_version(side: dict[str, Any] | None, st: os.stat_result) -> bool:
    """Does the sidecar describe this very file version (and hold an etag)?"""
    return (side is not None and isinstance(side.get("etag"), str)
            and all(side.get(k) == v for k, v in _version(st).items()))


class LocalStore:
    """ObjectStore over a folder; every filesystem call runs in the store's own thread pool."""

    name = "local"

    def __init__(self, data_dir: Path, *, public_url: str, signing_key: bytes,
                 clock: Callable[[], float] = time.time, max_workers: int = 8) -> None:
        self._root = Path(data_dir)
        self._public_url = public_url
        self._signing_key = signing_key
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers, thread_name_prefix="imagedrop-local")
        # Striped locks: sidecar read-check-write must not interleave with a put of the same key.
        self._locks = [threading.Lock() for _ in range(64)]
        self._closed = False

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        if self._closed:
            raise StorageError("local store is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, partial(fn, *args))
        except OSError as exc:  # the one place raw filesystem errors become imagedrop errors
            where = f" ({exc.filename})" if exc.filename else ""
            raise StorageError(f"local storage failed: {exc.strerror or exc}{where}") from exc

    def _lock(self, bucket: str, key: str) -> threading.Lock:
        return self._locks[hash((bucket, key)) % len(self._locks)]

    def _bucket_dir(self, bucket: str, *, must_exist: bool) -> Path:
        _check_bucket(bucket)
        path = self._root / bucket
        if must_exist and not path.is_dir():
            raise StorageError(f"bucket {bucket!r} does not exist in {self._root}")
        return path

    def _read_sidecar(self, bucket: str, parts: list[str]) -> dict[str, Any] | None:
        try:
            side = json.loads(_sidecar_path(self._root, bucket, parts).read_bytes())
        except (OSError, ValueError):
            return None  # missing or damaged: rebuilt from the file itself
        return side if isinstance(side, dict) else None

    def _info(self, bucket: str, key: str, st: os.stat_result, side: dict[str, Any]) -> ObjectInfo:
        return ObjectInfo(bucket=bucket, key=key, etag=side["etag"], size=st.st_size,
                          last_modified=st.st_mtime, content_type=side.get("content_type"),
                          metadata=dict(side.get("metadata") or {}))

    def _describe(self, bucket: str, key: str, parts: list[str], path: Path,
                  data: bytes | None = None, st: os.stat_result | None = None) -> ObjectInfo | None:
        """Info for the file at `path` from its sidecar, rebuilding the sidecar if stale.

        A stale sidecar (size/mtime differ) means someone replaced the file outside imagedrop:
        its metadata (and the OUTPUT_MARKER) no longer applies, so only the etag is recomputed.
        """
        with self._lock(bucket, key):
            try:
                current = os.stat(path)
                if not stat.S_ISREG(current.st_mode):
                    return None
                side = self._read_sidecar(bucket, parts)
                version = st or current
                if _same_version(side, version):
                    return self._info(bucket, key, version, side)  # type: ignore[arg-type]
                if data is not None:
                    etag = hashlib.md5(data, usedforsecurity=False).hexdigest()
                else:
                    with open(path, "rb") as fh:
                        version = os.fstat(fh.fileno())
                        etag = hashlib.file_digest(fh, "md5").hexdigest()
                side = _version(version) | {
                    "etag": etag, "metadata": {},
                    "content_type": mimetypes.guess_type(key)[0] or "application/octet-stream"}
                if _same_version(side, os.stat(path)):  # never cache a version already replaced
                    _write_atomic(_sidecar_path(self._root, bucket, parts),
                                  json.dumps(side).encode())
            except (FileNotFoundError, NotADirectoryError):
                return None
            return self._info(bucket, key, version, side)

    def _get_sync(self, bucket: str, key: str, max_bytes: int | None,
                  if_match: str | None = None) -> StoredObject:
        parts = _key_parts(key)
        path = self._bucket_dir(bucket, must_exist=True).joinpath(*parts)
        try:
            with open(path, "rb") as fh:
                st = os.fstat(fh.fileno())
                if not stat.S_ISREG(st.st_mode):
                    raise IsADirectoryError(path)
                if error := too_large(bucket, key, st.st_size, max_bytes):
                    raise error
                data = fh.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise NotFound(f"object {key!r} not found in bucket {bucket!r}") from exc
        info = self._describe(bucket, key, parts, path, data=data, st=st)
        if info is None:  # deleted since we read it: what we read is still a valid answer
            info = ObjectInfo(bucket, key, hashlib.md5(data, usedforsecurity=False).hexdigest(),
                              len(data), st.st_mtime)
        if if_match and info.etag != normalise_etag(if_match):  # the etag of the bytes read
            raise VersionSuperseded(f"object {key!r} in bucket {bucket!r} has been replaced by "
                                    "a newer version")
        return StoredObject(data=data, info=info)

    def _head_sync(self, bucket: str, key: str) -> ObjectInfo | None:
        parts = _key_parts(key)
        path = self._bucket_dir(bucket, must_exist=False).joinpath(*parts)
        return self._describe(bucket, key, parts, path)

    def _put_sync(self, bucket: str, key: str, data: bytes, content_type: str,
                  metadata: dict[str, str]) -> ObjectInfo:
        parts = _key_parts(key)
        path = self._bucket_dir(bucket, must_exist=True).joinpath(*parts)
        tmp: Path | None = None
        try:
            tmp, st = _write_temp(path, data)
            side = _version(st) | {"etag": hashlib.md5(data, usedforsecurity=False).hexdigest(),
                                   "content_type": content_type, "metadata": metadata}
            with self._lock(bucket, key):
                # Sidecar first: a crash in between leaves a stale sidecar (ignored), never an
                # output file without its OUTPUT_MARKER.
                _write_atomic(_sidecar_path(self._root, bucket, parts), json.dumps(side).encode())
                os.replace(tmp, path)
            _fsync_dir(path.parent)
        except (NotADirectoryError, FileExistsError, IsADirectoryError) as exc:
            raise StorageError(f"cannot write {key!r} in bucket {bucket!r}: a file and a folder "
                               "would share one name") from exc
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
        return self._info(bucket, key, st, side)

    def _walk(self, bucket: str, prefix: str, start_after: str) -> Iterator[tuple[str, Path]]:
        """(key, path) of every regular file under prefix after start_after, in key order."""
        top = self._bucket_dir(bucket, must_exist=True)

        def wanted_dir(dir_key: str) -> bool:  # dir_key ends with '/'
            in_prefix = dir_key.startswith(prefix) or prefix.startswith(dir_key)
            return in_prefix and (dir_key > start_after or start_after.startswith(dir_key))

        def walk(folder: Path, base: str) -> Iterator[tuple[str, Path]]:
            try:
                with os.scandir(folder) as it:
                    entries = [e for e in it if not e.name.startswith(".")]
            except (FileNotFoundError, NotADirectoryError):
                return
            # Sorting directories as "name/" yields keys in plain lexicographic order.
            rows = []
            for e in entries:
                # Symlinks could point out of the bucket; undecodable names cannot be keys.
                if e.is_symlink() or any("\udc80" <= c <= "\udcff" for c in e.name):
                    continue
                if e.is_dir(follow_symlinks=False):
                    rows.append((base + e.name + "/", e, True))
                elif e.is_file(follow_symlinks=False):
                    rows.append((base + e.name, e, False))
            for k, e, is_dir in sorted(rows, key=lambda r: r[0]):
                if is_dir:
                    if wanted_dir(k):
                        yield from walk(Path(e.path), k)
                elif k.startswith(prefix) and k > start_after:
                    yield k, Path(e.path)

        return walk(top, "")

    def _next_page(self, walker: Iterator[tuple[str, Path]], bucket: str,
                   page_size: int) -> list[ObjectInfo]:
        page: list[ObjectInfo] = []
        for key, path in walker:
            info = self._describe(bucket, key, key.split("/"), path)
            if info is not None:  # vanished since the scan
                page.append(info)
                if len(page) >= page_size:
                    break
        return page

    async def get(self, bucket: str, key: str, *, max_bytes: int | None = None,
                  if_match: str | None = None) -> StoredObject:
        return await self._run(self._get_sync, bucket, key, max_bytes, if_match)

    async def head(self, bucket: str, key: str) -> ObjectInfo | None:
        return await self._run(self._head_sync, bucket, key)

    async def put(self, bucket: str, key: str, data: bytes, *, content_type: str,
                  metadata: dict[str, str] | None = None) -> ObjectInfo:
        # Lower-cased like S3 user metadata, so both backends answer the same.
        meta = {k.lower(): v for k, v in (metadata or {}).items()} | {OUTPUT_MARKER: "1"}
        return await self._run(self._put_sync, bucket, key, bytes(data), content_type, meta)

    async def list(self, bucket: str, prefix: str = "", *, page_size: int = 1000,
                   start_after: str = "") -> AsyncIterator[list[ObjectInfo]]:
        """Pages in key order; metadata comes from the sidecars (cheap here, unlike COS)."""
        walker = await self._run(self._walk, bucket, prefix, start_after)
        while page := await self._run(self._next_page, walker, bucket, max(1, page_size)):
            yield page

    async def presign_get(self, bucket: str, key: str, expires_in: int) -> str:
        _check_bucket(bucket)
        _key_parts(key)
        expires_at = int(self._clock()) + int(expires_in)
        return download_url(self._public_url, self._signing_key, bucket, key, expires_at)

    async def ensure_bucket(self, bucket: str) -> None:
        path = self._bucket_dir(bucket, must_exist=False)
        await self._run(partial(path.mkdir, parents=True, exist_ok=True))  # OSError mapped

    async def close(self) -> None:
        self._closed = True
        await asyncio.to_thread(self._executor.shutdown, wait=True)


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (POSIX: the directory entry must be flushed too)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["LocalStore"]
