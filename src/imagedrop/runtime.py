"""The running service's parts, opened and closed together: ledger, storage, providers, workers.

`open_runtime` is an async context manager so the app factory (and the CLI's one-shot edit)
open every resource in one place and close it in reverse order, even after a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import structlog

from imagedrop.config import Settings
from imagedrop.delivery.sender import Deliverer
from imagedrop.editor import Editor
from imagedrop.ledger import Ledger, open_ledger
from imagedrop.listing import Lister
from imagedrop.pipeline import Pipeline
from imagedrop.providers import ImageProvider, open_provider
from imagedrop.providers.local import LocalProvider
from imagedrop.storage import ObjectStore, open_storage

log = structlog.get_logger(__name__)


@dataclass
class Runtime:
    """Everything a running imagedrop holds."""

    settings: Settings
    ledger: Ledger
    storage: ObjectStore
    editor: Editor
    pipeline: Pipeline
    executor: ThreadPoolExecutor
    signing_key: bytes
    owner: str
    session: aiohttp.ClientSession | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    services: list[object] = field(default_factory=list)


def make_owner() -> str:
    """A lease owner id unique to this process run."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _signing_key(settings: Settings) -> bytes:
    """The key for local download links: configured, or made once and kept in the data folder."""
    if settings.url_signing_key:
        return settings.url_signing_key.encode()
    path = Path(settings.storage.data_dir) / ".imagedrop-url-key"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        tmp.write_text(secrets.token_hex(32))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    return path.read_text().strip().encode()


@contextlib.asynccontextmanager
async def open_runtime(
    settings: Settings, *, public_url: str, ledger: Ledger | None = None,
    storage: ObjectStore | None = None, provider: ImageProvider | None = None,
) -> AsyncIterator[Runtime]:
    """Open every resource; injected ones are used as given and left open for their owner."""
    executor = ThreadPoolExecutor(max_workers=max(2, min(4, os.cpu_count() or 2)),
                                  thread_name_prefix="imagedrop-cpu")
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(executor.shutdown, wait=False, cancel_futures=True)
        if settings.storage.is_cos:  # COS presigns its own URLs; the key is only a fallback
            signing_key = (settings.url_signing_key or secrets.token_hex(32)).encode()
        else:
            signing_key = await asyncio.to_thread(_signing_key, settings)
        if ledger is None:
            ledger = open_ledger(settings.ledger.database_url)
            await ledger.open()
            stack.push_async_callback(ledger.close)
        if storage is None:
            storage = open_storage(settings.storage, public_url=public_url,
                                   signing_key=signing_key)
            stack.push_async_callback(storage.close)
            if not settings.storage.is_cos:
                for bucket in {settings.storage.resolved_input_bucket,
                               settings.storage.resolved_output_bucket}:
                    await storage.ensure_bucket(bucket)
        if provider is None:
            provider = open_provider(settings.provider)
            stack.push_async_callback(provider.close)
        local = provider if provider.name == "local" else LocalProvider(executor)
        editor = Editor(provider, local, billing_pause=settings.provider.billing_pause)
        pipeline = Pipeline(
            ledger=ledger, storage=storage, editor=editor, imaging_settings=settings.imaging,
            worker_settings=settings.worker, presign_expires=settings.storage.presign_expires,
            executor=executor,
        )
        log.info("imagedrop_runtime", storage=storage.name,
                 ledger=settings.ledger.database_url.split(":", 1)[0], provider=provider.name,
                 model=settings.provider.model if provider.name == "openai" else "local-pillow",
                 concurrency=settings.worker.concurrency)
        if provider.name == "local":
            log.warning("local_provider_in_use",
                        note="no OPENAI_API_KEY: images get a local Pillow edit, not an AI edit")
        yield Runtime(settings=settings, ledger=ledger, storage=storage, editor=editor,
                      pipeline=pipeline, executor=executor, signing_key=signing_key,
                      owner=make_owner())


async def start_background(rt: Runtime) -> None:
    """Start the job worker, the folder lister and the callback sender."""
    from imagedrop.worker import Worker

    s = rt.settings
    rt.session = aiohttp.ClientSession()
    worker = Worker(rt.ledger, rt.pipeline, s.worker, owner=rt.owner)
    lister = Lister(rt.ledger, rt.storage, rt.pipeline, owner=rt.owner,
                    lease_seconds=s.worker.lease_seconds, poll_interval=s.worker.poll_interval,
                    max_attempts=s.worker.max_attempts)
    deliverer = Deliverer(rt.ledger, rt.session, s.callbacks, owner=rt.owner, secrets=s.secrets,
                          poll_interval=s.worker.poll_interval)
    rt.services = [lister, worker, deliverer]
    for name, service in (("lister", lister), ("worker", worker), ("deliverer", deliverer)):
        rt.tasks.append(asyncio.create_task(service.run(), name=f"imagedrop-{name}"))


async def stop_background(rt: Runtime) -> None:
    """Stop claiming, drain in-flight work, deliver what is due, close the HTTP session."""
    for service in rt.services:  # lister first, then worker (drains), then deliverer
        await service.stop()  # type: ignore[attr-defined]
    for task in rt.tasks:
        task.cancel()
    await asyncio.gather(*rt.tasks, return_exceptions=True)
    rt.tasks.clear()
    if rt.session is not None:
        await rt.session.close()
