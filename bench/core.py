"""Core engine benchmarks (issue 2, SPEC §6) against a fake provider with fixed latency.

Run: `.venv/bin/python -m bench.core` (writes bench/results/core.json and docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from bench import harness
from bench.harness import (
    Receiver,
    fake_provider,
    imagedrop,
    percentile,
    photo_jpeg,
    result_png,
    sample_png,
)

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


@asynccontextmanager
async def probing_health(probe: aiohttp.ClientSession, url: str) -> AsyncIterator[list[float]]:
    """/health probed every 10 ms over its own session while the block runs: the latencies
    (ms) in the list it yields."""
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
    try:
        yield samples
    finally:
        done.set()
        await sampler


async def health_under_load(provider_url: str, inflight: int) -> dict:
    """/health latency while `inflight` edits are running (3 waves of them)."""
    n = inflight * 3
    async with served(provider_url, inflight) as (_, rx, url, http, probe):
        bodies = [{"prompt": f"load {i}", "image_base64": base64.b64encode(
            sample_png(i, 512)).decode()} for i in range(n)]

        async def post(body: dict) -> str:
            async with http.post(url + "/process-image-async-b64", json=body,
                                 headers={"callbackUrl": rx.url}) as resp:
                return (await resp.json())["job_id"]

        ids = set(await asyncio.gather(*(post(b) for b in bodies)))
        async with probing_health(probe, url) as samples:
            await rx.wait_for(ids, timeout=300)
        return {"inflight": inflight, "jobs": n, "samples": len(samples),
                "health_p50_ms": percentile(samples, 50),
                "health_p99_ms": percentile(samples, 99), "health_max_ms": max(samples)}


@asynccontextmanager
async def served(provider_url: str, concurrency: int) -> AsyncIterator[
        tuple[Path, Receiver, str, aiohttp.ClientSession, aiohttp.ClientSession]]:
    """imagedrop on a fresh data folder against `provider_url`, a receiver, a client session
    and a separate one for probes: (data folder, receiver, URL, client, probe)."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        env = {"OPENAI_API_KEY": "sk-bench", "OPENAI_BASE_URL": provider_url,
               "IMAGEDROP_CONCURRENCY": str(concurrency)}
        async with Receiver().running() as rx, imagedrop(env, data) as url, \
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http, \
                aiohttp.ClientSession() as probe:
            yield data, rx, url, http, probe


STAGES = ("receive", "decode", "check", "ledger", "provider", "result", "callback", "rest")


async def cpu_by_stage(http: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """CPU seconds so far by stage, from the service's /metrics (stage counters for synchronous
    sections, thread clocks for the ledger's thread and the provider's loop, the process total
    for the rest: the event loop's HTTP, scheduling and everything unnamed)."""
    from prometheus_client.parser import text_string_to_metric_families

    async with http.get(url + "/metrics") as resp:
        text = await resp.text()
    out = dict.fromkeys(STAGES, 0.0)
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "imagedrop_stage_cpu_seconds_total":
                out[sample.labels["stage"]] += sample.value
            elif sample.name == "imagedrop_thread_cpu_seconds_total":
                thread = sample.labels["thread"]
                if thread.startswith("imagedrop-ledger"):
                    out["ledger"] += sample.value
                elif thread.startswith("imagedrop-openai"):
                    out["provider"] += sample.value
            elif sample.name == "process_cpu_seconds_total":
                total = sample.value
    out["rest"] = total - sum(out.values())
    return out


def disk_floor(folder: Path, bodies: list[bytes]) -> float:
    """Seconds to write every body into one file and make it durable with one fdatasync: what
    accepting them durably cannot beat on this disk."""
    path = folder / "floor.bin"
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        for body in bodies:
            f.write(body)
        f.flush()
        os.fdatasync(f.fileno())
    elapsed = time.perf_counter() - t0
    path.unlink()
    return elapsed


async def photos(n: int, concurrency: int) -> dict:
    """n concurrent 1 MP JPEG uploads (base64) whose edits come back as ~1 MB PNGs: 202 latency
    beside the disk's floor, makespan against the ideal, /health throughout, CPU per job by stage."""
    result = result_png()
    photo = [photo_jpeg() for _ in range(n)]
    async with fake_provider(LATENCY, result=result) as provider_url, \
            served(provider_url, concurrency) as (data, rx, url, http, probe):
        bodies = [json.dumps({"prompt": f"photo {i}", "image_base64": base64.b64encode(
            p).decode()}).encode() for i, p in enumerate(photo)]
        floor = disk_floor(data, bodies)
        before = await cpu_by_stage(probe, url)

        async def post(body: bytes, client: aiohttp.ClientSession = http) -> tuple[str, float]:
            t0 = time.perf_counter()
            async with client.post(url + "/process-image-async-b64", data=body, headers={
                    "callbackUrl": rx.url, "Content-Type": "application/json"}) as resp:
                assert resp.status == 202, await resp.text()
                job_id = (await resp.json())["job_id"]
            return job_id, time.perf_counter() - t0

        async with probing_health(probe, url) as samples:
            start = time.perf_counter()
            results = await asyncio.gather(*(post(b) for b in bodies))
            ids = {job_id for job_id, _ in results}
            await rx.wait_for(ids, timeout=120)
            makespan = max(rx.arrivals[i] for i in ids) - start
        after = await cpu_by_stage(probe, url)
        # The same burst again over new connections, the server now warm (its first burst also
        # pays for memory touched the first time, thread pools and imports): told apart.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as fresh:
            again = await asyncio.gather(*(post(b, fresh) for b in bodies))
            await rx.wait_for({job_id for job_id, _ in again}, timeout=120)
        warm = [dt * 1000 for _, dt in again]
        lat = [dt * 1000 for _, dt in results]
        ideal = math.ceil(n / concurrency) * LATENCY
        sizes = {len(base64.b64decode(rx.bodies[i]["result_image_base64"])) for i in ids
                 if rx.bodies[i]["status"] == "completed"}
        return {
            "jobs": n, "concurrency": concurrency,
            "input_jpeg_kb": round(sum(map(len, photo)) / n / 1024),
            "body_kb": round(sum(map(len, bodies)) / n / 1024),
            "result_png_kb": round(len(result) / 1024),
            "results_intact": sizes == {len(result)},
            "accepted_p50_ms": percentile(lat, 50), "accepted_p95_ms": percentile(lat, 95),
            "accepted_max_ms": max(lat), "floor_ms": floor * 1000,
            "warm_accepted_p50_ms": percentile(warm, 50),
            "warm_accepted_p95_ms": percentile(warm, 95),
            "makespan_s": makespan, "ideal_s": ideal, "ratio": makespan / ideal,
            "health_p99_ms": percentile(samples, 99), "health_samples": len(samples),
            "failed": sum(1 for i in ids if rx.bodies[i]["status"] != "completed"),
            "cpu_ms_per_job": {k: round((after[k] - before[k]) * 1000 / n, 2)
                               for k in STAGES},
        }


async def collect() -> dict:
    async with fake_provider(LATENCY) as provider_url:
        return {
            "provider_latency_s": LATENCY,
            "singles_40": await singles(provider_url, 40, 16),
            "batch_100": await batch(provider_url, 100, 16),
            "health_64": await health_under_load(provider_url, 64),
            "photos_40": await photos(40, 16),
        }


if __name__ == "__main__":
    from bench.report import write_core_section

    harness.main("core", __doc__, collect, write_core_section)
