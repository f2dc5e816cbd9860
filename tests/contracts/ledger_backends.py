"""The ledger backends the contract suite runs against, each with storage fresh per test.

To add PostgreSQL: a `PostgresBackend` whose `make()` builds a `PostgresLedger` on a throwaway
schema (created in `start`, set through `search_path`, dropped in `drop`), skipping when the
server is unreachable unless CI is set (then failing), and its name added to `BACKENDS`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from imagedrop.ledger import Ledger
from imagedrop.ledger.sqlite import SqliteLedger


class FakeClock:
    """A clock the test moves by hand, so leases expire without sleeping."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class LedgerBackend(Protocol):
    """Storage for one test; `make` may be called again to reopen the same storage."""

    name: str

    async def start(self) -> None:
        """Prepare empty storage."""
        ...

    def make(self) -> Ledger:
        """A new, unopened ledger over this test's storage."""
        ...

    async def drop(self) -> None:
        """Remove what the test stored."""
        ...


class SqliteBackend:
    """A SQLite file in the test's tmp_path."""

    name = "sqlite"

    def __init__(self, tmp_path: Path, clock: FakeClock) -> None:
        self.path = tmp_path / "state" / "ledger.db"  # a missing parent directory is created
        self.clock = clock

    async def start(self) -> None:
        """Nothing to prepare: the first open creates the file."""

    def make(self) -> Ledger:
        return SqliteLedger(self.path, clock=self.clock)

    async def drop(self) -> None:
        """tmp_path is removed by pytest."""


BACKENDS: dict[str, Callable[[Path, FakeClock], LedgerBackend]] = {
    "sqlite": SqliteBackend,
}
