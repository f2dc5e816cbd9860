"""Recovery benchmarks (issue 9): how soon a SIGKILLed process's work runs again.

Run: `.venv/bin/python -m bench.recovery` (writes bench/results/recovery.json and
docs/benchmarks.md; needs PostgreSQL for the replica scenario, at $IMAGEDROP_BENCH_POSTGRES_URL).

- Restart (SQLite): a 40-image `POST /batch-process-images`, provider latency 1 s, killed 1.6 s
  in and restarted at once. Measured: from the restart (spawn, and the new process's first
  `/health`) until every job the dead process held is claimed again; and request → summary.
- Replicas (PostgreSQL): 3 replicas edit a 120-image folder; one is SIGKILLed while it holds
  edits in flight. Measured: from the kill until every job it held is claimed by a survivor.
Leases are 60 s (the default): anything faster is liveness, not a lease running out.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import aiohttp
import asyncpg

from bench import harness
from bench.harness import ROOT, Receiver, fake_provider, free_port, image_folder
from bench.replicas import schema

LATENCY = 1.0


@asynccontextmanager
async def serve(env: dict[str, str], data: Path) -> AsyncIterator[tuple[subprocess.Popen[bytes],
                                                                        str, float]]:
    """`imagedrop serve` in its own process: (process, URL, seconds from spawn to healthy)."""
    port = free_port()
    full = {k: v for k, v in os.environ.items()
            if not k.startswith(("COS_", "OPENAI_", "IMAGEDROP_"))}
    full.update({"IMAGEDROP_DATA_DIR": str(data), "IMAGEDROP_ALLOW_PRIVATE_CALLBACKS": "1",
                 "IMAGEDROP_LOG_LEVEL": "WARNING", "IMAGEDROP_POLL_INTERVAL": "0.2",
                 "IMAGEDROP_SWEEP_INTERVAL": "0", "OPENAI_API_KEY": "sk-bench", **env})
    log = open(data.parent / f"serve-{port}.log", "wb")
    spawned = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "imagedrop", "serve", "--host", "127.0.0.1",
                             "--port", str(port)], env=full, cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        await harness._wait_http(url + "/health", proc)
        yield proc, url, time.perf_counter() - spawned
    finally:
        harness._stop(proc)
        log.close()


async def until(check: Callable[[], Awaitable[bool]], timeout: float) -> float:
    """Poll `check` every 20 ms; the perf_counter time it first held."""
    deadline = time.perf_counter() + timeout
    while not await check():
        if time.perf_counter() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.02)
    return time.perf_counter()


async def restart(images: int = 40, concurrency: int = 16, kill_after: float = 1.6) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        image_folder(data, images)
        db = data / "imagedrop.sqlite3"
        async with fake_provider(LATENCY) as provider, Receiver().running() as rx, \
                AsyncExitStack() as stack:
            env = {"OPENAI_BASE_URL": provider, "IMAGEDROP_CONCURRENCY": str(concurrency),
                   "COS_INPUT_PREFIX": "photos/"}
            first, url, _ = await stack.enter_async_context(serve(env, data))
            async with aiohttp.ClientSession() as http:
                start = time.perf_counter()
                async with http.post(url + "/batch-process-images", json={"prompt": "r"},
                                     headers={"callbackUrl": rx.url}) as resp:
                    batch_id = (await resp.json())["job_id"]
            await asyncio.sleep(kill_after - (time.perf_counter() - start))
            first.send_signal(signal.SIGKILL)
            first.wait()
            held = _sqlite_held(db)
            spawned = time.perf_counter()
            _, _, ready_in = await stack.enter_async_context(serve(env, data))
            resumed = await until(lambda: _sqlite_retaken(db, held), 60)
            await rx.wait_for({batch_id}, timeout=600)
            summary = rx.bodies[batch_id]
        outputs = len(list((data / "imagedrop" / "edited" / batch_id).iterdir()))
    return {"images": images, "concurrency": concurrency, "killed_after_s": kill_after,
            "held_at_kill": len(held), "ready_s": ready_in,
            "resumed_after_spawn_s": resumed - spawned,
            "resumed_after_ready_s": resumed - spawned - ready_in,
            "summary_after_request_s": rx.arrivals[batch_id] - start,
            "processed": summary["processed"], "outputs": outputs}


def _sqlite_held(db: Path) -> dict[str, str]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT id, lease_owner FROM jobs WHERE state = 'running'"))


async def _sqlite_retaken(db: Path, held: dict[str, str]) -> bool:
    def look() -> bool:
        with sqlite3.connect(db) as conn:
            now = dict(conn.execute("SELECT id, lease_owner FROM jobs WHERE id IN"
                                    " (SELECT value FROM json_each(?))",
                                    (json.dumps(list(held)),)))
        return all(now.get(job) != owner for job, owner in held.items())  # claimed (or done)
    return await asyncio.to_thread(look)


async def replicas(images: int = 120, concurrency: int = 8, kill_after: float = 2.5) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        image_folder(data, images)
        async with fake_provider(LATENCY) as provider, schema() as (db_url, name), \
                Receiver().running() as rx, AsyncExitStack() as stack:
            env = {"OPENAI_BASE_URL": provider, "IMAGEDROP_CONCURRENCY": str(concurrency),
                   "COS_INPUT_PREFIX": "photos/", "IMAGEDROP_DATABASE_URL": db_url}
            procs = [await stack.enter_async_context(serve(env, data)) for _ in range(3)]
            victim = procs[1][0]
            admin = await asyncpg.connect(db_url.split("?")[0],
                                          server_settings={"search_path": name})
            try:
                async with aiohttp.ClientSession() as http:
                    start = time.perf_counter()
                    async with http.post(procs[0][1] + "/batch-process-images",
                                         json={"prompt": "r"},
                                         headers={"callbackUrl": rx.url}) as resp:
                        batch_id = (await resp.json())["job_id"]
                await asyncio.sleep(kill_after - (time.perf_counter() - start))
                owner = await admin.fetchval("SELECT owner FROM owners WHERE pid = $1",
                                             victim.pid)
                victim.send_signal(signal.SIGKILL)
                killed = time.perf_counter()
                victim.wait()
                held = {r["id"] for r in await admin.fetch(
                    "SELECT id FROM jobs WHERE state = 'running' AND lease_owner = $1", owner)}

                async def retaken() -> bool:
                    left = await admin.fetchval(
                        "SELECT count(*) FROM jobs WHERE id = ANY($1::text[])"
                        " AND lease_owner = $2", list(held), owner)
                    return int(left) == 0
                resumed = await until(retaken, 60)
                await rx.wait_for({batch_id}, timeout=600)
            finally:
                await admin.close()
            summary = rx.bodies[batch_id]
    return {"images": images, "replicas": 3, "concurrency": concurrency,
            "held_at_kill": len(held), "taken_over_after_kill_s": resumed - killed,
            "summary_after_request_s": rx.arrivals[batch_id] - start,
            "processed": summary["processed"]}


async def collect() -> dict:
    return {"provider_latency_s": LATENCY, "lease_s": 60, "restart": await restart(),
            "replicas": await replicas()}


if __name__ == "__main__":
    from bench.report import write_recovery_section

    harness.main("recovery", __doc__, collect, write_recovery_section)
