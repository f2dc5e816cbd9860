"""IBM Cloud Object Storage (or any S3-compatible store) through ibm-cos-sdk.

The SDK is synchronous: every call runs in a bounded thread pool owned by the store, and its
exceptions are translated once, in `_map_errors`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from typing import Any, TypeVar

from imagedrop.config import StorageSettings
from imagedrop.errors import (
    MissingDependencyError,
    NotFound,
    StorageError,
    StorageUnavailable,
    VersionSuperseded,
)
from imagedrop.storage import (
    OUTPUT_MARKER,
    ObjectInfo,
    StoredObject,
    names,
    normalise_etag,
    too_large,
)

try:
    import ibm_botocore.exceptions as sdk
    import requests  # the SDK's IAM token manager calls IAM with requests directly
    from ibm_boto3.session import Session
    from ibm_botocore.client import Config
    from ibm_botocore.credentials import DefaultTokenManager
except ImportError as exc:  # pragma: no cover - ibm-cos-sdk is a core dependency
    raise MissingDependencyError("COS storage needs ibm-cos-sdk: pip install ibm-cos-sdk") from exc

_T = TypeVar("_T")

_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
_TRANSIENT = {
    "SlowDown", "Throttling", "ThrottlingException", "TooManyRequests", "RequestLimitExceeded",
    "RequestTimeout", "RequestTimeoutException", "ServiceUnavailable", "InternalError",
    "503", "500", "502", "504",
}


@contextmanager
def _map_errors(op: str, bucket: str, key: str = "") -> Iterator[None]:
    """Translate SDK exceptions into imagedrop errors; texts name the object, never secrets."""
    where = f"{bucket}/{key}" if key else bucket
    try:
        yield
    except sdk.ClientError as exc:
        err = exc.response.get("Error") or {}
        code = str(err.get("Code") or "")
        status = int((exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
        text = f"COS {op} {where}: {code or 'error'} (HTTP {status or '?'})"
        if code in _NOT_FOUND:
            raise NotFound(text) from exc
        if code == "PreconditionFailed" or status == 412:  # only a conditional GET asks
            raise VersionSuperseded(f"COS {op} {where}: the object has been replaced by a "
                                    "newer version") from exc
        if code in _TRANSIENT or status >= 500 or status == 429:
            raise StorageUnavailable(text) from exc
        raise StorageError(text) from exc
    except (sdk.ConnectionError, sdk.HTTPClientError, sdk.IncompleteReadError) as exc:
        # Connection refused/reset, DNS, connect/read timeouts, a body cut short.
        raise StorageUnavailable(f"COS {op} {where}: cannot reach the endpoint "
                                 f"({type(exc).__name__})") from exc
    except sdk.CredentialRetrievalError as exc:
        # The IAM token service answered an error; its text carries only the HTTP code we need.
        match = re.search(r"HttpCode\((\d+)\)", str(exc))
        status = int(match.group(1)) if match else 0
        text = f"COS {op} {where}: IAM token request failed (HTTP {status or '?'})"
        if 400 <= status < 500 and status not in (408, 429):
            raise StorageError(text + ": check COS_API_KEY and COS_INSTANCE_CRN") from exc
        raise StorageUnavailable(text) from exc
    except requests.RequestException as exc:
        raise StorageUnavailable(f"COS {op} {where}: cannot reach the IAM token service "
                                 f"({type(exc).__name__})") from exc
    except (sdk.NoCredentialsError, sdk.PartialCredentialsError) as exc:
        raise StorageError(f"COS {op} {where}: no usable credentials configured") from exc
    except sdk.BotoCoreError as exc:
        raise StorageError(f"COS {op} {where}: {type(exc).__name__}") from exc


def _make_client(settings: StorageSettings, max_attempts: int) -> tuple[Any, Any]:
    """One S3 client: HMAC keys sign with SigV4; an IAM API key sends bearer tokens ("oauth").

    Returns (client, token_manager); we own the IAM token manager so close() can stop the
    background refresh thread it starts on first use.
    """
    hmac_keys = bool(settings.cos_access_key_id and settings.cos_secret_access_key)
    config = Config(
        signature_version="s3v4" if hmac_keys else "oauth",
        max_pool_connections=settings.max_pool_connections,
        # A stalled store must not hold a job (or a request) forever.
        connect_timeout=min(10.0, settings.timeout), read_timeout=settings.timeout,
        retries={"total_max_attempts": max_attempts, "mode": "standard"},
    )
    token_manager = None
    if hmac_keys:
        credentials: dict[str, Any] = {"aws_access_key_id": settings.cos_access_key_id,
                                       "aws_secret_access_key": settings.cos_secret_access_key}
    else:
        token_manager = DefaultTokenManager(api_key_id=settings.cos_api_key,
                                            service_instance_id=settings.cos_instance_crn,
                                            auth_endpoint=settings.cos_auth_endpoint)
        credentials = {"token_manager": token_manager,
                       "ibm_service_instance_id": settings.cos_instance_crn}
    # A private Session: the module-level default session would be a process-global.
    client = Session().client("s3", endpoint_url=settings.cos_endpoint,
                              region_name=settings.cos_region, config=config, **credentials)
    return client, token_manager


def _info(bucket: str, key: str, head: dict[str, Any]) -> ObjectInfo:
    """ObjectInfo from a head_object/get_object response."""
    modified = head.get("LastModified")
    return ObjectInfo(
        bucket=bucket, key=key, etag=normalise_etag(head.get("ETag")),
        size=int(head.get("ContentLength") or 0),
        last_modified=modified.timestamp() if modified else None,
        content_type=head.get("ContentType"),
        metadata={k.lower(): v for k, v in (head.get("Metadata") or {}).items()},
    )


class CosStore:
    """ObjectStore over IBM COS: one client, one bounded thread pool, errors mapped once."""

    name = "cos"

    def __init__(self, settings: StorageSettings, *, max_attempts: int = 3) -> None:
        """`max_attempts` bounds the SDK's own quick retries; durable retries are the ledger's."""
        self._settings = settings
        self._can_presign = bool(settings.cos_access_key_id and settings.cos_secret_access_key)
        self._client, self._token_manager = _make_client(settings, max_attempts)
        # No more threads than pooled connections: extra threads would only queue for one.
        self._executor = ThreadPoolExecutor(settings.max_pool_connections,
                                            thread_name_prefix="imagedrop-cos")
        self._closed = False

    def check_name(self, bucket: str, key: str | None = None, *,
                   prefix: str | None = None) -> None:
        """Raise InvalidObjectName unless the names are ones this store reads and writes."""
        names.check_bucket(bucket, local=False)
        if key is not None:
            names.check_key(key, local=False)
        if prefix is not None:
            names.check_prefix(prefix, local=False)

    async def _run(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        if self._closed:
            raise StorageError("COS store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(fn, *args, **kwargs))

    def _get_sync(self, bucket: str, key: str, max_bytes: int | None,
                  if_match: str | None) -> StoredObject:
        # The store compares the version itself (412 otherwise): no window between a HEAD
        # and the GET in which another writer could replace the object.
        conditions = {"IfMatch": f'"{normalise_etag(if_match)}"'} if if_match else {}
        resp = self._client.get_object(Bucket=bucket, Key=key, **conditions)
        with resp["Body"] as body:  # read inside the thread: the body is a blocking stream
            # Checked before reading: an oversized object must never be held in memory.
            # Leaving the block closes the unread body (its connection is dropped, not reused).
            if error := too_large(bucket, key, int(resp.get("ContentLength") or 0), max_bytes):
                raise error
            data = body.read()
        return StoredObject(data=data, info=_info(bucket, key, resp))

    async def get(self, bucket: str, key: str, *, max_bytes: int | None = None,
                  if_match: str | None = None) -> StoredObject:
        self.check_name(bucket, key)
        with _map_errors("get", bucket, key):
            return await self._run(self._get_sync, bucket, key, max_bytes, if_match)

    async def head(self, bucket: str, key: str) -> ObjectInfo | None:
        self.check_name(bucket, key)
        try:
            with _map_errors("head", bucket, key):
                resp = await self._run(self._client.head_object, Bucket=bucket, Key=key)
        except NotFound:
            return None  # HEAD has no body, so a missing bucket also lands here
        return _info(bucket, key, resp)

    def _put_sync(self, bucket: str, key: str, data: bytes, content_type: str,
                  meta: dict[str, str]) -> dict[str, Any]:
        # Hashed here, in the pool: MD5 of a 20 MB image takes tens of ms of the event loop.
        digest = hashlib.md5(data, usedforsecurity=False).digest()
        answer: dict[str, Any] = self._client.put_object(
            Bucket=bucket, Key=key, Body=data, ContentType=content_type, Metadata=meta,
            # The store checks the body against this and refuses a corrupted upload.
            ContentMD5=base64.b64encode(digest).decode(),
        )
        return answer

    async def put(self, bucket: str, key: str, data: bytes, *, content_type: str,
                  metadata: dict[str, str] | None = None) -> ObjectInfo:
        self.check_name(bucket, key)
        meta = {k.lower(): v for k, v in (metadata or {}).items()} | {OUTPUT_MARKER: "1"}
        with _map_errors("put", bucket, key):
            resp = await self._run(self._put_sync, bucket, key, data, content_type, meta)
        return ObjectInfo(bucket=bucket, key=key, etag=normalise_etag(resp.get("ETag")),
                          size=len(data), content_type=content_type, metadata=meta)

    async def list(self, bucket: str, prefix: str = "", *, page_size: int = 1000,
                   start_after: str = "") -> AsyncIterator[list[ObjectInfo]]:
        """Pages straight from list_objects_v2, one request per page.

        Listing returns no user metadata or content type: `metadata` is `{}` and
        `content_type` None here; call `head` when they matter.
        """
        self.check_name(bucket, prefix=prefix)
        params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix,
                                  "MaxKeys": max(1, min(page_size, 1000))}
        if start_after:
            params["StartAfter"] = start_after
        while True:
            with _map_errors("list", bucket, prefix):
                resp = await self._run(self._client.list_objects_v2, **params)
            page = [
                ObjectInfo(bucket=bucket, key=item["Key"], etag=normalise_etag(item.get("ETag")),
                           size=int(item.get("Size") or 0),
                           last_modified=item["LastModified"].timestamp()
                           if item.get("LastModified") else None)
                for item in resp.get("Contents") or ()
            ]
            if page:
                yield page
            token = resp.get("NextContinuationToken")
            if not resp.get("IsTruncated") or not token:
                return
            params["ContinuationToken"] = token
            params.pop("StartAfter", None)  # the token already encodes where we are

    async def presign_get(self, bucket: str, key: str, expires_in: int) -> str:
        self.check_name(bucket, key)
        if not self._can_presign:
            raise StorageError(
                "presigned URLs need HMAC keys (COS_ACCESS_KEY_ID and COS_SECRET_ACCESS_KEY); "
                "an IAM API key alone cannot sign URLs"
            )
        with _map_errors("presign", bucket, key):
            return await self._run(
                self._client.generate_presigned_url, "get_object",
                Params={"Bucket": bucket, "Key": key}, ExpiresIn=int(expires_in),
            )

    async def ensure_bucket(self, bucket: str) -> None:
        self.check_name(bucket)
        try:
            with _map_errors("head bucket", bucket):
                await self._run(self._client.head_bucket, Bucket=bucket)
            return
        except NotFound:
            pass
        params: dict[str, Any] = {"Bucket": bucket}
        if self._settings.cos_region != "us-east-1":
            params["CreateBucketConfiguration"] = {
                "LocationConstraint": self._settings.cos_region}
        with _map_errors("create bucket", bucket):
            await self._run(self._create_bucket_sync, params)

    def _create_bucket_sync(self, params: dict[str, Any]) -> None:
        try:
            self._client.create_bucket(**params)
        except sdk.ClientError as exc:
            # Another caller created it between our head and create: that is success.
            if (exc.response.get("Error") or {}).get("Code") != "BucketAlreadyOwnedByYou":
                raise

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True

        def shutdown() -> None:
            self._executor.shutdown(wait=True)
            self._client.close()
            if self._token_manager is not None:
                self._token_manager.stop_refresh_thread()

        await asyncio.to_thread(shutdown)


__all__ = ["CosStore"]
