"""A fake OpenAI image-edit API (aiohttp) for the real `openai` SDK: fixture `fake_openai`, CLI.

Behaviour is chosen per call by prompt keywords ([billing] [moderation] [quota] [ratelimit]
[flaky] [slow]) or by a scripted queue; every call is recorded. Run `python -m
tests.fakes.openai_server --help` for the stand-alone server used by benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import io
import json
import os
import secrets
import signal
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from PIL import Image, ImageOps

from imagedrop.config import ProviderSettings

API_KEY = "sk-fake-test-key-0123456789"


def _err(message: str, code: str | None, type_: str = "invalid_request_error",
         param: str | None = None, **extra: object) -> dict[str, object]:
    """OpenAI's `error` object."""
    return {"message": message, "type": type_, "param": param, "code": code, **extra}


# kind: (HTTP status, error object); the shapes are from reference/wire-formats.md §4.
_ERRORS = {
    "billing": (400, _err("Billing hard limit has been reached", "billing_hard_limit_reached")),
    "moderation": (400, _err(
        "Your request was rejected by the safety system. safety_violations=[violence]",
        "moderation_blocked", "image_generation_user_error",
        moderation_details={"moderation_stage": "input", "categories": ["violence"]})),
    "quota": (429, _err("You exceeded your current quota, please check your plan and billing "
                        "details.", "insufficient_quota", "insufficient_quota")),
    "ratelimit": (429, _err("Rate limit reached for gpt-image-2 on images per min (IPM): Limit "
                            "5, Used 5, Requested 1. Please try again in 1s.",
                            "rate_limit_exceeded", "requests")),
    "server_error": (500, _err("The server had an error while processing your request. Sorry "
                               "about that!", None, "server_error")),
}
# Keywords that fail on the first call for a prompt+image and succeed afterwards.
_FIRST_ONLY = {"[ratelimit]": "ratelimit", "[flaky]": "server_error"}
_ALWAYS = {"[billing]": "billing", "[moderation]": "moderation", "[quota]": "quota"}


@dataclass
class Call:
    """One request as the fake saw it; `status` is filled in when the answer is sent."""

    prompt: str
    model: str | None
    quality: str | None
    size: str | None
    output_format: str | None
    n: str | None
    image_sha256: str
    image_filename: str | None
    image_content_type: str | None
    image_field: str  # "image" or "image[]"
    fields: dict[str, str]
    headers: dict[str, str]
    time: float = field(default_factory=time.monotonic)  # arrival, for gaps between calls
    status: int | None = None

    def __getitem__(self, key: str) -> object:  # call["prompt"] reads like call.prompt
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None


@dataclass(eq=False)
class FakeOpenAIState:
    """Behaviour knobs and the call record; safe to use from any thread."""

    latency: float = 0.0
    slow_seconds: float = 5.0
    api_key: str | None = API_KEY  # None accepts any bearer token
    echo: bool = False  # answer with the input bytes: no CPU spent here (benchmarks)
    result: bytes | None = None  # answer with these bytes every time (benchmarks: ~1 MB PNGs)
    calls: list[Call] = field(default_factory=list)
    _queue: deque[object] = field(default_factory=deque)
    _seen: Counter[tuple[str, str]] = field(default_factory=Counter)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    in_flight: int = 0
    _result_b64: str | None = None
    max_in_flight: int = 0

    def encoded(self, data: bytes) -> str:
        """`data` as base64; the fixed result is encoded once (a benchmark's fake costs little)."""
        if data is self.result:
            if self._result_b64 is None:
                self._result_b64 = base64.b64encode(data).decode()
            return self._result_b64
        return base64.b64encode(data).decode()

    def script(self, steps: Iterable[object]) -> None:
        """Queue answers for the next calls, one each: "ok", an int status, or an error kind
        ("billing", "moderation", "quota", "ratelimit", "server_error", "slow", "no_image",
        "bad_json")."""
        with self._cond:
            self._queue.extend(steps)

    def wait_for_calls(self, n: int, timeout: float = 10.0) -> Any:
        """Wait until at least `n` calls arrived (AssertionError after `timeout` s), returning
        them. Plain code blocks; inside a coroutine this returns an awaitable: `await` it, so
        the caller's event loop keeps running while it waits."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self.wait_for_calls_sync(n, timeout)
        return asyncio.to_thread(self.wait_for_calls_sync, n, timeout)

    def wait_for_calls_sync(self, n: int, timeout: float = 10.0) -> list[Call]:
        """Block until at least `n` calls arrived; AssertionError after `timeout` seconds."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.calls) >= n, timeout):
                raise AssertionError(f"expected {n} calls to fake OpenAI, got {len(self.calls)}")
            return list(self.calls)

    def stats(self) -> dict[str, object]:
        """Counts for GET /_stats: calls, calls per image sha256, edits in flight (and peak)."""
        with self._cond:
            by_image = Counter(c.image_sha256 for c in self.calls)
            return {"calls": len(self.calls), "by_image": dict(by_image),
                    "in_flight": self.in_flight, "max_in_flight": self.max_in_flight}

    def _admit(self, call: Call) -> object:
        """Record the call and decide its answer."""
        with self._cond:
            self.calls.append(call)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self._cond.notify_all()
            if self._queue:
                return self._queue.popleft()
            key = (call.prompt, call.image_sha256)
            self._seen[key] += 1
            first = self._seen[key] == 1
        for word, kind in _ALWAYS.items():
            if word in call.prompt:
                return kind
        for word, kind in _FIRST_ONLY.items():
            if word in call.prompt and first:
                return kind
        return "slow" if "[slow]" in call.prompt else "ok"

    def _done(self, call: Call, status: int) -> None:
        with self._cond:
            call.status = status
            self.in_flight -= 1


def _error(status: int, error: dict[str, object], **headers: str) -> web.Response:
    headers.setdefault("x-request-id", f"req_{secrets.token_hex(8)}")
    return web.json_response({"error": error}, status=status, headers=headers)


def _render(image: bytes, output_format: str, size: str | None) -> tuple[bytes, str]:
    """The 'edit': the input inverted, in the requested format and size."""
    with Image.open(io.BytesIO(image)) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
    im = ImageOps.invert(im)
    if size and "x" in size and size != "auto":
        w, h = (int(v) for v in size.split("x"))
        im = im.resize((w, h))
    buf = io.BytesIO()
    im.save(buf, {"jpeg": "JPEG", "webp": "WEBP"}.get(output_format, "PNG"))
    return buf.getvalue(), f"{im.width}x{im.height}"


async def _edits(request: web.Request) -> web.Response:
    state: FakeOpenAIState = request.app[STATE]
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer ") or (state.api_key and auth[7:] != state.api_key):
        shown = auth[7:11] + "*" * 8 + auth[-4:] if len(auth) > 15 else "(none)"
        return _error(401, _err(f"Incorrect API key provided: {shown}.", "invalid_api_key"))
    if not request.content_type.startswith("multipart/form-data"):
        return _error(400, _err("Expected multipart/form-data", None))
    form = await request.post()
    files = [(k, v) for k, v in form.items() if isinstance(v, web.FileField)]
    fields = {k: str(v) for k, v in form.items() if not isinstance(v, web.FileField)}
    image = files[0][1].file.read() if files else b""
    for _, upload in files:  # spooled temp files: close now, not when garbage-collected
        upload.file.close()
    if not files or not fields.get("prompt"):
        missing = "image" if not files else "prompt"
        return _error(400, _err(f"Missing required parameter: '{missing}'.",
                                "missing_required_parameter", param=missing))
    name, upload = files[0]
    call = Call(
        prompt=fields["prompt"], model=fields.get("model"), quality=fields.get("quality"),
        size=fields.get("size"), output_format=fields.get("output_format"), n=fields.get("n"),
        image_sha256=hashlib.sha256(image).hexdigest(), image_filename=upload.filename,
        image_content_type=upload.content_type, image_field=name, fields=fields,
        headers=dict(request.headers),
    )
    response = web.Response(status=599)
    try:
        response = await _answer(state, call, image)
        return response
    finally:
        state._done(call, response.status)


async def _answer(state: FakeOpenAIState, call: Call, image: bytes) -> web.Response:
    kind = state._admit(call)
    await asyncio.sleep(state.latency + (state.slow_seconds if kind == "slow" else 0.0))
    if isinstance(kind, int) and kind >= 400:
        return _error(kind, _err(f"Scripted error {kind}", None,
                                 "server_error" if kind >= 500 else "invalid_request_error"))
    if kind in _ERRORS:
        status, error = _ERRORS[kind]  # type: ignore[index]
        return _error(status, error, **({"Retry-After": "1"} if kind == "ratelimit" else {}))
    if kind == "bad_json":
        return web.Response(status=200, text="<html>gateway</html>", content_type="text/html")
    fmt = call.output_format or "png"
    if fmt not in ("png", "jpeg", "webp"):
        return _error(400, _err(f"Invalid value: '{fmt}'.", "invalid_value",
                                param="output_format"))
    try:
        if state.result is not None:
            data, size = state.result, call.size or "auto"
        elif state.echo:
            data, size = image, call.size or "auto"
        else:
            data, size = await asyncio.get_running_loop().run_in_executor(
                None, _render, image, fmt, call.size)
    except Exception:
        return _error(400, _err("Invalid image file or mode for image 1, please check your "
                                "image file.", "invalid_image_file", param="image"))
    answer = json.dumps({
        "created": int(time.time()), "background": "opaque",
        "output_format": fmt, "quality": "medium" if call.quality in (None, "auto")
        else call.quality, "size": size,
        "usage": {"input_tokens": 300, "input_tokens_details": {"image_tokens": 258,
                  "text_tokens": 42}, "output_tokens": 1056, "total_tokens": 1356},
    })
    # The base64 is spliced in, not serialised again per answer: a benchmark's 16 answers of
    # 1.35 MB at once would otherwise cost the fake more CPU than the service under test.
    item = "null" if kind == "no_image" else f'"{state.encoded(data)}"'
    return web.Response(body=f'{answer[:-1]}, "data": [{{"b64_json": {item}}}]}}'.encode(),
                        content_type="application/json",
                        headers={"x-request-id": f"req_{secrets.token_hex(8)}"})


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].stats())


STATE = web.AppKey("state", FakeOpenAIState)


def make_app(state: FakeOpenAIState) -> web.Application:
    """The fake API as an aiohttp app (POST /v1/images/edits, GET /_stats)."""
    app = web.Application(client_max_size=100 * 1024 * 1024)
    app[STATE] = state
    app.router.add_post("/v1/images/edits", _edits)
    app.router.add_get("/_stats", _stats)
    return app


async def _serve(state: FakeOpenAIState, host: str, port: int) -> tuple[web.AppRunner, int]:
    # Like a real server, a handler whose client hung up (an SDK timeout) is cancelled; and slow
    # handlers are cancelled at stop instead of holding teardown up.
    runner = web.AppRunner(make_app(state), access_log=None, handler_cancellation=True,
                           shutdown_timeout=0.5)
    await runner.setup()
    sock = socket.create_server((host, port))
    await web.SockSite(runner, sock).start()
    return runner, sock.getsockname()[1]


async def _cleanup(runner: web.AppRunner) -> None:
    await runner.cleanup()
    tasks = asyncio.all_tasks() - {asyncio.current_task()}
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class FakeOpenAI(FakeOpenAIState):
    """The fake served from its own thread and event loop, so the code under test can run on
    any loop (or none); behaviour knobs and the call record are inherited."""

    def __init__(self, *, latency: float = 0.0, host: str = "127.0.0.1") -> None:
        super().__init__(latency=latency)
        self.host, self.port = host, 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-openai",
                                        daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def __repr__(self) -> str:  # short: pytest prints fixtures in failure reports
        return f"FakeOpenAI({self.base_url}, {len(self.calls)} calls, latency={self.latency})"

    def provider_settings(self, **overrides: object) -> ProviderSettings:
        """ProviderSettings pointing at this fake (kind=openai, the fake's API key)."""
        values: dict[str, object] = {"kind": "openai", "openai_api_key": self.api_key
                                     or API_KEY, "openai_base_url": self.base_url}
        return ProviderSettings(**(values | overrides))

    def start(self) -> FakeOpenAI:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(_serve(self, self.host, 0), self._loop)
        self._runner, self.port = future.result(timeout=10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(_cleanup(self._runner), self._loop).result(10)
            self._runner = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(name="fake_openai")
def _fake_openai() -> Iterator[FakeOpenAI]:
    """A fresh fake OpenAI API on a free port, stopped after the test."""
    with FakeOpenAI() as server:
        yield server


async def _main(args: argparse.Namespace) -> None:
    state = FakeOpenAIState(latency=args.latency, slow_seconds=args.slow_seconds,
                            api_key=args.api_key or None, echo=args.echo,
                            result=args.result)
    runner, port = await _serve(state, args.host, args.port)
    if args.port_file:  # written once listening, atomically, so a poller never reads half
        tmp = Path(f"{args.port_file}.tmp")
        await asyncio.to_thread(tmp.write_text, str(port))
        os.replace(tmp, args.port_file)
    print(f"fake OpenAI listening on http://{args.host}:{port}/v1", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await _cleanup(runner)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.openai_server",
                                     description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--port-file", help="write the chosen port here once listening")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per edit")
    parser.add_argument("--slow-seconds", type=float, default=5.0, help="extra for [slow]")
    parser.add_argument("--api-key", default="", help="required bearer token (default: any)")
    parser.add_argument("--echo", action="store_true",
                        help="return the input image as the result (no rendering CPU)")
    parser.add_argument("--result", type=lambda path: Path(path).read_bytes(),
                        help="return this file's bytes as every result")
    asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
