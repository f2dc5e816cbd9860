"""A full disk under the local store and the SQLite ledger (a 6 MB tmpfs): new work is refused
with 503 and Retry-After while it is full, the service stays healthy, nothing is corrupted, and
everything works again once space returns."""

from __future__ import annotations

import base64
import contextlib
import errno
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.procs import ServeProcess, serve_env
from tests.fixtures import images
from tests.hostile.harness import API_KEY, Receiver, Target


@pytest.fixture(name="small_disk")
def _small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a small tmpfs here ({exc})")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=10)


def fill(path: Path) -> None:
    """Write `path` until the disk says it is full (unbuffered: every block is asked for)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for size in (65536, 4096, 512):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)


def submit(target: Target, n: int) -> list[tuple[int, dict[str, str], str | None]]:
    out = []
    for i in range(n):
        image = images.png(200 + i, 150)  # ~100 KB: needs new pages in the ledger
        answer = target.request("POST", "/process-image-async-b64",
                                json_body={"prompt": "x", "image_base64":
                                           base64.b64encode(image).decode()},
                                headers={"callbackUrl": target.receiver.url})
        job = answer.json().get("job_id") if answer.status == 202 else None
        out.append((answer.status, answer.headers, job))
    return out


def test_full_disk_then_recovery(small_disk: Path, tmp_path: Path) -> None:
    receiver = Receiver()
    target = Target("local", small_disk, receiver)
    target.data_dir.mkdir()
    (tmp_path / "outside").mkdir()
    env = serve_env(IMAGEDROP_DATA_DIR=str(target.data_dir), IMAGEDROP_API_KEYS=API_KEY,
                    IMAGEDROP_ALLOW_PRIVATE_CALLBACKS="1", IMAGEDROP_SWEEP_INTERVAL="0",
                    IMAGEDROP_MAX_ATTEMPTS="20")
    target.proc = ServeProcess(env, tmp_path / "serve.log")  # the log is not on the small disk
    try:
        [(status, _, before)] = submit(target, 1)
        assert status == 202 and before
        target.wait_job(before)
        filler = small_disk / "filler"
        fill(filler)
        answers = []
        for _ in range(20):  # until the ledger needs a page it cannot get (free ones go first)
            answers += submit(target, 1)
            if answers[-1][0] != 202:
                break
        refused = [(s, h) for s, h, _ in answers if s != 202]
        assert refused, "nothing was refused although the disk is full"
        for status, headers in refused:
            assert status == 503 and int(headers["Retry-After"]) >= 1, (status, headers)
        assert target.request("GET", "/health", auth=False).status == 200
        accepted = [job for s, _, job in answers if job]
        filler.unlink()  # space returns
        [(status, _, after)] = submit(target, 1)
        assert status == 202 and after
        for job_id in [after, *accepted]:
            job = target.wait_job(job_id, timeout=60)
            assert job["state"] == "completed", job
        db = target.data_dir / "imagedrop.sqlite3"
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        lines = target.new_log_lines()
        errors = [line[:300] for line in lines if '"level": "error"' in line]
        assert not errors, errors  # a full disk is an expected transient failure
        assert not [line for line in lines if "Traceback" in line]
    finally:
        target.stop()
        receiver.close()


async def test_local_store_full_disk_is_transient(small_disk: Path) -> None:
    """A put on a full disk is StorageUnavailable (retried later, then it works), names the
    object and not the path, and leaves no temp file behind."""
    from imagedrop.errors import StorageUnavailable
    from imagedrop.storage.local import LocalStore

    store = LocalStore(small_disk / "data", public_url="http://x.invalid", signing_key=b"k" * 32)
    try:
        await store.ensure_bucket("b")
        fill(small_disk / "filler")
        with pytest.raises(StorageUnavailable) as err:
            await store.put("b", "out/a.png", os.urandom(256 * 1024), content_type="image/png")
        assert "b/out/a.png" in str(err.value) and str(small_disk) not in str(err.value)
        assert not [p for p in (small_disk / "data").rglob("*.tmp")]
        (small_disk / "filler").unlink()
        await store.put("b", "out/a.png", b"x" * 1000, content_type="image/png")
        assert (await store.get("b", "out/a.png")).data == b"x" * 1000
    finally:
        await store.close()
