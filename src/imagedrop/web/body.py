"""Request bodies read whole into one buffer, refused as soon as they pass a limit."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web


async def read_capped(request: web.Request, limit: int,
                      too_large: Callable[[int], Exception]) -> bytes:
    """The body (chunked or compressed ones included, `limit` counting inflated bytes);
    `too_large(size)` is raised as soon as it passes `limit`. The chunks as they came are
    joined once: aiohttp's own `read` copies every byte twice, and a burst of photo uploads
    pays for each copy in memory touched for the first time."""
    # A compressed body's length says nothing of what it inflates to: only a plain one is
    # refused before it is read.
    declared = request.content_length or 0
    if declared > limit and "Content-Encoding" not in request.headers:
        raise too_large(declared)
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.readany():
        size += len(chunk)
        if size > limit:
            raise too_large(size)
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
