"""The folder of liveness lock files beside a SQLite ledger: opened once and never through a
link, like the folder of upload files (a lock file created through a link could be anywhere)."""

from __future__ import annotations

import pytest

from imagedrop.errors import ConfigError
from imagedrop.ledger import open_ledger


async def test_a_link_in_place_of_the_folder_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "ledger.db.owners").symlink_to(elsewhere)
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    await ledger.open()
    try:
        with pytest.raises(ConfigError, match="not a link"):
            await ledger.register_owner("me")
    finally:
        await ledger.close()
    assert list(elsewhere.iterdir()) == []


async def test_a_folder_swapped_for_a_link_sends_no_lock_elsewhere(tmp_path):
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    await ledger.open()
    try:
        await ledger.register_owner("me")
        owners = tmp_path / "ledger.db.owners"
        assert owners.stat().st_mode & 0o777 == 0o700
        owners.rename(tmp_path / "moved")
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        owners.symlink_to(elsewhere)
        await ledger.register_owner("you")
        assert len(list((tmp_path / "moved").iterdir())) == 2
        await ledger.unregister_owner("you")
        assert len(list((tmp_path / "moved").iterdir())) == 1
    finally:
        await ledger.close()
    assert list(elsewhere.iterdir()) == []
    assert list((tmp_path / "moved").iterdir()) == []  # closing let its own lock go
