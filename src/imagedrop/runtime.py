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
from urllib.parse import urlsplit

import aiohttp
import structlog

from imagedrop import imaging
from imagedrop.config import CallbackSettings, Settings
from imagedrop.delivery.policy import make_connector, rewrite_targets
from imagedrop.delivery.sender import Deliverer
from imagedrop.drops import DropPlanner
from imagedrop.editor import Editor
from imagedrop.healing import Healer
from imagedrop.housekeeping import Housekeeper
from imagedrop.ledger import Ledger, open_ledger
from imagedrop.listing import Lister
from imagedrop.liveness import Reaper
from imagedrop.manifests import ManifestResolver
from imagedrop.metrics import Metrics
from imagedrop.pipeline import Pipeline
from imagedrop.providers import ImageProvider, open_provider
from imagedrop.providers.local import LocalProvider
from imagedrop.services import Service
from imagedrop.storage import ObjectStore, open_storage
from imagedrop.sweep import Sweeper
from imagedrop.tracing import Tracing
from imagedrop.worker import Worker

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
    planner: DropPlanner | None = None
    healer: Healer | None = None
    metrics: Metrics = field(default_factory=Metrics)
    tracing: Tracing = field(default_factory=Tracing)
    session: aiohttp.ClientSession | None = None
    deliverer: Deliverer | None = None  # while the background services run
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)


def make_owner() -> str:
    """A lease owner id unique to this process run."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _signing_key(settings: Settings) -> bytes:
    """The key for local download links: configured, or made once and kept in the data folder.

    Processes starting together agree on one key: each writes its own temp file (0600 from
    its creation) and links it into place only if no key is there yet, then reads the winner.
    """
    if settings.url_signing_key:
        return settings.url_signing_key.encode()
    path = Path(settings.storage.data_dir) / ".imagedrop-url-key"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        tmp = path.with_name(f"{path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)  # atomic, and refuses to replace a key already there
            except FileExistsError:
                pass  # another process won: its key is the one everybody uses
            except OSError:  # a filesystem without hard links: the race narrows, not closes
                if not path.exists():
                    os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return path.read_text().strip().encode()


@contextlib.asynccontextmanager
async def open_runtime(
    settings: Settings, *, public_url: str, ledger: Ledger | None = None,
    storage: ObjectStore | None = None, provider: ImageProvider | None = None,
    tracing: Tracing | None = None,
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
        # The ledger carries the edit rate and provider pauses every replica shares.
        metrics = Metrics()
        if tracing is None:
            tracing = Tracing(settings.server.tracing)
        stack.callback(tracing.shutdown)
        editor = Editor(provider, local, billing_pause=settings.provider.billing_pause,
                        ledger=ledger, edits_per_minute=settings.provider.edits_per_minute,
                        metrics=metrics, prices=settings.spend.price_list(),
                        spend=settings.spend)
        pipeline = Pipeline(
            ledger=ledger, storage=storage, editor=editor, imaging_settings=settings.imaging,
            worker_settings=settings.worker, presign_expires=settings.storage.presign_expires,
            executor=executor, metrics=metrics, tracing=tracing,
        )
        log.info("imagedrop_runtime", storage=storage.name,
                 ledger=settings.ledger.database_url.split(":", 1)[0], provider=provider.name,
                 model=settings.provider.model if provider.name == "openai" else "local-pillow",
                 concurrency=settings.worker.concurrency)
        await asyncio.get_running_loop().run_in_executor(executor, imaging.load_plugins)
        if provider.name == "local":
            log.warning("local_provider_in_use",
                        note="no OPENAI_API_KEY: images get a local Pillow edit, not an AI edit")
        resolver = ManifestResolver(storage, ttl=settings.drops.manifest_ttl)
        planner = DropPlanner(resolver, settings.provider,
                              max_attempts=settings.worker.max_attempts,
                              max_settle=settings.drops.max_settle, outputs=root_outputs(settings))
        yield Runtime(settings=settings, ledger=ledger, storage=storage, editor=editor,
                      pipeline=pipeline, executor=executor, signing_key=signing_key,
                      owner=make_owner(), planner=planner, healer=Healer(planner, ledger),
                      metrics=metrics, tracing=tracing)


def ops_host(callbacks: CallbackSettings) -> frozenset[str]:
    """The ops webhook's host: configured by the operator, so trusted like a rewrite target."""
    host = urlsplit(callbacks.ops_webhook).hostname if callbacks.ops_webhook else None
    return frozenset({host.lower()}) if host else frozenset()


def root_outputs(settings: Settings) -> list[tuple[str, str]]:
    """Where the WXO endpoints write (bucket, prefix): never taken as input by folder batches."""
    st = settings.storage
    return [(st.resolved_output_bucket, st.output_prefix)] if st.output_prefix else []


async def start_background(rt: Runtime) -> None:
    """Start the folder lister, the sweep, the housekeeper, the job worker and the sender."""
    s = rt.settings
    assert rt.planner is not None
    # From here on this process holds leases: its liveness lock tells others it is alive.
    await rt.ledger.register_owner(rt.owner)
    # Deliveries connect only to addresses the callback policy checked (no DNS rebinding).
    rt.session = aiohttp.ClientSession(connector=make_connector(
        allow_private=s.callbacks.allow_private,
        trusted_hosts=rewrite_targets(s.callbacks.rewrites) | ops_host(s.callbacks),
        limit=s.callbacks.concurrency))
    worker = Worker(rt.ledger, rt.pipeline, s.worker, owner=rt.owner)
    lister = Lister(rt.ledger, rt.storage, rt.pipeline, owner=rt.owner,
                    lease_seconds=s.worker.lease_seconds, poll_interval=s.worker.poll_interval,
                    max_attempts=s.worker.max_attempts, outputs=root_outputs(s),
                    planners={"trigger": rt.planner.plan_trigger_page})
    housekeeper = Housekeeper(rt.ledger, rt.pipeline.batches, interval=s.worker.poll_interval)
    deliverer = Deliverer(rt.ledger, rt.session, s.callbacks, owner=rt.owner, secrets=s.secrets,
                          poll_interval=s.worker.poll_interval, metrics=rt.metrics,
                          tracing=rt.tracing)
    rt.deliverer = deliverer
    reaper = Reaper(rt.ledger, rt.owner, interval=s.worker.reap_interval)
    try:  # before the worker's first claim: a predecessor's jobs come first, in claim order
        await reaper.tick()
    except Exception:
        log.warning("reaper_failed", exc_info=True)
    services: list[Service] = [reaper, lister]
    interval = s.storage.sweep_interval(s.drops)
    if interval > 0:
        buckets = s.drops.sweep_buckets or (s.storage.resolved_input_bucket,)
        services.append(Sweeper(rt.storage, rt.planner, rt.ledger, buckets=buckets,
                                interval=interval, owner=rt.owner, healer=rt.healer))
    services.append(housekeeper)
    if s.worker.enabled:
        services.append(worker)
    services.append(deliverer)
    rt.services = services
    for service in services:
        rt.tasks.append(asyncio.create_task(service.run(), name=f"imagedrop-{service.name}"))


async def stop_background(rt: Runtime) -> None:
    """Stop claiming, drain in-flight work, deliver what is due, close the HTTP session."""
    for service in rt.services:  # producers first, then worker (drains), then deliverer
        await service.stop()
    for task in rt.tasks:
        task.cancel()
    for task, result in zip(rt.tasks, await asyncio.gather(*rt.tasks, return_exceptions=True),
                            strict=True):
        if isinstance(result, Exception):
            log.error("background_task_failed", task=task.get_name(), exc_info=result)
    rt.tasks.clear()
    if rt.session is not None:
        await rt.session.close()
    try:  # everything is handed back: nothing of ours to take over
        await rt.ledger.unregister_owner(rt.owner)
    except Exception:  # stopping anyway: the reaper of another process cleans up
        log.warning("owner_not_unregistered", exc_info=True)
