"""Processes and helpers the benchmarks share: a fake provider, imagedrop serve, a receiver."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from aiohttp import web
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sample_png(i: int, size: int = 256) -> bytes:
    """A small distinct PNG (provider-bound benchmarks do not need big pixels)."""
    img = Image.new("RGB", (size, size), ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def photo_jpeg(size: int = 1024) -> bytes:
    """A real-photo-sized JPEG: 1 MP of noise over colour gradients, about 200 KB at quality 90
    (what a phone photo scaled for the edit API weighs; flat test images compress to nothing)."""
    noise = Image.effect_noise((size, size), 34).convert("RGB")
    grad = Image.linear_gradient("L").resize((size, size))
    colour = Image.merge("RGB", (grad, grad.rotate(90), grad.rotate(180)))
    im = Image.blend(noise, colour, 0.5).resize((size // 2, size // 2)).resize(
        (size, size), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def result_png(size: int = 1024) -> bytes:
    """A ~1 MB PNG, what gpt-image returns for a 1024x1024 edit: gradients with a noisy band."""
    grad = Image.linear_gradient("L").resize((size, size))
    im = Image.merge("RGB", (grad, grad.rotate(90), grad.rotate(180)))
    im.paste(Image.effect_noise((size, size * 38 // 100), 60).convert("RGB"), (0, 0))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


async def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
            try:
                async with http.get(url) as resp:
                    if resp.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def image_folder(data: Path, n: int, folder: str = "photos") -> Path:
    """n distinct small PNGs in the local store's folder `folder` (bucket `imagedrop`)."""
    path = data / "imagedrop" / folder
    path.mkdir(parents=True)
    for i in range(n):
        (path / f"img{i:04d}.png").write_bytes(sample_png(i))
    return path


@asynccontextmanager
async def fake_provider(latency: float, result: bytes | None = None) -> AsyncIterator[str]:
    """The fake OpenAI server in its own process; yields its base URL. It echoes the input, or
    answers `result` to every edit."""
    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "port"
        answer = ["--echo"]
        if result is not None:
            (Path(tmp) / "result").write_bytes(result)
            answer = ["--result", str(Path(tmp) / "result")]
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.openai_server", "--port", "0",
             "--latency", str(latency), "--port-file", str(port_file), *answer],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while not (port_file.exists() and port_file.read_text().strip()):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("fake OpenAI server did not start")
                await asyncio.sleep(0.05)
            yield f"http://127.0.0.1:{port_file.read_text().strip()}/v1"
        finally:
            _stop(proc)


@asynccontextmanager
async def imagedrop(env: dict[str, str], data_dir: Path) -> AsyncIterator[str]:
    """`imagedrop serve` in its own process; yields its URL."""
    port = free_port()
    full = {k: v for k, v in os.environ.items() if not k.startswith(("COS_", "OPENAI_",
                                                                    "IMAGEDROP_"))}
    full.update({"IMAGEDROP_DATA_DIR": str(data_dir), "IMAGEDROP_ALLOW_PRIVATE_CALLBACKS": "1",
                 "IMAGEDROP_ALLOW_PRIVATE_SUBSCRIBERS": "1",
                 "IMAGEDROP_LOG_LEVEL": "WARNING", "IMAGEDROP_POLL_INTERVAL": "0.2"})
    full.update(env)
    log_dir = Path(os.environ.get("BENCH_LOG_DIR") or data_dir.parent)  # keep logs if asked
    log = open(log_dir / f"serve-{port}.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "imagedrop", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=full, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        await _wait_http(url + "/health", proc)
        yield url
    finally:
        _stop(proc)
        log.close()


class Receiver:
    """Records when each callback arrives, by job_id."""

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self.bodies: dict[str, dict] = {}
        self._changed = asyncio.Event()
        self.url = ""

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        arrived = time.perf_counter()  # when its bytes were in, not after this side's parse
        body = json.loads(raw)
        self.arrivals.setdefault(body["job_id"], arrived)
        self.bodies[body["job_id"]] = body
        self._changed.set()
        return web.Response(status=200)

    async def wait_for(self, job_ids: set[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not job_ids <= self.arrivals.keys():
            self._changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                missing = len(job_ids - self.arrivals.keys())
                raise TimeoutError(f"{missing} callbacks missing")
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Receiver]:
        app = web.Application(client_max_size=64 * 1024 * 1024)  # base64 results are big
        app.router.add_post("/cb", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}/cb"
        try:
            yield self
        finally:
            await runner.cleanup()


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def main(name: str, doc: str | None, collect: Callable[[], Awaitable[dict]],
         write_section: Callable[[dict], None]) -> None:
    """Command-line entry of a benchmark: run `collect`, stamp the results with the time and the
    machine, keep them in bench/results/<name>.json and (unless --no-docs) the docs' table."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = parser.parse_args()
    results = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                   f"Python {platform.python_version()}",
        **asyncio.run(collect()),
    }
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    if not args.no_docs:
        write_section(results)
    print(json.dumps(results, indent=2))
