"""Fixtures shared by the contract suites: a ledger on every backend, with a fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from imagedrop.ledger import Ledger
from tests.contracts.ledger_backends import BACKENDS, FakeClock, LedgerBackend


@pytest.fixture(name="clock")
def clock_fixture() -> FakeClock:
    return FakeClock()


@pytest.fixture(name="backend", params=sorted(BACKENDS))
async def backend_fixture(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[LedgerBackend]:
    backend = BACKENDS[request.param](tmp_path, clock)
    await backend.start()
    yield backend
    await backend.drop()


@pytest.fixture(name="ledger")
async def ledger_fixture(backend: LedgerBackend) -> AsyncIterator[Ledger]:
    ledger = backend.make()
    await ledger.open()
    yield ledger
    await ledger.close()


@pytest.fixture(name="second")
async def second_fixture(backend: LedgerBackend, ledger: Ledger) -> AsyncIterator[Ledger]:
    """Another connection to the same storage, as a second process would have."""
    other = backend.make()
    await other.open()
    yield other
    await other.close()
