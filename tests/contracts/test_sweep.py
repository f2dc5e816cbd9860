"""The sweep with real parts: local folder, SQLite ledger, a manifest resolver."""

from __future__ import annotations

import pytest

from imagedrop.config import ProviderSettings
from imagedrop.drops import DropPlanner
from imagedrop.ledger.sqlite import SqliteLedger
from imagedrop.manifests import ManifestResolver
from imagedrop.storage.local import LocalStore
from imagedrop.sweep import Sweeper
from tests.fixtures import images


@pytest.fixture(name="sweeper")
async def _sweeper(tmp_path):
    ledger = SqliteLedger(tmp_path / "l.db")
    await ledger.open()
    store = LocalStore(tmp_path / "data", public_url="http://x", signing_key=b"k")
    await store.ensure_bucket("b")
    planner = DropPlanner(ManifestResolver(store, ttl=0), ProviderSettings(), max_attempts=3,
                          max_settle=60)
    clock = [1e10]
    sweeper = Sweeper(store, planner, ledger, buckets=["b"], interval=1,
                      clock=lambda: clock[0])
    yield sweeper, tmp_path / "data" / "b", ledger, clock
    await store.close()
    await ledger.close()


class TestSweeper:
    """Missed drops are recorded once; skipped files are looked at again later."""

    async def test_records_each_version_once(self, sweeper):
        sweep, folder, _ledger, _ = sweeper
        (folder / "in").mkdir()
        (folder / "in" / "imagedrop.yaml").write_text("prompt: x\n")
        for i in range(3):
            (folder / "in" / f"{i}.png").write_bytes(images.png(10 + i))
        assert (await sweep.sweep_once()).recorded == 3
        assert (await sweep.sweep_once()).recorded == 0
        (folder / "in" / "0.png").write_bytes(images.png(99))  # a new version
        assert (await sweep.sweep_once()).recorded == 1

    async def test_a_manifest_added_later_takes_earlier_files(self, sweeper):
        sweep, folder, _, _ = sweeper
        (folder / "late").mkdir()
        (folder / "late" / "a.png").write_bytes(images.png())
        assert (await sweep.sweep_once()).recorded == 0  # no manifest yet: skipped, not seen
        (folder / "late" / "imagedrop.yaml").write_text("prompt: x\n")
        assert (await sweep.sweep_once()).recorded == 1

    async def test_a_file_still_being_written_waits(self, sweeper):
        sweep, folder, _, clock = sweeper
        (folder / "in").mkdir()
        (folder / "in" / "imagedrop.yaml").write_text("prompt: x\n")
        path = folder / "in" / "big.png"
        path.write_bytes(images.png())
        now = path.stat().st_mtime
        clock[0] = now + 0.2  # just written
        assert (await sweep.sweep_once()).recorded == 0
        clock[0] = now + 5  # quiet for a while
        assert (await sweep.sweep_once()).recorded == 1
