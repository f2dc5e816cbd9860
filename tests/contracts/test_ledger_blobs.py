"""Large values live apart from the rows whose state changes (schema V6: job_inputs,
delivery_bodies; V7: an upload in a file beside a SQLite ledger), and rows recorded before that
keep working from their own columns."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest

from imagedrop.errors import ConfigError
from imagedrop.ledger import (
    DeliveryAttempt,
    DeliveryState,
    JobKind,
    Ledger,
    NewDelivery,
    NewJob,
    open_ledger,
)
from imagedrop.providers import EditSpec
from imagedrop.recipes import JobResult, Recipe
from tests.fixtures.folders import swap_for_link

RECIPE = Recipe.of(EditSpec(prompt="p", model="gpt-image-1"))
RESULT = JobResult(provider="local", model="m", mime_type="image/png", fallback_local=False,
                   size=3)


def _job(job_id: str, data: bytes) -> NewJob:
    return NewJob(id=job_id, kind=JobKind.B64, filename="a.png", recipe=RECIPE,
                  input_data=data, callback_url="http://cb.example/x", max_attempts=3)


async def _opened(path: Path, owner: str) -> Ledger:
    """The SQLite ledger at `path`, open, with `owner` registered."""
    ledger = open_ledger(f"sqlite:///{path}")
    await ledger.open()
    await ledger.register_owner(owner)
    return ledger


async def test_blobs_live_apart_and_go_with_the_job(tmp_path):
    path = tmp_path / "ledger.db"
    ledger = await _opened(path, "me")
    try:
        await ledger.create_jobs([_job("j1", b"IMAGE" * 20_000)])
        with sqlite3.connect(path) as db:  # neither row holds the image: a file beside does
            assert db.execute("SELECT input_data FROM jobs").fetchone() == (None,)
            [(size, name)] = db.execute("SELECT length(data), spool FROM job_inputs").fetchall()
        assert size == 0
        file = tmp_path / "ledger.db.uploads" / name
        assert file.read_bytes() == b"IMAGE" * 20_000
        assert file.stat().st_mode & 0o777 == 0o600
        # A small image costs less in the database's pages than a file and a sync.
        await ledger.create_jobs([_job("small", b"tiny")])
        with sqlite3.connect(path) as db:
            assert db.execute("SELECT data, spool FROM job_inputs WHERE job_id = 'small'"
                              ).fetchone() == (b"tiny", None)
        assert len(list((tmp_path / "ledger.db.uploads").iterdir())) == 1
        [job, small] = await ledger.claim_jobs("me", 2, 60)
        assert job.input_data == b"IMAGE" * 20_000 and not job.input_base64
        assert small.input_data == b"tiny"
        got = await ledger.get_job("j1")
        assert got is not None and got.input_data == b"IMAGE" * 20_000
        body = b'{"big":"' + b"A" * 100_000 + b'"}'
        assert await ledger.complete_job("j1", "me", RESULT, [NewDelivery(
            kind="callback", url="http://cb.example/x", body=body)])
        with sqlite3.connect(path) as db:
            assert db.execute("SELECT job_id FROM job_inputs").fetchall() == [("small",)]
            assert db.execute("SELECT length(body) FROM deliveries").fetchone() == (0,)
            [(body_size, body_file)] = db.execute(
                "SELECT length(body), spool FROM delivery_bodies").fetchall()
        assert not file.exists()  # the completed job's image went with its row
        # A large callback body (a base64 result) is kept in a file too, and stays with it.
        assert body_size == 0 and (tmp_path / "ledger.db.uploads" / body_file).read_bytes() == body
        [delivery] = await ledger.claim_deliveries("me", 5, 60)
        assert delivery.body == body
        await ledger.record_attempt(delivery.id, "me", DeliveryAttempt(
            delivery_id=delivery.id, attempt=1, at=time.time(), status=200, error=None,
            duration_ms=1.0), state=DeliveryState.DELIVERED)
        got = await ledger.get_delivery(delivery.id)
        assert got is not None and got.body == body and got.state is DeliveryState.DELIVERED
    finally:
        await ledger.close()


async def test_rows_from_before_keep_their_own_columns(tmp_path):
    path = tmp_path / "ledger.db"
    ledger = await _opened(path, "me")
    try:
        await ledger.create_jobs([_job("old", b"OLD")])
        await ledger.close()
        with sqlite3.connect(path) as db:  # as an older imagedrop wrote it
            db.execute("UPDATE jobs SET input_data = x'4f4c44'")
            db.execute("DELETE FROM job_inputs")
        ledger = await _opened(path, "me2")
        [job] = await ledger.claim_jobs("me2", 1, 60)
        assert job.input_data == b"OLD"
        await ledger.complete_job("old", "me2", RESULT, [NewDelivery(
            kind="callback", url="http://cb.example/x", body=b"{}")])
        await ledger.close()
        with sqlite3.connect(path) as db:
            db.execute("UPDATE deliveries SET body = x'7b2278223a317d'")  # {"x":1}
            db.execute("DELETE FROM delivery_bodies")
        ledger = await _opened(path, "me3")
        [delivery] = await ledger.claim_deliveries("me3", 5, 60)
        assert delivery.body == b'{"x":1}'
    finally:
        await ledger.close()


async def test_upload_files_follow_their_rows(tmp_path):
    """A duplicate's file, a refused call's file and a crash's orphan are removed; a file a job
    still names is kept, and a job whose file is gone fails saying so (no input)."""
    path = tmp_path / "ledger.db"
    uploads = tmp_path / "ledger.db.uploads"
    ledger = await _opened(path, "me")
    try:
        big = 100_000
        await ledger.create_jobs([_job("a", b"A" * big)])
        [(created, new)] = await ledger.create_jobs([_job("a", b"B" * big)])  # same id again
        assert not new and created.id == "a"
        assert [f.read_bytes() for f in uploads.iterdir()] == [b"A" * big]
        [created_file] = [f.name for f in uploads.iterdir()]
        bad = _job("b", b"C" * big)
        bad.recipe = None  # type: ignore[assignment]  # refused inside the transaction
        try:
            await ledger.create_jobs([bad])
        except Exception:
            pass
        else:
            raise AssertionError("a job without a recipe was recorded")
        assert len(list(uploads.iterdir())) == 1
        # A crash between a file and its row leaves an orphan; an old one is tidied away.
        # What is not ours (a desktop's .DS_Store, an editor's backup) is left alone.
        orphan = uploads / "0123456789abcdef0123456789abcdef"
        orphan.write_bytes(b"lost")
        (uploads / ".DS_Store").write_bytes(b"x")
        (uploads / "notes.txt").write_bytes(b"x")
        assert await ledger.tidy_spool(older_than=3600) == 0  # too young to judge
        for f in uploads.iterdir():
            os.utime(f, (time.time() - 7200, time.time() - 7200))
        assert await ledger.tidy_spool(older_than=3600) == 1
        assert not orphan.exists()
        assert sorted(f.name for f in uploads.iterdir() if f.name != created_file) == [
            ".DS_Store", "notes.txt"]
        for name in (".DS_Store", "notes.txt"):
            (uploads / name).unlink()
        # The kept file is gone now (someone deleted it): the job claims with no image.
        next(uploads.iterdir()).unlink()
        [job] = await ledger.claim_jobs("me", 1, 60)
        assert job.id == "a" and job.input_data is None
    finally:
        await ledger.close()


async def test_an_unreadable_file_fails_only_its_own_job(tmp_path):
    """One upload file that cannot be read (here: replaced by a link) does not hold up the
    other jobs claimed with it: that job alone comes without its image."""
    path = tmp_path / "ledger.db"
    ledger = await _opened(path, "me")
    try:
        await ledger.create_jobs([_job("a", b"A" * 100_000)])
        await ledger.create_jobs([_job("b", b"B" * 100_000)])
        with sqlite3.connect(path) as db:
            [(name,)] = db.execute("SELECT spool FROM job_inputs WHERE job_id = 'a'").fetchall()
        target = tmp_path / "ledger.db.uploads" / name
        target.unlink()
        target.symlink_to(tmp_path / "ledger.db")
        claimed = {job.id: job for job in await ledger.claim_jobs("me", 5, 60)}
        assert claimed["a"].input_data is None
        assert claimed["b"].input_data == b"B" * 100_000
    finally:
        await ledger.close()


async def test_with_synchronous_normal_a_completed_image_waits_for_the_sweep(tmp_path):
    """A commit that may still roll back (synchronous=normal) must not take the image with it:
    the file stays until the sweep finds no row naming it."""
    ledger = open_ledger(f"sqlite:///{tmp_path}/ledger.db?synchronous=normal")
    await ledger.open()
    try:
        await ledger.register_owner("me")
        await ledger.create_jobs([_job("j", b"J" * 100_000)])
        await ledger.claim_jobs("me", 1, 60)
        assert await ledger.complete_job("j", "me", RESULT, [])
        [file] = (tmp_path / "ledger.db.uploads").iterdir()
        os.utime(file, (time.time() - 7200, time.time() - 7200))
        assert await ledger.tidy_spool(older_than=3600) == 1
        assert not file.exists()
    finally:
        await ledger.close()


async def test_the_uploads_folder_must_be_a_folder_of_our_own(tmp_path):
    """A link (or a file) where the folder of upload files belongs is refused at open, with
    the reason; a folder others may read is made private."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "ledger.db.uploads").symlink_to(elsewhere)
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    with pytest.raises(ConfigError, match="not a link"):
        await ledger.open()
    (tmp_path / "ledger.db.uploads").unlink()
    (tmp_path / "ledger.db.uploads").symlink_to(tmp_path / "gone")  # a broken link
    with pytest.raises(ConfigError, match="not a link"):
        await ledger.open()
    (tmp_path / "ledger.db.uploads").unlink()
    (tmp_path / "ledger.db.uploads").mkdir(mode=0o755)
    (tmp_path / "ledger.db.uploads").chmod(0o755)
    await ledger.open()
    try:
        assert (tmp_path / "ledger.db.uploads").stat().st_mode & 0o777 == 0o700
    finally:
        await ledger.close()
    assert list(elsewhere.iterdir()) == []


async def test_a_folder_swapped_for_a_link_sends_nothing_elsewhere(tmp_path):
    """The folder is held open from the start: replacing it with a link while the service
    runs does not send uploaded images through the link."""
    ledger = await _opened(tmp_path / "ledger.db", "me")
    try:
        moved, elsewhere = swap_for_link(tmp_path / "ledger.db.uploads")
        await ledger.create_jobs([_job("j", b"J" * 100_000)])
        assert list(elsewhere.iterdir()) == []
        [kept] = moved.iterdir()
        assert kept.read_bytes() == b"J" * 100_000
        [job] = await ledger.claim_jobs("me", 1, 60)
        assert job.input_data == b"J" * 100_000
    finally:
        await ledger.close()


async def test_a_folder_deleted_while_running_is_made_again(tmp_path):
    """Someone deletes the folder of upload files while the service runs: the next upload
    makes it again (with the same checks) instead of failing until a restart."""
    import shutil

    ledger = await _opened(tmp_path / "ledger.db", "me")
    try:
        uploads = tmp_path / "ledger.db.uploads"
        await ledger.create_jobs([_job("before", b"B" * 100_000)])
        shutil.rmtree(uploads)
        await ledger.create_jobs([_job("after", b"A" * 100_000)])
        assert [f.read_bytes() for f in uploads.iterdir()] == [b"A" * 100_000]
        assert uploads.stat().st_mode & 0o777 == 0o700
        claimed = {job.id: job for job in await ledger.claim_jobs("me", 5, 60)}
        assert claimed["after"].input_data == b"A" * 100_000
        assert claimed["before"].input_data is None  # its file went with the folder
    finally:
        await ledger.close()
