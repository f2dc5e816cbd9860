"""Wake-up hints shared by the ledger backends: futures parked by `wait_for_work`, by the kind
of work they wait for (a new job wakes the job worker, not the callback sender)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Literal

#: What an idle service waits for: due jobs (the worker), deliveries (the sender), batches to
#: list (the lister). A change wakes only those its new work concerns.
Work = Literal["jobs", "deliveries", "listings"]
EVERY: tuple[Work, ...] = ("jobs", "deliveries", "listings")


class Waiters:
    """Futures parked per kind of work; `wake` resolves those of the kinds named, from any
    thread or event loop."""

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}

    def park(self, timeout: float, work: Work) -> asyncio.Future[None]:
        """A future resolved on the next `wake` of `work`, or after `timeout` seconds. It is
        parked before this returns, so a caller that asks before it looks for work misses no
        wake-up in between (they are edge-triggered); cancel it when no longer needed."""
        # Created on the caller's running loop: the ledger may be built outside any loop.
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.setdefault(work, set()).add(waiter)
        timer = loop.call_later(timeout, _wake, waiter)

        def gone(waiter: asyncio.Future[None]) -> None:
            timer.cancel()
            self._waiters.get(work, set()).discard(waiter)

        waiter.add_done_callback(gone)
        return waiter

    def wake(self, work: Iterable[str]) -> None:
        """Resolve every waiter parked for one of the kinds of `work`, on its own loop."""
        for kind in work:
            for waiter in self._waiters.pop(kind, ()):
                waiter.get_loop().call_soon_threadsafe(_wake, waiter)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
