"""Core engine benchmarks (issue 2, SPEC §6) against a fake provider with fixed latency.

Run: `.venv/bin/python -m bench.core` (writes bench/results/core.json and docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import base64
import math
import tempfile
import time
from pathlib import Path

import aiohttp

from bench import harness
from bench.harness import Receiver, fake_provider, imagedrop, percentile, sample_png

LATENCY = 1.0


async def singles(provider_url: str, n: int, concurrency: int) -> dict:
    """n single-image jobs posted at once: 202 latency and makespan."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        env = {"OPENAI_API_KEY": "sk-bench", "OPENAI_BASE_URL": provider_url,
               "IMAGEDROP_CONCURRENCY": str(concurrency)}
        async with Receiver().running() as rx, imagedrop(env, data) as url, \
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            bodies = [{"prompt": f"bench {i}", "image_base64": base64.b64encode(
                sample_png(i)).decode()} for i in range(n)]

            async def post(body: dict) -> tuple[str, float]:
                t0 = time.perf_counter()
                async with http.post(url + "/process-image-async-b64", json=body,
                                     headers={"callbackUrl": rx.url}) as resp:
                    assert resp.status == 202, await resp.text()
                    job_id = (await resp.json())["job_id"]
                return job_id, time.perf_counter() - t0

            start = time.perf_counter()
            results = await asyncio.gather(*(post(b) for b in bodies))
            ids = {job_id for job_id, _ in results}
            await rx.wait_for(ids, timeout=120)
            makespan = max(rx.arrivals[i] for i in ids) - start
            lat = [dt * 1000 for _, dt in results]
            ideal = math.ceil(n / concurrency) * LATENCY
            failed = sum(1 for i in ids if rx.bodies[i]["status"] != "completed")
            return {"jobs": n, "concurrency": concurrency, "accepted_p50_ms": percentile(lat, 50),
                    "accepted_p95_ms": percentile(lat, 95), "accepted_max_ms": max(lat),
                    "makespan_s": makespan, "ideal_s": ideal, "ratio": makespan / ideal,
                    "failed": failed}


async def batch(provider_url: str, n: int, concurrency: int) -> dict:
    """One n-image folder batch: makespan against ceil(n/concurrency) × latency."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        folder = data / "imagedrop" / "bench"
        folder.mkdir(parents=True)
        for i in range(n):
            (folder / f"img{i:04d}.png").write_bytes(sample_png(i))
        env = {"OPENAI_API_KEY": "sk-bench", "OPENAI_BASE_URL": provider_url,
               "IMAGEDROP_CONCURRENCY": str(concurrency), "COS_INPUT_PREFIX": "bench/"}
        async with Receiver().running() as rx, imagedrop(env, data) as url, \
                aiohttp.ClientSession() as http:
            start = time.perf_counter()
            async with http.post(url + "/batch-process-images", json={"prompt": "bench"},
                                 headers={"callbackUrl": rx.url}) as resp:
                assert resp.status == 202, await resp.text()
                batch_id = (await resp.json())["job_id"]
            await rx.wait_for({batch_id}, timeout=300)
            makespan = rx.arrivals[batch_id] - start
            summary = rx.bodies[batch_id]
            ideal = math.ceil(n / concurrency) * LATENCY
            return {"images": n, "concurrency": concurrency, "makespan_s": makespan,
                    "ideal_s": ideal, "ratio": makespan / ideal, "status": summary["status"],
                    "processed": summary["processed"]}


async def health_under_load(provider_url: str, inflight: int) -> dict:
    """/health latency while `inflight` edits are running (3 waves of them)."""
    n = inflight * 3
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        env = {"OPENAI_API_KEY": "sk-bench", "OPENAI_BASE_URL": provider_url,
               "IMAGEDROP_CONCURRENCY": str(inflight)}
        async with Receiver().running() as rx, imagedrop(env, data) as url, \
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http, \
                aiohttp.ClientSession() as probe:
            bodies = [{"prompt": f"load {i}", "image_base64": base64.b64encode(
                sample_png(i, 512)).decode()} for i in range(n)]

            async def post(body: dict) -> str:
                async with http.post(url + "/process-image-async-b64", json=body,
                                     headers={"callbackUrl": rx.url}) as resp:
                    return (await resp.json())["job_id"]

            ids = set(await asyncio.gather(*(post(b) for b in bodies)))
            samples: list[float] = []
            done = asyncio.Event()

            async def sample() -> None:
                while not done.is_set():
                    t0 = time.perf_counter()
                    async with probe.get(url + "/health") as resp:
                        await resp.read()
                    samples.append((time.perf_counter() - t0) * 1000)
                    await asyncio.sleep(0.01)

            sampler = asyncio.create_task(sample())
            await rx.wait_for(ids, timeout=300)
            done.set()
            await sampler
            return {"inflight": inflight, "jobs": n, "samples": len(samples),
                    "health_p50_ms": percentile(samples, 50),
                    "health_p99_ms": percentile(samples, 99), "health_max_ms": max(samples)}


async def collect() -> dict:
    async with fake_provider(LATENCY) as provider_url:
        return {
            "provider_latency_s": LATENCY,
            "singles_40": await singles(provider_url, 40, 16),
            "batch_100": await batch(provider_url, 100, 16),
            "health_64": await health_under_load(provider_url, 64),
        }


if __name__ == "__main__":
    from bench.report import write_core_section

    harness.main("core", __doc__, collect, write_core_section)
