"""Runs a provider on its own event loop in a dedicated thread.

The OpenAI SDK spends several milliseconds of Python per call building multipart bodies and
parsing responses; with 64 edits finishing together that is a burst the API's loop would have to
sit through. Moving the provider's coroutines to another loop keeps `/health` and the 202s quick.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import structlog

from imagedrop.providers import EditResult, EditSpec, ImageProvider

T = TypeVar("T")

log = structlog.get_logger(__name__)


class LoopThreadProvider:
    """An ImageProvider that runs `factory()`'s provider on a private loop thread."""

    def __init__(self, factory: Callable[[], ImageProvider], *, name: str,
                 join_timeout: float = 10.0) -> None:
        self.name = name
        self._join_timeout = join_timeout
        # Constructing a client binds no loop; its connections are opened (and closed) only on
        # the private loop, by the calls below. Made first: a refusal leaves no thread behind.
        self._inner = factory()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever,
                                        name=f"imagedrop-{name}-loop", daemon=True)
        self._thread.start()

    def _call(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def edit(self, image: bytes, mime_type: str, filename: str, spec: EditSpec
                   ) -> EditResult:
        """Edit on the provider's loop; cancelling this cancels the call there."""
        return await asyncio.wrap_future(
            self._call(self._inner.edit(image, mime_type, filename, spec)))

    async def close(self) -> None:
        """Close the provider on its loop, then stop the loop and its thread."""
        try:
            await asyncio.wrap_future(self._call(self._inner.close()))
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            await asyncio.to_thread(self._thread.join, self._join_timeout)
            if self._thread.is_alive():
                # Closing a running loop raises; the daemon thread ends with the process.
                log.warning("provider.loop_thread_still_running", provider=self.name,
                            waited_seconds=self._join_timeout)
            else:
                self._loop.close()
