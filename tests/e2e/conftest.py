"""End-to-end harness: the whole service in-process on a free port, with real fakes around it."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from imagedrop.app import create_app
from imagedrop.config import Settings, load_settings
from imagedrop.web import keys

FAST = {
    # Short waits so retries and leases play out in a test's time, same code paths.
    "IMAGEDROP_POLL_INTERVAL": "0.1",
    "IMAGEDROP_RETRY_BASE": "0.05",
    "IMAGEDROP_RETRY_CAP": "2",
    "IMAGEDROP_LEASE_SECONDS": "10",
    "IMAGEDROP_CALLBACK_SCHEDULE": "0,0.1,0.2,0.4,0.8",
    "IMAGEDROP_ALLOW_PRIVATE_CALLBACKS": "1",
    "IMAGEDROP_ALLOW_PRIVATE_SUBSCRIBERS": "1",
    "IMAGEDROP_SHUTDOWN_GRACE": "5",
    "IMAGEDROP_LOG_JSON": "1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Service:
    """A running imagedrop and a client for it."""

    url: str
    app: web.Application
    settings: Settings
    session: aiohttp.ClientSession
    # Sent with every request of post/get (a test that wants them sets them, e.g. a key).
    headers: dict[str, str] = field(default_factory=dict)
    runner: web.AppRunner | None = None

    async def stop(self) -> None:
        """Shut this service down as a SIGTERM would (a restart test starts another)."""
        if self.runner is not None:
            runner, self.runner = self.runner, None
            await runner.cleanup()

    async def post(self, path: str, body: Any, *, callback: str | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        hdrs = {**self.headers, **(headers or {})}
        if callback is not None:
            hdrs["callbackUrl"] = callback
        async with self.session.post(self.url + path, json=body, headers=hdrs) as resp:
            return resp.status, await resp.json()

    async def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        kw["headers"] = {**self.headers, **kw.get("headers", {})}
        async with self.session.get(self.url + path, **kw) as resp:
            ctype = resp.content_type
            return resp.status, (await resp.json() if ctype == "application/json"
                                 else await resp.read())

    async def wait_job(self, job_id: str, *, state: str | tuple[str, ...] = ("completed", "failed"),
                       timeout: float = 30) -> dict[str, Any]:
        """Poll GET /jobs/{id} until the state is reached (deadline, not a fixed sleep)."""
        wanted = (state,) if isinstance(state, str) else state
        deadline = time.monotonic() + timeout
        while True:
            status, body = await self.get(f"/jobs/{job_id}")
            if status == 200 and body["state"] in wanted:
                return body
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} not {wanted} in {timeout}s: {body}")
            await asyncio.sleep(0.05)

    async def wait_delivered(self, job_id: str, *, timeout: float = 30) -> dict[str, Any]:
        """Poll GET /jobs/{id} until every callback delivery of the job is final."""
        deadline = time.monotonic() + timeout
        while True:
            status, body = await self.get(f"/jobs/{job_id}")
            if status == 200 and body["deliveries"] and all(
                    d["state"] != "pending" for d in body["deliveries"]):
                return body
            if time.monotonic() > deadline:
                raise AssertionError(f"deliveries of {job_id} not final in {timeout}s: {body}")
            await asyncio.sleep(0.05)

    @property
    def ledger(self):
        return self.app[keys.LEDGER]

    @property
    def storage(self):
        return self.app[keys.STORAGE]


@pytest.fixture(name="start_service")
async def _start_service(tmp_path) -> AsyncIterator[Callable[..., Awaitable[Service]]]:
    """A factory: `await start_service({...env...})` runs imagedrop until the test ends."""
    sessions: list[aiohttp.ClientSession] = []

    async def start(env: dict[str, str] | None = None, **app_kw: Any) -> Service:
        port = free_port()
        full = {"IMAGEDROP_DATA_DIR": str(tmp_path / "data"), **FAST, **(env or {})}
        settings = load_settings(full)
        url = f"http://127.0.0.1:{port}"
        app = create_app(settings, public_url=url, **app_kw)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", port).start()
        except BaseException:
            await runner.cleanup()
            raise
        session = aiohttp.ClientSession()
        sessions.append(session)
        service = Service(url=url, app=app, settings=settings, session=session, runner=runner)
        services.append(service)
        return service

    services: list[Service] = []
    yield start
    for session in sessions:
        await session.close()
    for service in reversed(services):
        await service.stop()
