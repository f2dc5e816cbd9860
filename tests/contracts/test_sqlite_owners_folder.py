"""The folder of liveness lock files beside a SQLite ledger: made private, held open and never
reached through a link, like the folder of upload files (a lock file created through a link
could be anywhere); and when it is deleted or replaced while running, the one at its path is
the one used, since that is where other processes look."""

from __future__ import annotations

import shutil

import pytest

from imagedrop.errors import ConfigError
from imagedrop.ledger import open_ledger
from tests.fixtures.folders import swap_for_link


async def _opened(path, owner: str | None = None):
    ledger = open_ledger(f"sqlite:///{path}")
    await ledger.open()
    if owner:
        await ledger.register_owner(owner)
    return ledger


async def test_a_link_in_place_of_the_folder_stops_the_start(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "ledger.db.owners").symlink_to(elsewhere)
    with pytest.raises(ConfigError, match="not a link"):
        await _opened(tmp_path / "ledger.db")
    (tmp_path / "ledger.db.owners").unlink()
    (tmp_path / "ledger.db.owners").write_text("a file")
    with pytest.raises(ConfigError, match="not a link or a file"):
        await _opened(tmp_path / "ledger.db")
    assert list(elsewhere.iterdir()) == []


async def test_a_folder_others_may_read_is_made_private(tmp_path):
    owners = tmp_path / "ledger.db.owners"
    owners.mkdir()
    owners.chmod(0o777)  # as an older version may have left it
    ledger = await _opened(tmp_path / "ledger.db", "me")
    try:
        assert owners.stat().st_mode & 0o777 == 0o700
    finally:
        await ledger.close()


async def test_a_folder_swapped_for_a_link_sends_no_lock_elsewhere(tmp_path):
    ledger = await _opened(tmp_path / "ledger.db", "me")
    try:
        _, elsewhere = swap_for_link(tmp_path / "ledger.db.owners")
        with pytest.raises(ConfigError, match="not a link"):
            await ledger.register_owner("you")
        assert await ledger.dead_owners("me") == []  # no folder to look in: nobody is dead
    finally:
        await ledger.close()  # still lets its own lock go, as far as it can
    assert list(elsewhere.iterdir()) == []


async def test_a_folder_deleted_while_running_is_the_new_one_for_everyone(tmp_path):
    """Deleted under a running process: it finds the folder made since (where the others'
    locks are) instead of taking their work, and makes its own lock there again."""
    first = await _opened(tmp_path / "ledger.db", "first")
    second = None
    try:
        shutil.rmtree(tmp_path / "ledger.db.owners")
        second = await _opened(tmp_path / "ledger.db", "second")  # makes the folder again
        assert await first.dead_owners("first") == []  # "second" lives
        assert await second.dead_owners("second") == []  # and so does "first", again
        assert len(list((tmp_path / "ledger.db.owners").iterdir())) == 2
    finally:
        if second is not None:
            await second.close()
        await first.close()
    assert list((tmp_path / "ledger.db.owners").iterdir()) == []
