"""Drop-a-file benchmarks (issue 3, SPEC §6): notification intake rate and a 10,000-object sweep.

Run: `.venv/bin/python -m bench.drops` (writes bench/results/drops.json and docs/benchmarks.md).
Both run `imagedrop serve` on the embedded default with the job worker off (IMAGEDROP_WORKER=0):
what is measured is acknowledging and recording, not editing.
"""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
import time
from pathlib import Path

import aiohttp

from bench import harness
from bench.harness import imagedrop, percentile, sample_png

MANIFEST = "prompt: bench\nsettle_seconds: 5\n"


def notification(bucket: str, key: str, etag: str) -> bytes:
    """An S3 event as MinIO posts it (one record)."""
    record = {"eventVersion": "2.0", "eventSource": "minio:s3", "awsRegion": "",
              "eventName": "s3:ObjectCreated:Put",
              "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 1024,
                                                            "eTag": etag}}}
    return json.dumps({"EventName": "s3:ObjectCreated:Put", "Key": f"{bucket}/{key}",
                       "Records": [record]}).encode()


def notifications(n: int, duplicates: float) -> tuple[list[bytes], int]:
    """n notification bodies into folder in/, `duplicates` of them repeats, shuffled; and how
    many distinct object versions they name."""
    unique = int(n * (1 - duplicates))
    bodies = [notification("imagedrop", f"in/img{i:06d}.jpg", f"{i:032x}") for i in range(unique)]
    rng = random.Random(1)
    bodies += [rng.choice(bodies) for _ in range(n - unique)]
    rng.shuffle(bodies)
    return bodies, unique


def governed_folder(data: Path) -> None:
    """The local folder in/ with its manifest."""
    (data / "imagedrop" / "in").mkdir(parents=True)
    (data / "imagedrop" / "in" / "imagedrop.yaml").write_text(MANIFEST)


async def post_all(urls: list[str], bodies: list[bytes], clients: int
                   ) -> tuple[list[float], int, float]:
    """POST every body to /events from `clients` keep-alive connections spread over `urls`;
    returns the latencies (ms), the failures and the seconds it took."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    latencies: list[float] = []
    failures = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as http:
        for url in urls:  # warm up: each replica reads the manifest once
            async with http.post(url + "/events", data=notification(
                    "imagedrop", "in/warm.jpg", "0" * 32)) as resp:
                assert resp.status == 200, await resp.text()

        async def client(url: str) -> None:
            nonlocal failures
            while not queue.empty():
                body = queue.get_nowait()
                t0 = time.perf_counter()
                async with http.post(url + "/events", data=body,
                                     headers={"Content-Type": "application/json"}) as r:
                    await r.read()
                    failures += r.status != 200
                latencies.append((time.perf_counter() - t0) * 1000)

        start = time.perf_counter()
        await asyncio.gather(*(client(urls[i % len(urls)]) for i in range(clients)))
        return latencies, failures, time.perf_counter() - start


def intake_figures(n: int, duplicates: float, clients: int, latencies: list[float],
                   failures: int, elapsed: float, jobs: int, unique: int) -> dict:
    return {"notifications": n, "duplicates_share": duplicates, "clients": clients,
            "rate_per_s": n / elapsed, "p50_ms": percentile(latencies, 50),
            "p99_ms": percentile(latencies, 99), "max_ms": max(latencies),
            "failures": failures, "jobs_recorded": jobs, "jobs_expected": unique + 1}


async def intake(n: int, clients: int, duplicates: float) -> dict:
    """n notifications from `clients` concurrent connections, `duplicates` of them repeats."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        governed_folder(data)
        bodies, unique = notifications(n, duplicates)
        env = {"IMAGEDROP_WORKER": "0", "IMAGEDROP_SWEEP_INTERVAL": "0",
               "IMAGEDROP_LOG_LEVEL": "WARNING"}
        async with imagedrop(env, data) as url:
            latencies, failures, elapsed = await post_all([url], bodies, clients)
            jobs = _count_jobs(data)
        return intake_figures(n, duplicates, clients, latencies, failures, elapsed, jobs, unique)


def _count_jobs(data: Path) -> int:
    import sqlite3

    with sqlite3.connect(data / "imagedrop.sqlite3") as conn:
        (count,) = conn.execute("SELECT COUNT(*) FROM jobs").fetchone()
    return count


def big_folder(tmp: Path, n: int) -> Path:
    """A data folder whose folder `big/` holds a manifest and n distinct small PNGs."""
    data = tmp / "data"
    folder = data / "imagedrop" / "big"
    folder.mkdir(parents=True)
    (folder / "imagedrop.yaml").write_text(MANIFEST)
    image = sample_png(7, 64)
    for i in range(n):
        (folder / f"img{i:06d}.png").write_bytes(image + i.to_bytes(4, "big"))
    return data


async def sweep(n: int) -> dict:
    """A folder of n objects with a manifest, found by the sweep alone (no notifications)."""
    with tempfile.TemporaryDirectory() as tmp:
        data = big_folder(Path(tmp), n)
        env = {"IMAGEDROP_WORKER": "0", "IMAGEDROP_SWEEP_INTERVAL": "1",
               "IMAGEDROP_LOG_LEVEL": "WARNING"}
        start = time.perf_counter()
        async with imagedrop(env, data) as url:
            pid = await _server_pid(url)
            deadline = time.monotonic() + 600
            while _count_jobs(data) < n:
                if time.monotonic() > deadline:
                    raise TimeoutError("sweep did not queue every object")
                await asyncio.sleep(0.25)
            elapsed = time.perf_counter() - start
            rss = _peak_rss_mb(pid)
        return {"objects": n, "queued_in_s": elapsed, "peak_rss_mb": rss}


async def dry_run(n: int) -> dict:
    """POST /trigger {"dry_run": true} over a folder of n objects: answer time and the peak
    memory of the service (the folder is read page by page, never held whole)."""
    with tempfile.TemporaryDirectory() as tmp:
        data = big_folder(Path(tmp), n)
        env = {"IMAGEDROP_WORKER": "0", "IMAGEDROP_SWEEP_INTERVAL": "0",
               "OPENAI_API_KEY": "sk-bench", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
        async with imagedrop(env, data) as url, aiohttp.ClientSession() as http:
            pid = await _server_pid(url)
            start = time.perf_counter()
            async with http.post(url + "/trigger", json={"prefix": "big/", "dry_run": True},
                                 timeout=aiohttp.ClientTimeout(total=600)) as resp:
                body = await resp.json()
                assert resp.status == 200, body
            elapsed = time.perf_counter() - start
            rss = _peak_rss_mb(pid)
        assert body["to_edit"] == n, body
        return {"objects": n, "answered_in_s": elapsed, "peak_rss_mb": rss,
                "estimated_cost_usd": body["estimated_cost_usd"],
                "prices_as_of": body["prices_as_of"]}


async def _server_pid(url: str) -> int:
    return await asyncio.to_thread(_find_pid, url.rsplit(":", 1)[1])


def _find_pid(port: str) -> int:
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in cmd and port.encode() in cmd:
            return int(proc.name)
    raise RuntimeError("imagedrop serve process not found")


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


async def collect() -> dict:
    return {
        "intake": await intake(10_000, 16, 0.2),
        "intake_32": await intake(10_000, 32, 0.2),
        "sweep": await sweep(10_000),
        "dry_run": await dry_run(10_000),
    }


if __name__ == "__main__":
    from bench.report import write_drops_section

    harness.main("drops", __doc__, collect, write_drops_section)
