"""Two POST /trigger calls over one folder at once (a scheduled flow firing while the previous
run is still going): every image is edited once, and both runs report every image."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.fixtures import images

pytestmark = pytest.mark.asyncio

IMAGES = 8


class TestConcurrentTriggers:
    """One object version, one recipe: one paid edit, however many jobs ask for it."""

    async def test_two_triggers_edit_each_image_once(self, start_service, receiver, fake_openai,
                                                     tmp_path):
        fake_openai.latency = 0.2  # edits overlap: the second run meets the first mid-edit
        svc = await start_service({
            "OPENAI_API_KEY": fake_openai.api_key, "OPENAI_BASE_URL": fake_openai.base_url,
            "IMAGEDROP_SWEEP_INTERVAL": "0", "IMAGEDROP_CONCURRENCY": "4"})
        folder = tmp_path / "data" / "imagedrop" / "shop"
        folder.mkdir(parents=True)
        (folder / "imagedrop.yaml").write_text("prompt: warmer\nsettle_seconds: 0\n")
        for i in range(IMAGES):
            (folder / f"p{i}.png").write_bytes(images.png(40 + i, 30))
        (s1, b1), (s2, b2) = await asyncio.gather(
            svc.post("/trigger", {"prefix": "shop/"}, callback=receiver.url("/s1")),
            svc.post("/trigger", {"prefix": "shop/"}, callback=receiver.url("/s2")))
        assert s1 == s2 == 202, (b1, b2)
        summaries = [json.loads((await receiver.await_requests(1, path, 60))[0].body)
                     for path in ("/s1", "/s2")]
        for summary in summaries:
            assert summary["status"] == "completed", summary
            assert (summary["total_files"], summary["processed"], summary["failed"]) == (
                IMAGES, IMAGES, 0)
        assert len(fake_openai.calls) == IMAGES
        # The ledger agrees: per image, one job made the edit and the other reused it.
        jobs = [job for batch in (b1, b2)
                for job in await svc.ledger.list_jobs(batch_id=batch["batch_id"])]
        assert len(jobs) == 2 * IMAGES
        edited = sorted(job.source_key for job in jobs if not job.result.reused)
        assert edited == sorted(f"shop/p{i}.png" for i in range(IMAGES))
