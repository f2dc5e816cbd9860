"""Crash recovery: a real `imagedrop serve` process is SIGKILLed mid-batch and restarted."""

from __future__ import annotations

import json

import requests  # a plain sync client: this test drives processes, not a loop

from tests.e2e.procs import serve_env
from tests.fixtures import images

N_IMAGES = 24
CONCURRENCY = 4


def test_sigkill_mid_batch_then_restart(tmp_path, serve, fake_openai, receiver):
    """Every image is written once, every job completes, one summary callback arrives."""
    data = tmp_path / "data"
    photos = data / "imagedrop" / "photos"
    photos.mkdir(parents=True)
    for i in range(N_IMAGES):
        (photos / f"p{i:02d}.png").write_bytes(images.png(40 + i, 40))
    fake_openai.latency = 0.4
    env = serve_env(
        IMAGEDROP_DATA_DIR=str(data), OPENAI_API_KEY=fake_openai.api_key,
        OPENAI_BASE_URL=fake_openai.base_url, IMAGEDROP_CONCURRENCY=str(CONCURRENCY),
        IMAGEDROP_LEASE_SECONDS="2", COS_INPUT_PREFIX="photos/", COS_OUTPUT_PREFIX="edited/",
    )
    first = serve(env)
    resp = requests.post(first.url + "/batch-process-images", json={"prompt": "crash me"},
                         headers={"callbackUrl": receiver.url("/summary")}, timeout=10)
    assert resp.status_code == 202
    batch_id = resp.json()["job_id"]
    fake_openai.wait_for_calls(N_IMAGES // 3, timeout=60)
    first.kill()
    calls_before_restart = len(fake_openai.calls)
    assert calls_before_restart < N_IMAGES  # it really died mid-batch

    second = serve(env)
    summary = json.loads(receiver.wait_for(1, path="/summary", timeout=120)[0].body)
    assert summary["job_id"] == batch_id
    assert summary["status"] == "completed", summary
    assert summary["total_files"] == N_IMAGES and summary["processed"] == N_IMAGES
    assert summary["failed"] == 0

    out_dir = data / "imagedrop" / "edited" / batch_id
    outputs = sorted(p.name for p in out_dir.iterdir())
    assert outputs == [f"p{i:02d}.png" for i in range(N_IMAGES)]
    # Only edits in flight at the kill can have been paid for twice.
    assert len(fake_openai.calls) <= N_IMAGES + CONCURRENCY
    status = requests.get(f"{second.url}/jobs/{batch_id}", timeout=10).json()
    assert status["progress"]["completed"] == N_IMAGES
    second.stop()
    # Stopped cleanly: nothing is left to deliver, and exactly one summary was sent.
    assert len(receiver.requests_for("/summary")) == 1
