"""A real callback receiver: an aiohttp server on its own thread and loop, with scripted answers.

As a fixture (`receiver`) it works whatever loop the code under test runs on; as a program
(`python -m tests.fakes.receiver --port-file P --log L`) it serves subprocess tests.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from aiohttp import web

# A scripted answer: a status, (status, headers) or (status, headers, delay_seconds).
Reply = int | tuple[int, dict[str, str]] | tuple[int, dict[str, str], float]


class Recorded(NamedTuple):
    """One request as the receiver saw it."""

    path: str
    headers: dict[str, str]  # names as sent (case kept)
    body: bytes
    time: float


class _Script:
    """Per-path queues of answers and the record of requests, shared across threads."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.queues: dict[str, deque[Reply]] = defaultdict(deque)
        self.requests: list[Recorded] = []
        self.on_record: list[Any] = []  # callbacks(Recorded), e.g. the JSONL writer

    def record(self, item: Recorded) -> tuple[int, dict[str, str], float]:
        with self.cond:
            self.requests.append(item)
            queue = self.queues.get(item.path)
            reply: Reply = queue.popleft() if queue else 200
            self.cond.notify_all()
        for hook in self.on_record:
            hook(item)
        if isinstance(reply, int):
            return reply, {}, 0.0
        status, headers, *rest = reply
        return status, dict(headers), float(rest[0]) if rest else 0.0


def _make_app(script: _Script) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        # raw_headers keeps the names exactly as sent; CIMultiDict would not.
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in request.raw_headers}
        status, reply_headers, delay = script.record(
            Recorded(request.path, headers, body, time.time())
        )
        if delay:
            await asyncio.sleep(delay)  # scripted slowness, for timeout tests
        return web.json_response({"ok": 200 <= status < 300}, status=status, headers=reply_headers)

    app = web.Application(client_max_size=256 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


class Receiver:
    """A running receiver: scripted statuses per path, recorded requests, blocking waits."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._script = _Script()
        self._host = host
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="receiver", daemon=True)
        self.port = 0

    def start(self) -> Receiver:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        self.port = future.result(timeout=10)
        return self

    async def _start(self) -> int:
        self._runner = web.AppRunner(_make_app(self._script), shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, 0)
        await site.start()
        return int(self._runner.addresses[0][1])

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        # Handlers still sleeping on a scripted delay outlive cleanup; end them here.
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    # -- the test-facing API --------------------------------------------------------------
    def url(self, path: str = "/cb") -> str:
        return f"http://{self._host}:{self.port}{path}"

    def respond(self, path: str, replies: Iterable[Reply]) -> None:
        """Answer the next requests to `path` with these replies, then 200."""
        with self._script.cond:
            self._script.queues[path].extend(replies)

    @property
    def requests(self) -> list[Recorded]:
        with self._script.cond:
            return list(self._script.requests)

    def requests_for(self, path: str) -> list[Recorded]:
        """The requests recorded so far to `path`."""
        with self._script.cond:
            return self._matching(path)

    def _matching(self, path: str | None) -> list[Recorded]:
        return [r for r in self._script.requests if path is None or r.path == path]

    def wait_for(self, n: int, path: str | None = None, timeout: float = 10) -> list[Recorded]:
        """Block until at least `n` requests (to `path`, if given) arrived; return them.

        For sync tests only: in a coroutine use `await_requests`, since blocking here would
        freeze an in-process service sharing the test's loop.
        """
        if _loop_running_here():
            raise RuntimeError(
                "receiver.wait_for() would block this thread's running event loop; "
                "use `await receiver.await_requests(...)` in async tests"
            )
        with self._script.cond:
            done = self._script.cond.wait_for(lambda: len(self._matching(path)) >= n, timeout)
            got = self._matching(path)
        if not done:
            raise AssertionError(
                f"receiver: wanted {n} request(s) to {path or 'any path'} within {timeout}s, "
                f"got {len(got)}"
            )
        return got

    async def await_requests(
        self, n: int, path: str | None = None, timeout: float = 10
    ) -> list[Recorded]:
        """`wait_for` without blocking the caller's event loop."""
        return await asyncio.to_thread(self.wait_for, n, path, timeout)


def _loop_running_here() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@pytest.fixture(name="receiver")
def _receiver() -> Iterator[Receiver]:
    """A real HTTP callback receiver on 127.0.0.1 and a free port, stopped after the test."""
    rec = Receiver().start()
    try:
        yield rec
    finally:
        rec.stop()


# -- standalone mode ----------------------------------------------------------------------
def _jsonl_writer(path: Path) -> Any:
    lock = threading.Lock()

    def write(item: Recorded) -> None:
        line = {
            "path": item.path,
            "headers": item.headers,
            "body": item.body.decode("utf-8", "replace"),
            "body_b64": base64.b64encode(item.body).decode("ascii"),
            "time": item.time,
        }
        with lock, path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(line) + "\n")

    return write


def _parse_respond(specs: list[str]) -> dict[str, list[Reply]]:
    """`/cb=503,200` → {"/cb": [503, 200]}."""
    out: dict[str, list[Reply]] = {}
    for spec in specs:
        path, _, statuses = spec.partition("=")
        out[path] = [int(s) for s in statuses.split(",") if s]
    return out


def _write_port_file(path: str, port: int) -> None:
    """Write atomically, so a parent polling for the file never reads half a number."""
    tmp = Path(f"{path}.tmp")
    tmp.write_text(str(port))
    os.replace(tmp, path)


async def _serve(args: argparse.Namespace) -> None:
    script = _Script()
    if args.log:
        script.on_record.append(_jsonl_writer(Path(args.log)))
    for path, replies in _parse_respond(args.respond).items():
        script.queues[path].extend(replies)
    runner = web.AppRunner(_make_app(script), shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, args.host, args.port).start()
    port = int(runner.addresses[0][1])
    if args.port_file:
        _write_port_file(args.port_file, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Record callbacks; answer scripted statuses.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", help="write the bound port here once listening")
    parser.add_argument("--log", help="append each request as a JSON line to this file")
    parser.add_argument(
        "--respond", action="append", default=[], metavar="PATH=S1,S2",
        help="answer these statuses to PATH in order, then 200 (repeatable)",
    )
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
