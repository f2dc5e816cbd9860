"""Wake-up hints shared by the ledger backends: futures parked in `wait_for_work`, by the kind
of work they wait for (a new job wakes the job worker, not the callback sender)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


class Waiters:
    """Futures parked in `wait` per kind of work; `wake` resolves those of the kinds named,
    from any thread or event loop."""

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}

    async def wait(self, timeout: float, work: str) -> None:
        """Return on the next `wake` of `work`, or after `timeout` seconds."""
        # Created here, on the caller's running loop: the ledger may be built outside any loop.
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(work, set()).add(waiter)
        try:
            await asyncio.wait((waiter,), timeout=timeout)
        finally:
            self._waiters.get(work, set()).discard(waiter)
            waiter.cancel()

    def wake(self, work: Iterable[str]) -> None:
        """Resolve every waiter parked for one of the kinds of `work`, on its own loop."""
        for kind in work:
            for waiter in self._waiters.pop(kind, ()):
                waiter.get_loop().call_soon_threadsafe(_wake, waiter)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
