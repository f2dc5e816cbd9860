"""Object storage: one Protocol, two backends (IBM COS via ibm-cos-sdk, and a local folder).

Backends are chosen by `open_storage(settings)` and imported lazily. Every object imagedrop
writes carries the metadata marker `OUTPUT_MARKER`, so outputs never start new work.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from imagedrop.config import StorageSettings
from imagedrop.errors import ImageRejected

#: User-metadata key set on every object imagedrop writes (S3: x-amz-meta-imagedrop-output).
OUTPUT_MARKER = "imagedrop-output"


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a store knows about one object version."""

    bucket: str
    key: str
    etag: str  # normalised: no surrounding quotes
    size: int
    last_modified: float | None = None  # unix seconds
    content_type: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def is_output(self) -> bool:
        """True when imagedrop wrote this object."""
        return OUTPUT_MARKER in self.metadata


@dataclass(frozen=True, slots=True)
class StoredObject:
    """An object's bytes and what the store said about it."""

    data: bytes
    info: ObjectInfo


@runtime_checkable
class ObjectStore(Protocol):
    """What imagedrop needs from an object store. All methods are non-blocking."""

    name: str  # "cos" or "local"

    async def get(self, bucket: str, key: str, *, max_bytes: int | None = None,
                  if_match: str | None = None) -> StoredObject:
        """Read an object. Raises NotFound, StorageUnavailable or StorageError.

        An object larger than `max_bytes` raises ImageRejected (413) before its body is read.
        With `if_match` (an ETag, quoted or not), only that version is read: VersionSuperseded
        when the object now has another ETag.
        """

    async def head(self, bucket: str, key: str) -> ObjectInfo | None:
        """Describe an object, or None when it does not exist."""

    async def put(
        self,
        bucket: str,
        key: str,
        data: bytes,
        *,
        content_type: str,
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        """Write an object atomically; adds the OUTPUT_MARKER to its metadata."""

    def list(self, bucket: str, prefix: str = "", *, page_size: int = 1000,
             start_after: str = "") -> AsyncIterator[list[ObjectInfo]]:
        """Yield pages of objects under prefix in key order, after `start_after` (resumable)."""

    async def presign_get(self, bucket: str, key: str, expires_in: int) -> str:
        """A URL anyone can GET the object from until it expires."""

    async def ensure_bucket(self, bucket: str) -> None:
        """Create the bucket if it does not exist (local mode, tests)."""

    def check_name(self, bucket: str, key: str | None = None, *,
                   prefix: str | None = None) -> None:
        """Raise `names.InvalidObjectName` (400) unless this store accepts the names; every
        operation checks its own names too, so a caller can check them at request time."""

    async def close(self) -> None:
        """Release connections and threads."""


def too_large(bucket: str, key: str, size: int, max_bytes: int | None) -> ImageRejected | None:
    """The error for an object over `get`'s `max_bytes` limit, or None when it fits."""
    if max_bytes is None or size <= max_bytes:
        return None
    return ImageRejected(f"object {bucket}/{key} is {size} bytes, over the {max_bytes}-byte limit",
                         status=413)


def normalise_etag(etag: str | None) -> str:
    """ETags arrive quoted, unquoted or weak (W/"…"); compare them without decoration."""
    if not etag:
        return ""
    etag = etag.strip()
    if etag.startswith("W/"):
        etag = etag[2:]
    return etag.strip('"')


def open_storage(settings: StorageSettings, *, public_url: str, signing_key: bytes) -> ObjectStore:
    """Pick the backend from settings: COS when COS_ENDPOINT is set, else the local folder."""
    if settings.is_cos:
        from imagedrop.storage.cos import CosStore

        return CosStore(settings)
    from imagedrop.storage.local import LocalStore

    return LocalStore(settings.data_dir, public_url=public_url, signing_key=signing_key)


__all__ = [
    "OUTPUT_MARKER", "ObjectInfo", "ObjectStore", "StoredObject", "normalise_etag", "open_storage",
    "too_large",
]
