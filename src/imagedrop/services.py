"""The background services one process runs (reaper, lister, sweep, housekeeper, worker,
deliverer): one small start/stop interface, so the runtime starts and stops them alike."""

from __future__ import annotations

from typing import Protocol


class Service(Protocol):
    """Runs until stopped; `stop` returns once `run` has wound down (work drained or handed
    back), so services can be stopped in order."""

    @property
    def name(self) -> str: ...

    async def run(self) -> None: ...

    async def stop(self) -> None: ...
