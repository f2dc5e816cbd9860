"""Wake-up hints shared by the ledger backends: futures parked in `wait_for_work`."""

from __future__ import annotations

import asyncio


class Waiters:
    """Futures parked in `wait`; `wake` resolves them all, from any thread or event loop."""

    def __init__(self) -> None:
        self._waiters: set[asyncio.Future[None]] = set()

    async def wait(self, timeout: float) -> None:
        """Return on the next `wake`, or after `timeout` seconds."""
        # Created here, on the caller's running loop: the ledger may be built outside any loop.
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            await asyncio.wait((waiter,), timeout=timeout)
        finally:
            self._waiters.discard(waiter)
            waiter.cancel()

    def wake(self) -> None:
        """Resolve every parked waiter on its own loop."""
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            waiter.get_loop().call_soon_threadsafe(_wake, waiter)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
