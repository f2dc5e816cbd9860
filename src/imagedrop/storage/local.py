"""The local-folder object store: one sub-directory of `data_dir` per bucket, one file per key,
metadata in sidecars under `data_dir/.imagedrop-meta/`. No symbolic link inside `data_dir` is
followed (`data_dir` itself may be one); errors name bucket and key, never a path."""

from __future__ import annotations

import asyncio
import errno
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

from imagedrop.errors import NotFound, StorageError, StorageUnavailable, VersionSuperseded
from imagedrop.storage import (
    OUTPUT_MARKER,
    ObjectInfo,
    StoredObject,
    names,
    normalise_etag,
    too_large,
)
from imagedrop.storage.urlsign import download_url

_META_DIR = ".imagedrop-meta"
_T = TypeVar("_T")


#: Errors of a full or failing disk: they pass when space returns, so the work is retried.
_TRANSIENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EAGAIN, errno.ENOMEM}


class _LinkRefused(StorageError):
    """Raised when a path inside the data folder is a symbolic link: never followed."""


def _key_parts(key: str) -> list[str]:
    names.check_key(key, local=True)
    return key.split("/")


def _is_key(key: str) -> bool:
    """Whether a file found by the listing has a name this store can serve (else skipped)."""
    try:
        names.check_key(key, local=True)
    except names.InvalidObjectName:
        return False
    return True


def _dirs(top: Path, parts: list[str], *, create: bool) -> Path:
    """`top/parts…`, each directory on the way checked with lstat (made when `create`): a
    symbolic link is refused, never followed."""
    path = top
    for part in parts:
        path = path / part
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            if not create:
                raise
            try:
                os.mkdir(path)
            except FileExistsError:
                pass
            st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            raise _LinkRefused("is a symbolic link")
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "not a directory")
    return path


def _open_nofollow(path: Path) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _LinkRefused("is a symbolic link") from None
        raise


def _sidecar_path(root: Path, bucket: str, parts: list[str], *, create: bool = False) -> Path:
    # The file part gets a leading dot: keys never have dot segments, so a sidecar file can
    # never collide with a sidecar directory (key "a" vs keys "a.json/…").
    folder = _dirs(root, [_META_DIR, bucket, *parts[:-1]], create=create)
    return folder / f".{parts[-1]}.json"


def _write_temp(path: Path, data: bytes) -> tuple[Path, os.stat_result]:
    """Write and fsync a hidden temp file beside `path` (whose folder exists and was checked);
    its name does not grow with the key's. Its stat survives the later rename."""
    tmp = path.with_name(f".imagedrop-{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o644)
        with open(fd, "wb") as fh:
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

    async def _run(self, op: str, bucket: str, key: str, fn: Callable[..., _T],
                   *args: Any) -> _T:
        if self._closed:
            raise StorageError("local store is closed")
        where = f"{bucket}/{key}" if key else bucket
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, partial(fn, *args))
        except _LinkRefused as exc:
            raise StorageError(f"local {op} {where}: a folder or file on the way {exc}; local "
                               "mode never follows links inside the data folder") from None
        except OSError as exc:  # the one place raw filesystem errors become imagedrop errors
            # Never the path: callers and logs see bucket and key only.
            text = f"local {op} {where}: {exc.strerror or type(exc).__name__}"
            if exc.errno in _TRANSIENT_ERRNOS:
                raise StorageUnavailable(text, retry_after=30) from None
            raise StorageError(text) from None

    def check_name(self, bucket: str, key: str | None = None, *,
                   prefix: str | None = None) -> None:
        """Raise InvalidObjectName unless the names are ones this store reads and writes."""
        names.check_bucket(bucket, local=True)
        if key is not None:
            names.check_key(key, local=True)
        if prefix is not None:
            names.check_prefix(prefix, local=True)

    def _lock(self, bucket: str, key: str) -> threading.Lock:
        return self._locks[hash((bucket, key)) % len(self._locks)]

    def _bucket_dir(self, bucket: str, *, must_exist: bool) -> Path:
        names.check_bucket(bucket, local=True)
        try:
            return _dirs(self._root, [bucket], create=False)
        except (FileNotFoundError, NotADirectoryError):
            if must_exist:
                raise StorageError(f"bucket {bucket!r} does not exist") from None
            return self._root / bucket

    def _dir_of(self, bucket: str, parts: list[str], *, create: bool = False) -> Path:
        """The checked folder that holds the key's file (no link on the way)."""
        return _dirs(self._bucket_dir(bucket, must_exist=True), parts[:-1], create=create)

    def _read_sidecar(self, bucket: str, parts: list[str]) -> dict[str, Any] | None:
        try:
            fd = _open_nofollow(_sidecar_path(self._root, bucket, parts))
            with open(fd, "rb") as fh:
                side = json.loads(fh.read())
        except (OSError, ValueError, StorageError):
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
                current = os.lstat(path)
                if not stat.S_ISREG(current.st_mode):  # links and folders are not objects
                    return None
                side = self._read_sidecar(bucket, parts)
                version = st or current
                if _same_version(side, version):
                    return self._info(bucket, key, version, side)  # type: ignore[arg-type]
                if data is not None:
                    etag = hashlib.md5(data, usedforsecurity=False).hexdigest()
                else:
                    with open(_open_nofollow(path), "rb") as fh:
                        version = os.fstat(fh.fileno())
                        etag = hashlib.file_digest(fh, "md5").hexdigest()
                side = _version(version) | {
                    "etag": etag, "metadata": {},
                    "content_type": mimetypes.guess_type(key)[0] or "application/octet-stream"}
                if _same_version(side, os.lstat(path)):  # never cache a replaced version
                    try:
                        _write_atomic(_sidecar_path(self._root, bucket, parts, create=True),
                                      json.dumps(side).encode())
                    except OSError:
                        pass  # only a cache (e.g. the disk is full): rebuilt on a later read
            except (FileNotFoundError, NotADirectoryError, _LinkRefused):
                return None
            return self._info(bucket, key, version, side)

    def _get_sync(self, bucket: str, key: str, max_bytes: int | None,
                  if_match: str | None = None) -> StoredObject:
        parts = _key_parts(key)
        try:
            path = self._dir_of(bucket, parts) / parts[-1]
            with open(_open_nofollow(path), "rb") as fh:
                st = os.fstat(fh.fileno())
                if not stat.S_ISREG(st.st_mode):
                    raise IsADirectoryError(errno.EISDIR, "is a folder")
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
        try:
            path = _dirs(self._bucket_dir(bucket, must_exist=True), parts[:-1], create=False)
        except (StorageError, FileNotFoundError, NotADirectoryError):
            return None  # no such bucket or folder (a link on the way is not an object either)
        return self._describe(bucket, key, parts, path / parts[-1])

    def _put_sync(self, bucket: str, key: str, data: bytes, content_type: str,
                  metadata: dict[str, str]) -> ObjectInfo:
        parts = _key_parts(key)
        tmp: Path | None = None
        try:
            path = self._dir_of(bucket, parts, create=True) / parts[-1]
            tmp, st = _write_temp(path, data)
            side = _version(st) | {"etag": hashlib.md5(data, usedforsecurity=False).hexdigest(),
                                   "content_type": content_type, "metadata": metadata}
            with self._lock(bucket, key):
                # Sidecar first: a crash in between leaves a stale sidecar (ignored), never an
                # output file without its OUTPUT_MARKER.
                _write_atomic(_sidecar_path(self._root, bucket, parts, create=True),
                              json.dumps(side).encode())
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
                elif e.is_file(follow_symlinks=False) and _is_key(base + e.name):
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
        return await self._run("get", bucket, key, self._get_sync, bucket, key, max_bytes,
                               if_match)

    async def head(self, bucket: str, key: str) -> ObjectInfo | None:
        return await self._run("head", bucket, key, self._head_sync, bucket, key)

    async def put(self, bucket: str, key: str, data: bytes, *, content_type: str,
                  metadata: dict[str, str] | None = None) -> ObjectInfo:
        # Lower-cased like S3 user metadata, so both backends answer the same.
        meta = {k.lower(): v for k, v in (metadata or {}).items()} | {OUTPUT_MARKER: "1"}
        return await self._run("put", bucket, key, self._put_sync, bucket, key, bytes(data),
                               content_type, meta)

    async def list(self, bucket: str, prefix: str = "", *, page_size: int = 1000,
                   start_after: str = "") -> AsyncIterator[list[ObjectInfo]]:
        """Pages in key order; metadata comes from the sidecars (cheap here, unlike COS)."""
        names.check_prefix(prefix, local=True)
        walker = await self._run("list", bucket, prefix, self._walk, bucket, prefix, start_after)
        while page := await self._run("list", bucket, prefix, self._next_page, walker, bucket,
                                      max(1, page_size)):
            yield page

    async def presign_get(self, bucket: str, key: str, expires_in: int) -> str:
        self.check_name(bucket, key)
        expires_at = int(self._clock()) + int(expires_in)
        return download_url(self._public_url, self._signing_key, bucket, key, expires_at)

    async def ensure_bucket(self, bucket: str) -> None:
        names.check_bucket(bucket, local=True)

        def make() -> None:
            self._root.mkdir(parents=True, exist_ok=True)  # the data folder may be a link
            _dirs(self._root, [bucket], create=True)

        await self._run("create bucket", bucket, "", make)  # OSError mapped

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
