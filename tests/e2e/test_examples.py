"""examples/: the demo runs the whole drop-a-file flow green on the embedded default, the
receiver accepts only imagedrop's signatures, and every example manifest passes the check."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from PIL import Image

from imagedrop.delivery.signing import generate_secret, signature_headers
from tests.fakes.s3 import TEST_BUCKET, ibm_s3_client

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
NOW = 1_790_000_000


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


receiver = load("receiver")
make_samples = load("make_samples")


def run_demo(tmp_path: Path, **env: str) -> str:
    """`python examples/demo.py` in its own session (so a hung demo and the imagedrop it
    started are stopped together); returns its output once it exited 0."""
    full = {**os.environ, "TMPDIR": str(tmp_path), **env}  # conftest removed COS_/OPENAI_
    proc = subprocess.Popen([sys.executable, str(EXAMPLES / "demo.py"), "--timeout", "90"],
                            env=full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=tmp_path)
    try:
        out, _ = proc.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError("the demo did not finish:\n" + out.decode()) from None
    assert proc.returncode == 0, out.decode()
    return out.decode()


class TestDemo:
    """`python examples/demo.py`: no credentials, and COS settings."""

    def test_runs_the_whole_flow_green(self, tmp_path):
        text = run_demo(tmp_path)
        assert "provider local" in text
        assert "2 of 2 images edited, 0 failed, 3 signed events verified" in text
        assert text.count("image.completed") == 2 and text.count("batch.completed") == 1
        assert "photos/food/burger.jpg -> imagedrop/photos/food/edited/burger-jpg.png" in text
        assert list(tmp_path.glob("imagedrop-demo-*")) == []  # it cleaned up after itself

    def test_uploads_and_triggers_on_cos(self, tmp_path, s3_endpoint):
        client = ibm_s3_client(s3_endpoint)
        client.create_bucket(Bucket=TEST_BUCKET)
        text = run_demo(tmp_path, COS_ENDPOINT=s3_endpoint, COS_BUCKET=TEST_BUCKET,
                        COS_ACCESS_KEY_ID="test", COS_SECRET_ACCESS_KEY="test")
        assert f"COS {s3_endpoint}" in text and "triggered   batch" in text
        assert "2 of 2 images edited, 0 failed, 3 signed events verified" in text
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=TEST_BUCKET)["Contents"]]
        [folder] = {k.rsplit("/", 1)[0] for k in keys if k.endswith("imagedrop.yaml")}
        assert sorted(k.removeprefix(folder + "/") for k in keys) == [
            "burger.jpg", "edited/burger-jpg.png", "edited/salad-jpg.png", "imagedrop.yaml",
            "salad.jpg"]


@pytest.fixture(name="secret")
def _secret() -> str:
    return generate_secret()


@pytest.fixture(name="client")
async def _client(aiohttp_client, secret):
    return await aiohttp_client(receiver.make_app(secret, on_event=lambda e, i: None,
                                                  clock=lambda: NOW))


EVENT = {"type": "image.completed", "timestamp": "2026-09-21T12:00:00Z",
         "data": {"source": {"bucket": "b", "key": "photos/a.jpg"},
                  "result": {"bucket": "b", "key": "photos/edited/a.png", "provider": "local"}}}


def signed(secret: str, body: bytes, *, msg_id: str = "msg_1", at: int = NOW) -> dict[str, str]:
    return signature_headers(secret, msg_id, at, body)


class TestReceiver:
    """examples/receiver.py verifies Standard Webhooks signatures as imagedrop makes them."""

    async def test_accepts_a_signed_event_once(self, client, secret):
        body = json.dumps(EVENT).encode()
        for _ in range(2):  # a retry keeps its webhook-id: recorded once
            resp = await client.post("/hooks", data=body, headers=signed(secret, body))
            assert resp.status == 204
        assert client.app[receiver.RECEIVED] == [("msg_1", EVENT)]

    @pytest.mark.parametrize("tamper", ["body", "secret", "stale", "unsigned", "garbage"])
    async def test_rejects_a_bad_signature_with_401(self, client, secret, tamper):
        body = json.dumps(EVENT).encode()
        headers = signed(secret, body)
        if tamper == "body":
            body = body.replace(b"a.png", b"b.png")
        elif tamper == "secret":
            headers = signed(generate_secret(), body)
        elif tamper == "stale":
            headers = signed(secret, body, at=NOW - 3600)
        elif tamper == "unsigned":
            headers = {}
        else:
            headers["webhook-signature"] = "v1,not-base64!! v2,abc"
        resp = await client.post("/hooks", data=body, headers=headers)
        assert resp.status == 401
        assert "error" in await resp.json()
        assert client.app[receiver.RECEIVED] == []

    async def test_any_of_several_signatures_during_rotation(self, client, secret):
        body = json.dumps(EVENT).encode()
        old = signed(generate_secret(), body)["webhook-signature"]
        headers = signed(secret, body)
        headers["webhook-signature"] = f"{old} {headers['webhook-signature']}"
        assert (await client.post("/hooks", data=body, headers=headers)).status == 204

    def test_describes_each_event_type(self):
        assert receiver.describe(EVENT) == (
            "image.completed  b/photos/a.jpg -> b/photos/edited/a.png (local)")
        failed = {"type": "image.failed", "data": {"source": {"bucket": "b", "key": "x.jpg"},
                                                   "error": "not an image"}}
        assert receiver.describe(failed).endswith("b/x.jpg: not an image")
        batch = {"type": "batch.completed", "data": {"bucket": "b", "prefix": "p/",
                                                     "status": "completed", "processed": 2,
                                                     "failed": 0, "fallback_local": 0,
                                                     "duration_seconds": 1.5}}
        assert "b/p/: completed, 2 processed, 0 failed" in receiver.describe(batch)


class TestManifestsAndSamples:
    """The example manifests are valid; the sample images are real images, reproducibly."""

    MANIFESTS = sorted((EXAMPLES / "manifests").glob("*.yaml"))

    def test_the_four_uses_are_there(self):
        assert [p.stem for p in self.MANIFESTS] == [
            "background-cleanup", "food-photos", "product-catalogue", "seasonal-campaign"]

    @pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
    def test_passes_imagedrop_manifest_check(self, manifest):
        result = subprocess.run([sys.executable, "-m", "imagedrop", "manifest", "check",
                                 str(manifest)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.startswith("ok: ")

    def test_samples_are_images_and_deterministic(self, tmp_path):
        first = make_samples.write_samples(tmp_path / "one", size=64)
        second = make_samples.write_samples(tmp_path / "two", size=64)
        assert [p.name for p in first] == list(make_samples.SAMPLES)
        for a, b in zip(first, second, strict=True):
            assert a.read_bytes() == b.read_bytes()
            with Image.open(io.BytesIO(a.read_bytes())) as image:
                assert image.size == (64, 64)
                assert image.format == make_samples.SAMPLES[a.name][2]
