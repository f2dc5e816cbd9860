"""Several replicas on one PostgreSQL ledger (issue 5): batch throughput with 1 and 3 replicas,
and notification intake on PostgreSQL.

Run: `.venv/bin/python -m bench.replicas` (writes bench/results/replicas.json and
docs/benchmarks.md). Needs PostgreSQL at $IMAGEDROP_BENCH_POSTGRES_URL (default
postgresql://postgres@127.0.0.1:5432/test); each scenario uses a fresh schema, dropped after.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import aiohttp
import asyncpg

from bench import harness
from bench.drops import governed_folder, intake_figures, notifications, post_all
from bench.harness import Receiver, fake_provider, image_folder, imagedrop

POSTGRES_URL = os.environ.get("IMAGEDROP_BENCH_POSTGRES_URL",
                              "postgresql://postgres@127.0.0.1:5432/test")
LATENCY = 1.0
CONCURRENCY = 8
IMAGES = 120


@asynccontextmanager
async def schema() -> AsyncIterator[tuple[str, str]]:
    """A fresh schema: yields (IMAGEDROP_DATABASE_URL, schema name); dropped afterwards."""
    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        await admin.execute(f'CREATE SCHEMA "{name}"')
        yield f"{POSTGRES_URL}?schema={name}", name
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        await admin.close()


async def _count(name: str, sql: str) -> int:
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        return int(await admin.fetchval(sql.replace("{s}", f'"{name}"')))
    finally:
        await admin.close()


async def throughput(replicas: int) -> dict:
    """One IMAGES-image folder batch edited by `replicas` processes sharing one folder and one
    database: request to summary callback, against ceil(IMAGES / (replicas × CONCURRENCY)) s."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        image_folder(data, IMAGES)
        async with fake_provider(LATENCY) as provider_url, schema() as (db_url, _), \
                Receiver().running() as rx, AsyncExitStack() as stack:
            env = {"OPENAI_API_KEY": "sk-bench", "OPENAI_BASE_URL": provider_url,
                   "IMAGEDROP_CONCURRENCY": str(CONCURRENCY), "IMAGEDROP_DATABASE_URL": db_url,
                   "IMAGEDROP_SWEEP_INTERVAL": "0", "COS_INPUT_PREFIX": "photos/"}
            urls = [await stack.enter_async_context(imagedrop(env, data))
                    for _ in range(replicas)]
            async with aiohttp.ClientSession() as http:
                start = time.perf_counter()
                async with http.post(urls[0] + "/batch-process-images", json={"prompt": "b"},
                                     headers={"callbackUrl": rx.url}) as resp:
                    assert resp.status == 202, await resp.text()
                    batch_id = (await resp.json())["job_id"]
                await rx.wait_for({batch_id}, timeout=600)
                makespan = rx.arrivals[batch_id] - start
                # The fake's peak of edits in flight: replicas × concurrency if all took part.
                async with http.get(provider_url.removesuffix("/v1") + "/_stats") as resp:
                    peak = (await resp.json())["max_in_flight"]
            summary = rx.bodies[batch_id]
    ideal = math.ceil(IMAGES / (replicas * CONCURRENCY)) * LATENCY
    return {"replicas": replicas, "concurrency": CONCURRENCY, "images": IMAGES,
            "processed": summary["processed"], "makespan_s": makespan,
            "images_per_s": IMAGES / makespan, "ideal_s": ideal, "ratio": makespan / ideal,
            "peak_in_flight": peak}


async def intake(n: int, replicas: int, clients: int, duplicates: float = 0.2) -> dict:
    """n S3 notifications over `clients` connections spread across `replicas` API-only
    processes on PostgreSQL (worker off): acknowledged per second, latency percentiles."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        governed_folder(data)
        bodies, unique = notifications(n, duplicates)
        async with schema() as (db_url, name), AsyncExitStack() as stack:
            env = {"IMAGEDROP_WORKER": "0", "IMAGEDROP_SWEEP_INTERVAL": "0",
                   "IMAGEDROP_DATABASE_URL": db_url}
            urls = [await stack.enter_async_context(imagedrop(env, data))
                    for _ in range(replicas)]
            latencies, failures, elapsed = await post_all(urls, bodies, clients)
            jobs = await _count(name, "SELECT COUNT(*) FROM {s}.jobs")
    return {"replicas": replicas, **intake_figures(n, duplicates, clients, latencies, failures,
                                                   elapsed, jobs, unique)}


async def collect() -> dict:
    one, three = await throughput(1), await throughput(3)
    return {
        "provider_latency_s": LATENCY,
        "throughput_1": one, "throughput_3": three,
        "intake_1": await intake(5_000, 1, 16),
        "intake_3": await intake(5_000, 3, 24),
    }


if __name__ == "__main__":
    from bench.report import write_replicas_section

    harness.main("replicas", __doc__, collect, write_replicas_section)
