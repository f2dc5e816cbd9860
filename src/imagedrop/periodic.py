"""A background duty that runs every few seconds until stopped, surviving its own errors."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

log = structlog.get_logger(__name__)


class Periodic:
    """Calls `tick()` every `interval` seconds until `stop()`; a failing tick is logged and the
    next one tries again. Subclasses implement `tick`."""

    name = "periodic"

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stopping = asyncio.Event()

    async def tick(self) -> object:
        raise NotImplementedError

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.tick()
            except Exception:
                log.exception(f"{self.name}_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval)

    async def stop(self) -> None:
        self._stopping.set()
