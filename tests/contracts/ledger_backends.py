"""The ledger backends the contract suite runs against, each with storage fresh per test.

PostgreSQL runs each test in a throwaway schema (created in `start`, set through `search_path`,
dropped in `drop`); an unreachable server skips its tests locally and fails them under CI.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import pytest

from imagedrop.ledger import Ledger
from imagedrop.ledger.sqlite import SqliteLedger

POSTGRES_URL = os.environ.get(
    "IMAGEDROP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
CI = bool(os.environ.get("CI"))


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


async def postgres_admin() -> Any:
    """A plain asyncpg connection to the test server, or a skip (a failure under CI)."""
    asyncpg = pytest.importorskip("asyncpg")
    try:
        return await asyncpg.connect(POSTGRES_URL, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        message = f"no PostgreSQL server for the tests ({type(exc).__name__})"
        if CI:
            pytest.fail(message)
        pytest.skip(message)


def fresh_schema() -> str:
    return f"t_{uuid.uuid4().hex}"


class PostgresBackend:
    """A fresh schema in the test database, reached through `search_path`."""

    name = "postgres"

    def __init__(self, tmp_path: Path, clock: FakeClock) -> None:
        self.clock = clock
        self.schema = fresh_schema()

    async def start(self) -> None:
        admin = await postgres_admin()
        try:
            await admin.execute(f'CREATE SCHEMA "{self.schema}"')
        finally:
            await admin.close()

    def make(self) -> Ledger:
        from imagedrop.ledger.postgres import PostgresLedger

        # A small pool: tests run next to others' on one server (max_connections = 100).
        return PostgresLedger(POSTGRES_URL, clock=self.clock, schema=self.schema, pool_max=4)

    async def drop(self) -> None:
        admin = await postgres_admin()
        try:
            await admin.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        finally:
            await admin.close()


BACKENDS: dict[str, Callable[[Path, FakeClock], LedgerBackend]] = {
    "sqlite": SqliteBackend,
    "postgres": PostgresBackend,
}
