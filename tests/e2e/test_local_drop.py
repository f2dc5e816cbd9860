"""The embedded default really is drop-a-file: no notification, the sweep notices the file."""

from __future__ import annotations

import json

import pytest

from imagedrop.sweep import Sweeper
from imagedrop.web import keys
from tests.fixtures import images

pytestmark = pytest.mark.asyncio


async def test_file_dropped_in_local_folder_is_edited(start_service, receiver, tmp_path):
    svc = await start_service({"IMAGEDROP_SWEEP_INTERVAL": "0.2"})
    folder = tmp_path / "data" / "imagedrop" / "inbox"
    folder.mkdir(parents=True)
    (folder / "imagedrop.yaml").write_text(
        "prompt: warmer\nsettle_seconds: 2\n"
        f"subscribers:\n  - url: {receiver.url('/hook')}\n")
    (folder / "a.png").write_bytes(images.png(40, 30))
    (folder / "b.jpg").write_bytes(images.jpeg(30, 40))
    hooks = await receiver.await_requests(3, path="/hook", timeout=30)
    types = sorted(json.loads(r.body)["type"] for r in hooks)
    assert types == ["batch.completed", "image.completed", "image.completed"]
    edited = sorted(p.name for p in (folder / "edited").iterdir())
    assert edited == ["a.png", "b-jpg.png"]
    # The outputs are inside the watched folder, yet further sweeps start nothing.
    sweeper = next(s for s in svc.app[keys.RUNTIME].services if isinstance(s, Sweeper))
    for _ in range(2):
        assert (await sweeper.sweep_once()).recorded == 0
    assert len(receiver.requests_for("/hook")) == 3
