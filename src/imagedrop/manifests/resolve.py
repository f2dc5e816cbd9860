"""Find the manifest that governs an object: the nearest ancestor folder's, cached by ETag.

All I/O goes through the ObjectStore Protocol. A folder's answer is trusted for `ttl` seconds,
then revalidated with HEADs; the manifest is read and parsed again only when its ETag changes.
"""

from __future__ import annotations

import asyncio
import posixpath
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from imagedrop.errors import NotFound
from imagedrop.manifests.parse import MAX_MANIFEST_BYTES, parse_manifest
from imagedrop.manifests.problems import ManifestError, ManifestProblem
from imagedrop.manifests.schema import MANIFEST_NAMES, Manifest
from imagedrop.storage import ObjectInfo, ObjectStore

_Folder = tuple[str, str]  # (bucket, folder)


@dataclass(frozen=True, slots=True)
class Resolved:
    """The manifest governing a key, or the error that makes the nearest manifest unusable."""

    manifest: Manifest | None  # None exactly when `error` is set
    folder: str  # the manifest's folder: "" (bucket root) or a prefix ending in "/"
    source_key: str
    etag: str
    bucket: str
    error: ManifestError | None = None

    @property
    def ok(self) -> bool:
        return self.manifest is not None

    @property
    def output_prefixes(self) -> list[tuple[str, str]]:
        """(bucket, prefix) pairs this manifest writes under (none when it is broken)."""
        return self.manifest.output_prefixes(self.bucket, self.folder) if self.manifest else []

    def relative(self, key: str) -> str:
        """`key` relative to the manifest's folder (what `Manifest.matches` takes)."""
        return key[len(self.folder):]


@dataclass(slots=True)
class _Entry:
    checked_at: float
    resolved: Resolved | None  # None: no manifest in this folder


def folders_above(key: str) -> list[str]:
    """The folders that may govern `key`, nearest first: 'a/b/c.jpg' → ['a/b/', 'a/', '']."""
    parts = key.split("/")[:-1]
    return [("/".join(parts[:i]) + "/") for i in range(len(parts), 0, -1)] + [""]


class ManifestResolver:
    """Nearest-manifest lookups for one store, with a bounded LRU cache per (bucket, folder)."""

    def __init__(self, store: ObjectStore, *, clock: Callable[[], float] = time.time,
                 ttl: float = 30.0, max_folders: int = 10_000) -> None:
        self._store = store
        self._clock = clock
        self._ttl = ttl
        self._max = max_folders
        self._cache: OrderedDict[_Folder, _Entry] = OrderedDict()
        self._inflight: dict[_Folder, asyncio.Future[Resolved | None]] = {}
        # Output locations of every cached manifest, so an output in another bucket is known too.
        self._outputs: dict[tuple[str, str], set[_Folder]] = {}
        self._epoch = 0  # bumped by invalidate(): refreshes begun before it are not cached

    async def resolve(self, bucket: str, key: str) -> Resolved | None:
        """The nearest manifest above `key`, a Resolved carrying its error when it is broken
        (never a fallback to a parent's), or None when no folder on the path has one.

        Raises StorageUnavailable/StorageError when the store fails; a missing object is no error.
        """
        for folder in folders_above(key):
            found = await self._folder(bucket, folder)
            if found is not None:
                return found
        return None

    async def is_output(self, bucket: str, key: str) -> bool:
        """True when `key` lies under an output location of a manifest on its path, or of any
        manifest this resolver has seen (outputs may go to another bucket)."""
        if self._under_known_output(bucket, key):
            return True
        for folder in folders_above(key):
            found = await self._folder(bucket, folder)
            if found is not None and any(ob == bucket and key.startswith(op)
                                         for ob, op in found.output_prefixes):
                return True
        return False

    def invalidate(self, bucket: str, key: str, etag: str | None = None) -> None:
        """Forget what is known about the folder of `key` (a manifest there was written or
        deleted); the next lookup reads the store again. With `etag`: only when the cached
        manifest is not that version (the sweep lists manifests every few seconds)."""
        folder = posixpath.dirname(key)
        where = (bucket, f"{folder}/" if folder else "")
        if etag:
            entry = self._cache.get(where)
            known = entry.resolved if entry is not None else None
            if known is not None and known.source_key == key and known.etag == etag:
                return
        self._epoch += 1
        self._drop(where)
        self._inflight.pop(where, None)

    # -- cache -------------------------------------------------------------------------------

    def _under_known_output(self, bucket: str, key: str) -> bool:
        return any(ob == bucket and key.startswith(op) for ob, op in self._outputs)

    async def _folder(self, bucket: str, folder: str) -> Resolved | None:
        where = (bucket, folder)
        entry = self._cache.get(where)
        if entry is not None and self._clock() - entry.checked_at < self._ttl:
            self._cache.move_to_end(where)
            return entry.resolved
        pending = self._inflight.get(where)
        if pending is None:  # one refresh per folder however many lookups wait for it
            pending = asyncio.ensure_future(self._refresh(where, entry))
            self._inflight[where] = pending
            pending.add_done_callback(lambda done: self._settled(where, done))
        return await asyncio.shield(pending)

    def _settled(self, where: _Folder, done: asyncio.Future[Resolved | None]) -> None:
        if self._inflight.get(where) is done:
            del self._inflight[where]
        if not done.cancelled():
            done.exception()  # retrieved: every waiter may have been cancelled meanwhile

    def _store_entry(self, where: _Folder, entry: _Entry) -> None:
        self._drop(where)
        self._cache[where] = entry
        if entry.resolved is not None:
            for location in entry.resolved.output_prefixes:
                self._outputs.setdefault(location, set()).add(where)
        while len(self._cache) > self._max:
            self._drop(next(iter(self._cache)))

    def _drop(self, where: _Folder) -> None:
        entry = self._cache.pop(where, None)
        if entry is None or entry.resolved is None:
            return
        for location in entry.resolved.output_prefixes:
            users = self._outputs.get(location)
            if users is not None:
                users.discard(where)
                if not users:
                    del self._outputs[location]

    # -- store -------------------------------------------------------------------------------

    async def _refresh(self, where: _Folder, entry: _Entry | None) -> Resolved | None:
        bucket, folder = where
        epoch, started = self._epoch, self._clock()
        current = entry.resolved if entry else None
        names = MANIFEST_NAMES
        if current is not None:  # the common case: one HEAD of the known manifest
            names = MANIFEST_NAMES[:MANIFEST_NAMES.index(posixpath.basename(current.source_key))
                                   + 1]
        info = await self._probe(bucket, folder, names)
        if info is None and len(names) < len(MANIFEST_NAMES):
            info = await self._probe(bucket, folder, MANIFEST_NAMES[len(names):])
        if info is None:
            resolved = None
        elif current is not None and (info.key, info.etag) == (current.source_key, current.etag):
            resolved = current
        else:
            resolved = await self._load(info)
        if epoch == self._epoch:
            self._store_entry(where, _Entry(started, resolved))
        return resolved

    async def _probe(self, bucket: str, folder: str,
                     names: tuple[str, ...]) -> ObjectInfo | None:
        """The first manifest name present in the folder, in order of precedence."""
        heads = await asyncio.gather(*(self._store.head(bucket, folder + n) for n in names),
                                     return_exceptions=True)
        found: list[ObjectInfo] = []
        for head in heads:
            if isinstance(head, BaseException):
                raise head
            if head is not None:
                found.append(head)
        return found[0] if found else None

    async def _load(self, info: ObjectInfo) -> Resolved | None:
        bucket, key = info.bucket, info.key
        folder = key[: len(key) - len(posixpath.basename(key))]
        source = f"{bucket}/{key}"

        def broken(problems: list[ManifestProblem], etag: str) -> Resolved:
            return Resolved(None, folder, key, etag, bucket, ManifestError(problems))

        if info.size > MAX_MANIFEST_BYTES:  # don't even fetch it
            return broken([ManifestProblem(source, "(file)", f"{info.size} bytes; a manifest "
                                           f"may be at most {MAX_MANIFEST_BYTES}")], info.etag)
        try:
            stored = await self._store.get(bucket, key)
        except NotFound:
            return None  # deleted between HEAD and GET
        etag = stored.info.etag or info.etag
        fmt: Literal["yaml", "json"] = "json" if key.endswith(".json") else "yaml"
        try:
            manifest = parse_manifest(stored.data, fmt=fmt, source=source)
        except ManifestError as exc:
            return broken(exc.problems, etag)
        if located := manifest.location_problems(bucket, folder):
            return broken([ManifestProblem(source, f, r) for f, r in located], etag)
        return Resolved(manifest, folder, key, etag, bucket)


__all__ = ["MANIFEST_NAMES", "ManifestResolver", "Resolved", "folders_above"]
