"""Uploaded images in files beside a SQLite ledger, named by the `job_inputs` row that owns them.

A file is written and synced (file, then directory) before the row naming it commits, so an
acknowledged upload survives a power cut. Writes run in threads, which the GIL lets overlap:
forty 200 KB photos are forty concurrent fdatasyncs (~12 ms here) instead of 8 MB through
SQLite's pages and WAL (~40 ms, holding the ledger's one thread). A file whose row never
committed (a crash between the two) or was deleted is an orphan: `stale` finds it later.
The folder is opened once, never through a link, and every file is reached from that open
folder: swapping the folder for a link later sends nothing elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import stat
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from imagedrop.errors import ConfigError, TransientError

_NAME = re.compile(r"[0-9a-f]{32}")  # uuid4().hex: what `_write` names files
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class Spool:
    """A directory of upload files (created when opened, private to the service's user)."""

    def __init__(self, directory: Path, *, commits_durable: bool = True) -> None:
        self.directory = directory
        # False when the database may lose its last commits (synchronous=normal): a file is
        # then deleted only by `stale`'s sweep, never right after a commit that may roll back.
        self.commits_durable = commits_durable
        self._made = 0  # files created so far, and how many of them a directory sync covers
        self._synced = 0
        self._sync_lock = asyncio.Lock()
        # The folder, held open from `open` to `close`; threads use duplicates taken under the
        # lock, so a close meanwhile never leaves them a number that now names something else.
        self._fd: int | None = None
        self._fd_lock = threading.Lock()

    def open(self) -> None:
        """Create the folder if missing and hold it open. ConfigError for a link, a file or
        another user's folder in its place (a group- or world-readable one is made private)."""
        fd = open_private_folder(self.directory, "it holds uploaded images")
        with self._fd_lock:
            old, self._fd = self._fd, fd
        if old is not None:
            os.close(old)

    def close(self) -> None:
        """Let the folder go (files in flight then fail as unreadable)."""
        with self._fd_lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    @contextlib.contextmanager
    def _folder(self, *, required: bool = True) -> Iterator[int | None]:
        """The held folder, duplicated for one use (None when closed and not `required`)."""
        with self._fd_lock:
            fd = None if self._fd is None else os.dup(self._fd)
        if fd is None and required:
            raise TransientError("the folder for uploaded images is not open")
        try:
            yield fd
        finally:
            if fd is not None:
                os.close(fd)

    async def put(self, blobs: list[bytes]) -> list[str]:
        """Write each blob to a new file, durably; the names, in order. TransientError when the
        disk refuses (full, read-only, failing): nothing is left behind then."""
        written = await asyncio.gather(*(asyncio.to_thread(self._write, b) for b in blobs),
                                       return_exceptions=True)
        names = [name for name in written if isinstance(name, str)]
        self._made += len(names)
        failed = next((e for e in written if isinstance(e, BaseException)), None)
        try:
            if failed is not None:
                raise failed
            await self._sync()
        except OSError as exc:
            await self.remove(names)
            raise _transient("stored", exc) from None
        except BaseException:
            await self.remove(names)
            raise
        return names

    async def get(self, names: list[str]) -> dict[str, bytes]:
        """The files' contents by name; a missing file is left out."""
        try:
            return await asyncio.to_thread(self._read, names)
        except OSError as exc:
            raise _transient("read", exc) from None

    async def remove(self, names: Iterable[str]) -> None:
        """Delete these files (those already gone are ignored). Best effort: a file that cannot
        be deleted now is an orphan that `stale` finds later."""
        names = list(names)
        if names:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(self._unlink, names)

    async def stale(self, older_than: float) -> list[str]:
        """Names of the files last written more than `older_than` seconds ago."""
        return await asyncio.to_thread(self._stale, time.time() - older_than)

    # -- in threads ---------------------------------------------------------------------------

    def _write(self, data: bytes, *, again: bool = True) -> str:
        name = uuid.uuid4().hex
        with self._folder() as folder:
            try:
                fd = os.open(name, _FLAGS, 0o600, dir_fd=folder)
            except FileNotFoundError:
                assert folder is not None
                if not again or os.fstat(folder).st_nlink:
                    raise
                # The folder was deleted while we ran: made again, with the same checks.
                try:
                    self.open()
                except ConfigError:
                    raise TransientError("the folder for uploaded images was replaced by "
                                         "something else; see the service's start-up "
                                         "checks") from None
                return self._write(data, again=False)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fdatasync(fd)
        finally:
            os.close(fd)
        return name

    async def _sync(self) -> None:
        """Make every file created so far findable after a power cut: one directory fsync,
        shared by the calls that wait while another runs (it covers their files too)."""
        wanted = self._made
        async with self._sync_lock:
            if self._synced >= wanted:
                return
            covered = self._made
            await asyncio.to_thread(self._fsync)
            self._synced = max(self._synced, covered)

    def _fsync(self) -> None:
        with self._folder() as folder:
            assert folder is not None
            os.fsync(folder)

    def _read(self, names: list[str]) -> dict[str, bytes]:
        # Each file on its own: one that cannot be read (gone, a link, not a regular file, an
        # I/O error) is left out and fails only its own job or delivery, saying so.
        out: dict[str, bytes] = {}
        with self._folder() as folder:
            for name in names:
                if not _NAME.fullmatch(name):
                    continue
                try:
                    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK,
                                 dir_fd=folder)
                except OSError:
                    continue
                with os.fdopen(fd, "rb") as f:
                    try:
                        if stat.S_ISREG(os.fstat(fd).st_mode):
                            out[name] = f.read()
                    except OSError:
                        pass
        return out

    def _unlink(self, names: list[str]) -> None:
        with self._folder(required=False) as folder:
            for name in names if folder is not None else ():
                if _NAME.fullmatch(name):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(name, dir_fd=folder)

    def _stale(self, before: float) -> list[str]:
        stale: list[str] = []
        with self._folder(required=False) as folder:
            for entry in os.scandir(folder) if folder is not None else ():
                if not _NAME.fullmatch(entry.name):  # only our own names: the rest is left
                    continue
                try:
                    if (entry.is_file(follow_symlinks=False)
                            and entry.stat(follow_symlinks=False).st_mtime < before):
                        stale.append(entry.name)
                except FileNotFoundError:  # deleted while we looked (a job completed)
                    continue
        return stale


def open_private_folder(path: Path, holds: str) -> int:
    """`path` as a folder of our own, opened (made if missing, made private if others may
    read it), never through a link; ConfigError naming what is wrong otherwise (`holds`: what
    the folder is for, said in the reason)."""
    fd = -1
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        info = os.fstat(fd)
        if info.st_uid != os.geteuid():
            raise ConfigError(f"{path}: belongs to another user (uid {info.st_uid}); {holds}")
        if info.st_mode & 0o077:
            os.fchmod(fd, 0o700)
        return fd
    except BaseException as exc:
        if fd >= 0:
            os.close(fd)
        if not isinstance(exc, OSError):
            raise
        what = ("must be a folder, not a link or a file"
                if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EEXIST) else "cannot be opened")
        raise ConfigError(f"{path}: {what} ({exc.strerror}); {holds}") from None


def _transient(what: str, exc: OSError) -> TransientError:
    # The reason only (e.g. "No space left on device"): never the server's path.
    return TransientError(f"an uploaded image or callback body could not be {what}: "
                          f"{exc.strerror or type(exc).__name__}")

