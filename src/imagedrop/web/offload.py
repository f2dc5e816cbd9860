"""CPU-bound request work (JSON, base64, image headers): inline when small, pooled when large."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from imagedrop.web import keys

T = TypeVar("T")

#: Work on a body this large goes to the thread pool (a 70 MB body costs ~100 ms of JSON parsing);
#: smaller ones are done in place, where a thread hop would cost more than the work.
OFFLOAD_BYTES = 1024 * 1024


async def run_cpu(request: web.Request, size: int, fn: Callable[..., T], *args: Any) -> T:
    """Run CPU-bound `fn` off the loop when the input is large, inline when it is small."""
    if size < OFFLOAD_BYTES:
        return fn(*args)
    return await asyncio.get_running_loop().run_in_executor(
        request.app[keys.EXECUTOR], lambda: fn(*args))
