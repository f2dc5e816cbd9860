"""Group commit for many small writes: concurrent calls that arrive while one transaction is
running are written together in the next one, so a burst of notifications costs a few commits
(each a disk flush) instead of one per request. Each caller still gets only its own results."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupWriter(Generic[T, R]):
    """Runs `write(items)` for the items of every call waiting, one group at a time."""

    def __init__(self, write: Callable[[list[T]], Awaitable[list[R]]], *, max_items: int = 500
                 ) -> None:
        self._write = write
        self._max = max_items
        self._pending: list[tuple[list[T], asyncio.Future[list[R]]]] = []
        self._running: asyncio.Task[None] | None = None

    async def submit(self, items: list[T]) -> list[R]:
        """The results for `items`, in order, once the group holding them is committed."""
        future: asyncio.Future[list[R]] = asyncio.get_running_loop().create_future()
        self._pending.append((items, future))
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._pending:
            group: list[tuple[list[T], asyncio.Future[list[R]]]] = []
            size = 0
            while self._pending and (not group or size + len(self._pending[0][0]) <= self._max):
                items, future = self._pending.pop(0)
                group.append((items, future))
                size += len(items)
            try:
                results = await self._write([item for items, _ in group for item in items])
            except asyncio.CancelledError:
                for _, future in group:
                    future.cancel()
                raise
            except Exception as exc:
                if len(group) == 1:
                    if not group[0][1].done():
                        group[0][1].set_exception(exc)
                    continue
                # One caller's bad item must not fail its neighbours: write each on its own.
                for items, future in group:
                    await self._alone(items, future)
                continue
            start = 0
            for items, future in group:
                if not future.done():
                    future.set_result(results[start:start + len(items)])
                start += len(items)

    async def _alone(self, items: list[T], future: asyncio.Future[list[R]]) -> None:
        try:
            result = await self._write(items)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(result)

